package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/gateway/dashboard"
	"github.com/wasmbed/wasmbed/internal/gateway/httpapi"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/session"
)

// Trust is the key material a gateway needs: the root devices and gateways
// chain to, the device CA it accepts device certificates from, its own
// serving certificate, and the platform keys it hands enrolling devices to
// pin. Whatever is left empty comes from the cluster when the gateway
// starts: the root and device CA from the trust ConfigMap, the signing key
// from the issuer's ConfigMap, and a short-lived serving certificate (a key
// generated in the process, signed by the controller through a
// CertificateSigningRequest, renewed at two thirds of its lifetime).
type Trust struct {
	// Root is the platform's root certificate.
	Root *x509.Certificate
	// DeviceCA issues device certificates.
	DeviceCA *x509.Certificate
	// Certificate is the gateway's serving certificate chain and key.
	Certificate tls.Certificate
	// SigningKeys are the platform's artifact-signing public keys, handed
	// to enrolling devices.
	SigningKeys []ed25519.PublicKey
	// SealingKey is the platform's X25519 public key for sealed payloads,
	// if sealing is in use.
	SealingKey []byte
}

// Options configure a Gateway. Zero values take the defaults documented on
// each field.
type Options struct {
	// Name identifies this replica: the Lease it renews and the
	// status.gateway of the Devices it holds. Required; a DNS label.
	Name string
	// Config reaches the Kubernetes API server. Required.
	Config *rest.Config
	// SystemNamespace holds the gateways' Leases and the pairing window;
	// default wasmbedv1.DefaultSystemNamespace.
	SystemNamespace string
	// DeviceNamespace is where enrollment creates Devices; default
	// "default".
	DeviceNamespace string
	// Trust holds the certificates and platform keys; what it leaves empty
	// is read from the cluster.
	Trust Trust
	// ServingDNSNames and ServingIPs are the names a serving certificate
	// requested from the controller carries: what devices dial.
	ServingDNSNames []string
	ServingIPs      []net.IP

	// SessionListener, EnrollListener and HTTPListener are the listeners
	// to serve on; when nil, SessionAddr, EnrollAddr and HTTPAddr are
	// listened on (defaults :4423, :4424, :8080).
	SessionListener, EnrollListener, HTTPListener net.Listener
	SessionAddr, EnrollAddr, HTTPAddr             string

	// HeartbeatInterval is announced to devices in every HeartbeatAck;
	// default 30s.
	HeartbeatInterval time.Duration
	// UnreachableAfter is the missed-heartbeat deadline: a device silent
	// for this long is disconnected and marked Unreachable. Default three
	// heartbeat intervals.
	UnreachableAfter time.Duration
	// LastSeenPeriod is how often a connected device's status.lastSeen is
	// refreshed; default 1h. Heartbeats themselves never reach the API
	// server.
	LastSeenPeriod time.Duration
	// CertificateCheckPeriod is how often the certificates of the sessions
	// held are checked for an expiry the device failed to renew before;
	// default 1m.
	CertificateCheckPeriod time.Duration
	// LeaseDuration of this replica's Lease, renewed every third of it;
	// default 15s.
	LeaseDuration time.Duration
	// TicketKeyRotation is the age at which the shared session-ticket key
	// is replaced (the previous one still decrypts); default 24h.
	TicketKeyRotation time.Duration
	// Limits bound the session listeners; see session.Limits.
	Limits session.Limits
	// MaxConcurrentDeliveries bounds devices being delivered to at once;
	// default 128.
	MaxConcurrentDeliveries int
	// CommandTimeout bounds one command's round trip to a device (an
	// install compiles the module); default 60s.
	CommandTimeout time.Duration
	// ModuleCacheBytes bounds the module payloads kept in memory; default
	// 64 MiB.
	ModuleCacheBytes int64
	// QPS and Burst of the Kubernetes client; defaults 200 and 400 (a
	// rollout to thousands of devices writes thousands of statuses).
	QPS   float32
	Burst int
	// Registry receives the gateway's metrics; a new registry when nil.
	Registry *prometheus.Registry
	// Clock is the gateway's clock; time.Now when nil.
	Clock func() time.Time
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// APIAudiences, when set, are the audiences a bearer token of the HTTP
	// API must be issued for; empty accepts the API server's own.
	APIAudiences []string
	// APIAuthenticator and APIAuthorizer override the delegation of the
	// HTTP API's authentication and authorisation to Kubernetes
	// (TokenReview and SubjectAccessReview), for tests.
	APIAuthenticator authenticator.Request
	APIAuthorizer    authorizer.Authorizer
}

// DefaultLastSeenPeriod is Options.LastSeenPeriod's default. Each device's
// period is lengthened by up to a fifth (LastSeenJitter), by a hash of its
// name, so that a fleet connected at once does not refresh at once.
const DefaultLastSeenPeriod = time.Hour

// LastSeenJitter is the largest fraction by which a device's lastSeen
// period is lengthened.
const LastSeenJitter = 0.2

func (o *Options) setDefaults() error {
	if o.Name == "" {
		return errors.New("gateway: a replica name is required")
	}
	if o.Config == nil {
		return errors.New("gateway: a Kubernetes configuration is required")
	}
	if len(o.Trust.Certificate.Certificate) == 0 && len(o.ServingDNSNames)+len(o.ServingIPs) == 0 {
		return errors.New("gateway: a serving certificate, or the names to request one for, is required")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.SystemNamespace == "" {
		o.SystemNamespace = wasmbedv1.DefaultSystemNamespace
	}
	if o.DeviceNamespace == "" {
		o.DeviceNamespace = "default"
	}
	if o.SessionAddr == "" {
		o.SessionAddr = ":4423"
	}
	if o.EnrollAddr == "" {
		o.EnrollAddr = ":4424"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":8080"
	}
	def(&o.HeartbeatInterval, 30*time.Second)
	def(&o.UnreachableAfter, 3*o.HeartbeatInterval)
	def(&o.LastSeenPeriod, DefaultLastSeenPeriod)
	def(&o.LeaseDuration, 15*time.Second)
	def(&o.CertificateCheckPeriod, time.Minute)
	def(&o.CommandTimeout, time.Minute)
	def(&o.TicketKeyRotation, 24*time.Hour)
	if o.MaxConcurrentDeliveries <= 0 {
		o.MaxConcurrentDeliveries = 128
	}
	if o.ModuleCacheBytes <= 0 {
		o.ModuleCacheBytes = 64 << 20
	}
	if o.QPS <= 0 {
		o.QPS = 200
	}
	if o.Burst <= 0 {
		o.Burst = 400
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Limits.IdleTimeout = o.UnreachableAfter
	return nil
}

// Gateway is one gateway replica.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	mgr     manager.Manager
	client  client.Client
	reader  client.Reader // uncached
	events  recorder.EventRecorder
	srv     *session.Server
	metrics *metrics
	modules *moduleCache

	mu       sync.Mutex
	sessions map[types.NamespacedName]*deviceSession // by Device
	closed   map[types.NamespacedName]closedSession  // sessions ended, status not yet written

	queue workqueue.TypedRateLimitingInterface[types.NamespacedName] // devices to reconcile

	csrs      csrWaiters        // certificate requests waiting for the signer
	gatewayCA *x509.Certificate // from the trust bundle, to check serving certificates
	serving   servingCert       // the serving certificate, when requested from the controller
	lookups   *rate.Limiter     // API lookups of keys missing from the cache

	addrs atomic.Pointer[[3]string] // session, enrollment and HTTP listeners

	cacheSynced    atomic.Bool
	listenersReady atomic.Bool
}

// New builds a gateway from opts. Run starts it.
func New(opts Options) (*Gateway, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	g := &Gateway{
		opts:     opts,
		log:      opts.Logger.With("gateway", opts.Name),
		now:      opts.Clock,
		sessions: map[types.NamespacedName]*deviceSession{},
		closed:   map[types.NamespacedName]closedSession{},
		lookups:  rate.NewLimiter(10, 10),
	}
	var err error
	if g.metrics, err = newMetrics(opts.Registry); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g.modules = newModuleCache(opts.ModuleCacheBytes)
	if err := g.buildManager(); err != nil {
		return nil, err
	}
	sm, err := session.NewMetrics(opts.Registry)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g.srv, err = session.NewServer(session.Config{
		Handler:           g,
		Enroller:          &enroller{g: g},
		Renewer:           &renewer{g: g},
		Limits:            opts.Limits,
		HeartbeatInterval: opts.HeartbeatInterval,
		Clock:             opts.Clock,
		Metrics:           sm,
		Logger:            g.log,
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// NewScheme returns the scheme the gateway's clients use.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := wasmbedv1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// stripModule drops an Application's module from the cache's copy, with
// its managed fields.
func stripModule(obj any) (any, error) {
	if a, ok := obj.(*wasmbedv1.Application); ok {
		a.ManagedFields = nil
		a.Spec.WasmBinary = nil
	}
	return obj, nil
}

// Index names of the gateway's cache.
const (
	indexPublicKey = "spec.publicKey"
	indexDevice    = "spec.device"
)

func (g *Gateway) buildManager() error {
	scheme, err := NewScheme()
	if err != nil {
		return err
	}
	cfg := rest.CopyConfig(g.opts.Config)
	cfg.QPS, cfg.Burst = g.opts.QPS, g.opts.Burst
	cfg.UserAgent = "wasmbed-gateway/" + g.opts.Name
	mgr, err := manager.New(cfg, manager.Options{
		Scheme:                 scheme,
		Logger:                 logr.FromSlogHandler(g.log.Handler()),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			// A gateway never delivers from an Application (payloads come from
			// their ConfigMaps): its cached copies drop the module.
			ByObject: map[client.Object]cache.ByObject{
				&wasmbedv1.Application{}: {Transform: stripModule},
				// Only the certificate requests gateways made.
				&certificatesv1.CertificateSigningRequest{}: {Label: labels.SelectorFromSet(labels.Set{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway})},
			},
		},
		// ConfigMaps (the pairing window, module payloads) and Secrets are
		// read when needed, never cached: a gateway watches no more than the
		// Devices and DeviceApplications it serves.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.ConfigMap{}, &corev1.Secret{}, &coordinationv1.Lease{}}}},
	})
	if err != nil {
		return fmt.Errorf("gateway: manager: %w", err)
	}
	// New takes no context: registering an index on a cache that has not
	// started waits for nothing, so there is nothing to cancel.
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &wasmbedv1.Device{}, indexPublicKey, func(o client.Object) []string {
		return []string{o.(*wasmbedv1.Device).Spec.PublicKey}
	}); err != nil {
		return fmt.Errorf("gateway: index devices: %w", err)
	}
	if err := idx.IndexField(ctx, &wasmbedv1.DeviceApplication{}, indexDevice, func(o client.Object) []string {
		return []string{o.(*wasmbedv1.DeviceApplication).Spec.Device}
	}); err != nil {
		return fmt.Errorf("gateway: index device applications: %w", err)
	}
	g.mgr = mgr
	g.client = mgr.GetClient()
	g.reader = mgr.GetAPIReader()
	g.events = mgr.GetEventRecorder("wasmbed-gateway")
	return g.setupDelivery()
}

// Run serves until ctx ends, then shuts down gracefully: it stops accepting,
// says goodbye to every device and flushes the status writes under way.
func (g *Gateway) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- g.mgr.Start(ctx) }()
	sv, err := g.prepare(ctx)
	if err != nil {
		cancel()
		if mgrErr := <-mgrDone; mgrErr != nil && !errors.Is(mgrErr, context.Canceled) {
			err = errors.Join(err, mgrErr)
		}
		return err
	}
	sessLn, enrLn, httpLn := sv.sessLn, sv.enrLn, sv.httpLn
	sessTLS, enrollTLS, httpSrv, tickets := sv.sessTLS, sv.enrollTLS, sv.httpSrv, sv.tickets

	// Delivery and status writes outlive ctx for the shutdown's flush.
	workCtx, workCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer workCancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() { errs <- ignoreClosed(g.srv.ServeSessions(sessLn, sessTLS)) })
	wg.Go(func() { errs <- ignoreClosed(g.srv.ServeEnrollment(enrLn, enrollTLS)) })
	wg.Go(func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("gateway: http: %w", err)
		}
	})
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		g.runDelivery(workCtx)
	}()
	wg.Go(func() { g.renewLease(ctx) })
	wg.Go(func() { g.refreshLastSeen(ctx) })
	wg.Go(func() { g.warnExpiringCertificates(ctx, g.opts.CertificateCheckPeriod) })
	wg.Go(func() { tickets.run(ctx, time.Minute) })
	wg.Go(func() { g.renewServingCertificate(ctx) })
	g.listenersReady.Store(true)
	g.log.Info("gateway serving", "sessions", sessLn.Addr().String(), "enroll", enrLn.Addr().String(), "http", httpLn.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	case runErr = <-mgrDone:
		if runErr == nil {
			runErr = errors.New("gateway: manager stopped")
		}
	}
	g.listenersReady.Store(false)
	g.log.Info("gateway shutting down")
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer shutCancel()
	_ = g.srv.Shutdown(shutCtx)
	_ = httpSrv.Shutdown(shutCtx)
	// Flush: finish the status writes under way, then stop.
	go func() {
		<-shutCtx.Done()
		workCancel()
	}()
	g.queue.ShutDownWithDrain()
	<-delivered
	// The Lease is left to expire rather than released: a replica that
	// restarts within its duration takes its devices back without the
	// controller marking them Unreachable in between.
	workCancel()
	cancel()
	wg.Wait()
	return runErr
}

// serving is what Run serves with, once prepared.
type serving struct {
	sessLn, enrLn, httpLn net.Listener
	sessTLS, enrollTLS    *tls.Config
	httpSrv               *http.Server
	tickets               *ticketKeys
}

// prepare waits for the caches, resolves the trust material and the
// session-ticket keys, and opens the listeners last, so that a failure
// leaves nothing open.
func (g *Gateway) prepare(ctx context.Context) (*serving, error) {
	if !g.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("gateway: caches did not sync: %w", ctx.Err())
	}
	if err := g.watchCSRs(ctx); err != nil {
		return nil, err
	}
	if err := g.watchDevices(ctx); err != nil {
		return nil, err
	}
	g.cacheSynced.Store(true)
	if err := g.resolveTrust(ctx); err != nil {
		return nil, err
	}
	var sv serving
	var err error
	if sv.tickets, err = g.loadTicketKeys(ctx); err != nil {
		return nil, err
	}
	if sv.sessTLS, sv.enrollTLS, err = g.tlsConfigs(sv.tickets.ring); err != nil {
		return nil, err
	}
	if sv.httpSrv, err = g.httpServer(); err != nil {
		return nil, err
	}
	if sv.sessLn, sv.enrLn, sv.httpLn, err = g.listen(ctx); err != nil {
		return nil, err
	}
	g.addrs.Store(&[3]string{sv.sessLn.Addr().String(), sv.enrLn.Addr().String(), sv.httpLn.Addr().String()})
	return &sv, nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, session.ErrServerClosed) {
		return nil
	}
	return err
}

// listen opens the listeners not given in Options.
func (g *Gateway) listen(ctx context.Context) (sess, enroll, httpLn net.Listener, err error) {
	var lc net.ListenConfig
	open := func(ln net.Listener, addr string) (net.Listener, error) {
		if ln != nil {
			return ln, nil
		}
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("gateway: listen on %s: %w", addr, err)
		}
		return l, nil
	}
	if sess, err = open(g.opts.SessionListener, g.opts.SessionAddr); err != nil {
		return nil, nil, nil, err
	}
	if enroll, err = open(g.opts.EnrollListener, g.opts.EnrollAddr); err != nil {
		_ = sess.Close()
		return nil, nil, nil, err
	}
	if httpLn, err = open(g.opts.HTTPListener, g.opts.HTTPAddr); err != nil {
		_ = sess.Close()
		_ = enroll.Close()
		return nil, nil, nil, err
	}
	return sess, enroll, httpLn, nil
}

// tlsConfigs returns the session and enrollment listeners' TLS
// configurations. Device certificates are verified against the device CA,
// and a device revoked in Kubernetes is refused already at the handshake.
func (g *Gateway) tlsConfigs(tickets *pki.TicketKeyRing) (sess, enroll *tls.Config, err error) {
	v, err := pki.NewVerifier(pki.VerifierConfig{
		Root:       g.opts.Trust.Root,
		Issuer:     g.opts.Trust.DeviceCA,
		Revocation: pki.RevocationCheckerFunc(g.certificateRevoked),
		Clock:      g.now,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: verifier: %w", err)
	}
	opts := pki.ServerOptions{Certificate: g.opts.Trust.Certificate, Verifier: v, TicketKeys: tickets, Logger: g.log}
	if sess, err = pki.ServerTLSConfig(opts); err != nil {
		return nil, nil, fmt.Errorf("gateway: session tls: %w", err)
	}
	if enroll, err = pki.EnrollmentServerTLSConfig(opts); err != nil {
		return nil, nil, fmt.Errorf("gateway: enrollment tls: %w", err)
	}
	if g.serving.cur.Load() != nil {
		// A requested certificate is renewed in place.
		for _, c := range []*tls.Config{sess, enroll} {
			c.Certificates, c.GetCertificate = nil, g.serving.get
		}
	}
	return sess, enroll, nil
}

// httpServer serves the HTTP API with health, readiness and metrics, and
// the dashboard under /ui/.
func (g *Gateway) httpServer() (*http.Server, error) {
	authn, authz := g.opts.APIAuthenticator, g.opts.APIAuthorizer
	if authn == nil || authz == nil {
		cs, err := kubernetes.NewForConfig(g.opts.Config)
		if err != nil {
			return nil, fmt.Errorf("gateway: http api: %w", err)
		}
		if authn, authz, err = httpapi.NewDelegatingAuth(httpapi.DelegatingAuthOptions{Client: cs, Audiences: g.opts.APIAudiences}); err != nil {
			return nil, fmt.Errorf("gateway: http api: %w", err)
		}
	}
	api, err := httpapi.New(httpapi.Options{
		Reader:           g.client,
		Writer:           g.client,
		Informers:        g.mgr.GetCache(),
		Events:           g.reader,
		Fleet:            apiFleet{g},
		Authenticator:    authn,
		Authorizer:       authz,
		SystemNamespace:  g.opts.SystemNamespace,
		DefaultNamespace: g.opts.DeviceNamespace,
		Logger:           g.log.With("component", "http-api"),
		Registerer:       g.opts.Registry,
		Gatherer:         prometheus.Gatherers{g.opts.Registry, ctrlmetrics.Registry},
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: http api: %w", err)
	}
	return &http.Server{Handler: dashboard.Mount(api), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}, nil
}

// apiFleet answers the HTTP API's questions about what this replica holds.
type apiFleet struct{ g *Gateway }

func (f apiFleet) Ready() error { return f.g.Ready() }

func (f apiFleet) DeviceMetrics(namespace, name string) (httpapi.DeviceMetrics, bool) {
	r, at, ok := f.g.DeviceMetrics(types.NamespacedName{Namespace: namespace, Name: name})
	if !ok {
		return httpapi.DeviceMetrics{}, false
	}
	return httpapi.MetricsFromReport(r, at), true
}

// Ready reports whether the gateway serves: caches synced and device
// listener up.
func (g *Gateway) Ready() error {
	switch {
	case !g.cacheSynced.Load():
		return errors.New("caches not synced")
	case !g.listenersReady.Load():
		return errors.New("device listener not serving")
	}
	return nil
}

// Addrs returns the addresses of the session, enrollment and HTTP
// listeners, once Run opened them.
func (g *Gateway) Addrs() (sess, enroll, httpAddr string) {
	if a := g.addrs.Load(); a != nil {
		return a[0], a[1], a[2]
	}
	return "", "", ""
}

// Sessions returns the number of live device sessions.
func (g *Gateway) Sessions() int { return g.srv.Sessions() }
