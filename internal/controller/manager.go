package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/modcheck"
)

// Defaults of Options.
const (
	// DefaultLeaderElectionID names the leader-election Lease.
	DefaultLeaderElectionID = "wasmbed-controller"
	// DefaultQPS and DefaultBurst are the client-side rate limits towards
	// the API server. client-go's own defaults (5 and 10) would make a
	// 1,000-device rollout, about one write per device, take minutes; the
	// API server's priority and fairness is what protects it, so the
	// client limit is only a guard against a runaway loop (see
	// docs/operations.md).
	DefaultQPS   = 500
	DefaultBurst = 1000
	// csrWorkers is the number of certificate requests signed at once.
	csrWorkers = 16
	// DefaultUnreachableAfter is how long a Connected device may go
	// without a lastSeen refresh before it is Unreachable. Gateways refresh
	// lastSeen once per --last-seen-period (default 1h, plus up to 20%
	// jitter) and detect missed heartbeats themselves; this is the backstop
	// for a gateway that holds its Lease but lost track of a device, and
	// must exceed the gateways' period with its jitter, or connected
	// devices would flap to Unreachable between two refreshes.
	DefaultUnreachableAfter = 3 * time.Hour
	// DefaultStatusInterval is the shortest time between two count-only
	// status writes of one Application.
	DefaultStatusInterval = time.Second
	// DefaultArtifactLifetime is how long an issued artifact stays
	// installable.
	DefaultArtifactLifetime = 7 * 24 * time.Hour
	// DefaultCSRGracePeriod is how long a decided certificate request
	// stays for its requester to read it.
	DefaultCSRGracePeriod = time.Minute
	// DefaultCSRPendingTimeout is how long a request may stay undecided.
	DefaultCSRPendingTimeout = time.Hour
	// DefaultGatewayUser is the identity of the gateways' service account
	// in the default system namespace.
	DefaultGatewayUser = "system:serviceaccount:" + wasmbedv1.DefaultSystemNamespace + ":wasmbed-gateway"
	// DefaultParallelism bounds the concurrent DeviceApplication writes of
	// one reconcile.
	DefaultParallelism = 32
)

// Options configure the controller. Zero values give the defaults.
type Options struct {
	// RESTConfig reaches the API server. Required. Its QPS and Burst are
	// replaced by the fields below.
	RESTConfig *rest.Config
	// SystemNamespace holds the keys, CAs, gateway Leases and the pairing
	// window; wasmbedv1.DefaultSystemNamespace when empty.
	SystemNamespace string
	// Namespaces restricts the Devices and Applications watched; all when
	// empty.
	Namespaces []string
	// MetricsAddr serves Prometheus metrics; "0" disables them.
	MetricsAddr string
	// ProbeAddr serves /healthz and /readyz; "0" disables them.
	ProbeAddr string
	// LeaderElection runs the reconcilers only in the replica holding the
	// Lease LeaderElectionID in the system namespace.
	LeaderElection   bool
	LeaderElectionID string
	// QPS and Burst are the client-side rate limits.
	QPS   float32
	Burst int
	// GatewayUsers and GatewayGroups are the identities whose certificate
	// requests are considered; DefaultGatewayUser when both are empty.
	GatewayUsers  []string
	GatewayGroups []string
	// DeviceCertLifetime and GatewayCertLifetime cap certificate lifetimes.
	DeviceCertLifetime  time.Duration
	GatewayCertLifetime time.Duration
	// GatewayDNSNames and GatewayIPs are the names gateway certificates
	// may carry (what devices dial); without any, no gateway certificate
	// request is signed.
	GatewayDNSNames []string
	GatewayIPs      []net.IP
	// UnreachableAfter, StatusInterval, ArtifactLifetime, CSRGracePeriod
	// and CSRPendingTimeout: see the defaults.
	UnreachableAfter  time.Duration
	StatusInterval    time.Duration
	ArtifactLifetime  time.Duration
	CSRGracePeriod    time.Duration
	CSRPendingTimeout time.Duration
	// Admission configures the module-checking sandbox.
	Admission modcheck.SandboxOptions
	// ApplicationWorkers is the number of Applications reconciled at once.
	ApplicationWorkers int
	// Parallelism bounds the concurrent writes of one reconcile.
	Parallelism int
	// SkipNameValidation lets several managers run in one process (tests).
	SkipNameValidation bool
}

func (o *Options) defaults() error {
	if o.RESTConfig == nil {
		return errors.New("controller: no REST config")
	}
	if o.SystemNamespace == "" {
		o.SystemNamespace = wasmbedv1.DefaultSystemNamespace
	}
	if o.LeaderElectionID == "" {
		o.LeaderElectionID = DefaultLeaderElectionID
	}
	if o.QPS == 0 {
		o.QPS = DefaultQPS
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if len(o.GatewayUsers) == 0 && len(o.GatewayGroups) == 0 {
		o.GatewayUsers = []string{DefaultGatewayUser}
	}
	setDefault(&o.DeviceCertLifetime, certsign.DefaultDeviceLifetime)
	setDefault(&o.GatewayCertLifetime, certsign.DefaultGatewayLifetime)
	setDefault(&o.UnreachableAfter, DefaultUnreachableAfter)
	setDefault(&o.StatusInterval, DefaultStatusInterval)
	setDefault(&o.ArtifactLifetime, DefaultArtifactLifetime)
	setDefault(&o.CSRGracePeriod, DefaultCSRGracePeriod)
	setDefault(&o.CSRPendingTimeout, DefaultCSRPendingTimeout)
	if o.ApplicationWorkers <= 0 {
		o.ApplicationWorkers = 4
	}
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Leader election: the Lease, and the Events it records with the core API.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=wasmbed-system,resources=leases,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",namespace=wasmbed-system,resources=events,verbs=create;patch

// New builds the controller's manager with its three reconcilers, the key
// loader, leader election, health probes and metrics. Start it with
// mgr.Start(ctx).
func New(opts Options) (manager.Manager, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(opts.RESTConfig)
	cfg.QPS, cfg.Burst = opts.QPS, opts.Burst
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	cacheOpts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&coordinationv1.Lease{}: {
				Namespaces: map[string]cache.Config{opts.SystemNamespace: {}},
				Label:      labels.SelectorFromSet(labels.Set{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway}),
			},
		},
	}
	if len(opts.Namespaces) > 0 {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			cacheOpts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cacheOpts,
		Client:                        client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}}}},
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.ProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.SystemNamespace,
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: ptr.To(opts.SkipNameValidation)},
	})
	if err != nil {
		return nil, fmt.Errorf("controller: new manager: %w", err)
	}
	if err := addIndexes(mgr); err != nil {
		return nil, err
	}
	keys := &Keys{Client: mgr.GetClient(), Namespace: opts.SystemNamespace}
	if err := mgr.Add(keys); err != nil {
		return nil, err
	}
	apps := &ApplicationReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(),
		Recorder: mgr.GetEventRecorder("wasmbed-controller"), Keys: keys,
		Admission:        modcheck.NewSandbox(opts.Admission),
		ArtifactLifetime: opts.ArtifactLifetime, StatusInterval: opts.StatusInterval,
		Parallelism: opts.Parallelism, MaxConcurrentReconciles: opts.ApplicationWorkers,
	}
	if err := apps.SetupWithManager(mgr, controller.Options{}); err != nil {
		return nil, fmt.Errorf("controller: application reconciler: %w", err)
	}
	devices := &DeviceReconciler{
		Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("wasmbed-controller"),
		SystemNamespace: opts.SystemNamespace, UnreachableAfter: opts.UnreachableAfter,
	}
	if err := devices.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: 4}); err != nil {
		return nil, fmt.Errorf("controller: device reconciler: %w", err)
	}
	csrs := &CertificateSigningRequestReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("wasmbed-controller"),
		SystemNamespace: opts.SystemNamespace,
		Policy: certsign.Policy{
			GatewayUsers: opts.GatewayUsers, GatewayGroups: opts.GatewayGroups,
			DeviceLifetime: opts.DeviceCertLifetime, GatewayLifetime: opts.GatewayCertLifetime,
			GatewayDNSNames: opts.GatewayDNSNames, GatewayIPs: opts.GatewayIPs,
		},
		GracePeriod: opts.CSRGracePeriod, PendingTimeout: opts.CSRPendingTimeout,
	}
	// Signing a request is three API round trips (a live read of the
	// pairing window, the approval, the certificate) around well under a
	// millisecond of cryptography: workers wait on the API server, and a
	// fleet enrolling at once queues its requests behind them.
	if err := csrs.SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: csrWorkers}); err != nil {
		return nil, fmt.Errorf("controller: certificate signer: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informers not synced")
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Run runs the controller until ctx ends.
func Run(ctx context.Context, opts Options) error {
	mgr, err := New(opts)
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}

// addIndexes registers the cache's field indexes.
func addIndexes(mgr manager.Manager) error {
	// New takes no context: registering an index on a cache that has not
	// started waits for nothing, so there is nothing to cancel.
	ctx := context.Background()
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &wasmbedv1.DeviceApplication{}, indexDAppApplication, func(o client.Object) []string {
		return []string{o.(*wasmbedv1.DeviceApplication).Spec.Application} //nolint:forcetypeassert // registered for this type
	}); err != nil {
		return fmt.Errorf("controller: index %s: %w", indexDAppApplication, err)
	}
	if err := idx.IndexField(ctx, &wasmbedv1.DeviceApplication{}, indexDAppDevice, func(o client.Object) []string {
		return []string{o.(*wasmbedv1.DeviceApplication).Spec.Device} //nolint:forcetypeassert // registered for this type
	}); err != nil {
		return fmt.Errorf("controller: index %s: %w", indexDAppDevice, err)
	}
	if err := idx.IndexField(ctx, &wasmbedv1.Device{}, indexDeviceGateway, func(o client.Object) []string {
		if gw := o.(*wasmbedv1.Device).Status.Gateway; gw != "" { //nolint:forcetypeassert // registered for this type
			return []string{gw}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("controller: index %s: %w", indexDeviceGateway, err)
	}
	return nil
}

// NewScheme returns a scheme with the Kubernetes types and the Wasmbed API.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add client-go types: %w", err)
	}
	if err := wasmbedv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add wasmbed types: %w", err)
	}
	return scheme, nil
}
