package controlplane

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// DefaultAPIPort is the API server port `wasmbed up` uses unless told otherwise.
const DefaultAPIPort = 6443

// Options configures an embedded control plane. The zero value of every field
// but DataDir is usable.
type Options struct {
	// DataDir holds etcd's data, the credentials and the kubeconfig. Required.
	DataDir string
	// APIPort is the API server's port on 127.0.0.1; 0 picks a free port.
	APIPort int
	// Logger receives the control plane's own log lines. Defaults to slog.Default().
	Logger *slog.Logger
	// ComponentLogLevel is the lowest level at which etcd's and kube-apiserver's
	// own log lines are passed on to Logger. Defaults to warn: both are chatty.
	ComponentLogLevel *slog.Level
	// ReadyTimeout bounds the wait for readiness. Defaults to two minutes.
	ReadyTimeout time.Duration
	// SkipCRDs leaves the Wasmbed CRDs uninstalled.
	SkipCRDs bool
}

// PortInUseError reports that the API server's port is taken.
type PortInUseError struct {
	// Address is the address that could not be bound.
	Address string
	// Err is the underlying listen error.
	Err error
}

func (e *PortInUseError) Error() string {
	return fmt.Sprintf("address %s is already in use: is another `wasmbed up` or Kubernetes API server running? Stop it or choose another port with --api-port", e.Address)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// ErrDataDirLocked reports that another process runs a control plane on the
// same data directory.
var ErrDataDirLocked = errors.New("data directory is in use by another wasmbed process")

// ControlPlane is a running embedded etcd and kube-apiserver.
type ControlPlane struct {
	dataDir        string
	kubeconfigPath string
	restConfig     *rest.Config
	logger         *slog.Logger

	etcd      *embed.Etcd
	etcdQuiet atomic.Bool
	cancel    context.CancelFunc
	apiDone   chan error
	lock      *os.File
	ca        *keyPair // signs client certificates for the API server
	stopOnce  sync.Once
	stopErr   error
	startedIn time.Duration
}

// Start starts etcd and kube-apiserver on loopback, waits until the API server
// is ready and, unless opts.SkipCRDs, installs the Wasmbed CRDs. Cancelling ctx
// after Start returns does not stop the control plane: call Stop.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, retErr error) {
	begin := time.Now()
	if opts.DataDir == "" {
		return nil, errors.New("control plane: data directory is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	componentLevel := slog.LevelWarn
	if opts.ComponentLogLevel != nil {
		componentLevel = *opts.ComponentLogLevel
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("control plane: data directory: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("control plane: create data directory: %w", err)
	}
	cp := &ControlPlane{
		dataDir:        dataDir,
		kubeconfigPath: filepath.Join(dataDir, "kubeconfig"),
		logger:         opts.Logger,
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, cp.Stop())
		}
	}()
	if cp.lock, err = lockDataDir(dataDir); err != nil {
		return nil, err
	}

	apiListener, err := listenLoopback(ctx, opts.APIPort)
	if err != nil {
		return nil, err
	}
	apiPort := apiListener.Addr().(*net.TCPAddr).Port

	hosts := []string{"127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
		"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", serviceAccountIP}
	ca, admin, err := ensureCredentials(filepath.Join(dataDir, "pki"), hosts, time.Now())
	if err != nil {
		apiListener.Close()
		return nil, fmt.Errorf("control plane: credentials: %w", err)
	}

	componentLogger := slog.New(levelFilter{min: componentLevel, next: opts.Logger.Handler()})
	klog.SetSlogLogger(componentLogger.With("component", "kube-apiserver"))

	etcdURL, err := cp.startEtcd(ctx, filepath.Join(dataDir, "etcd"), componentLogger.With("component", "etcd"), opts.ReadyTimeout)
	if err != nil {
		apiListener.Close()
		return nil, err
	}

	etcdReady := time.Since(begin)

	if err := cp.startAPIServer(ctx, apiListener, apiPort, etcdURL, filepath.Join(dataDir, "pki")); err != nil {
		return nil, err
	}

	cp.ca = ca
	cp.restConfig = &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   ca.certPEM,
			CertData: admin.certPEM,
			KeyData:  admin.keyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	if err := WriteKubeconfig(cp.kubeconfigPath, cp.restConfig); err != nil {
		return nil, err
	}
	if err := cp.waitReady(ctx, opts.ReadyTimeout); err != nil {
		return nil, err
	}
	apiReady := time.Since(begin)
	if !opts.SkipCRDs {
		crds, err := LoadCRDs()
		if err != nil {
			return nil, err
		}
		if err := InstallCRDs(ctx, cp.restConfig, crds); err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
	}
	cp.startedIn = time.Since(begin)
	cp.logger.Info("control plane ready", "apiServer", cp.restConfig.Host, "dataDir", dataDir,
		"kubeconfig", cp.kubeconfigPath, "startup", cp.startedIn.Round(time.Millisecond),
		"etcdReady", etcdReady.Round(time.Millisecond), "apiServerReady", apiReady.Round(time.Millisecond))
	return cp, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, dir string, logger *slog.Logger, timeout time.Duration) (string, error) {
	clientPort, err := freePort(ctx)
	if err != nil {
		return "", err
	}
	peerPort, err := freePort(ctx)
	if err != nil {
		return "", err
	}
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}

	cfg := embed.NewConfig()
	cfg.Name = "wasmbed"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ListenMetricsUrls = nil
	// A single member on loopback: elect it quickly instead of waiting out
	// the default one-second election timeout a cluster over a network needs.
	cfg.TickMs = 20
	cfg.ElectionMs = 200
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(slogCore{logger: logger, quiet: &cp.etcdQuiet}))

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", fmt.Errorf("control plane: start etcd in %s: %w", dir, err)
	}
	cp.etcd = e
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return "", fmt.Errorf("control plane: etcd: %w", err)
	case <-ctx.Done():
		return "", fmt.Errorf("control plane: waiting for etcd: %w", ctx.Err())
	case <-time.After(timeout):
		return "", fmt.Errorf("control plane: etcd not ready after %s", timeout)
	}
	return clientURL.String(), nil
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, listener net.Listener, port int, etcdURL, pkiDir string) error {
	files := certificateFiles{dir: pkiDir}
	s := options.NewServerRunOptions()

	// A registry of our own, as Kubernetes' test server does, so that the
	// control plane can be started more than once in a process.
	featureGate := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	effectiveVersion := compatibility.DefaultBuildEffectiveVersion()
	registry := basecompatibility.NewComponentGlobalsRegistry()
	if err := registry.Register(basecompatibility.DefaultKubeComponent, effectiveVersion, featureGate); err != nil {
		listener.Close()
		return fmt.Errorf("control plane: register component versions: %w", err)
	}
	s.GenericServerRunOptions.ComponentGlobalsRegistry = registry

	s.SecureServing.Listener = listener
	s.SecureServing.BindAddress = net.ParseIP("127.0.0.1")
	s.SecureServing.BindPort = port
	s.SecureServing.ServerCert.CertKey.CertFile = files.servingCert()
	s.SecureServing.ServerCert.CertKey.KeyFile = files.servingKey()
	s.GenericServerRunOptions.AdvertiseAddress = net.ParseIP("127.0.0.1")
	s.Etcd.StorageConfig.Transport.ServerList = []string{etcdURL}
	s.Authentication.ClientCert.ClientCA = files.caCert()
	s.Authentication.ServiceAccounts.Issuers = []string{"https://kubernetes.default.svc.cluster.local"}
	s.Authentication.ServiceAccounts.KeyFiles = []string{files.serviceAccountPublicKey()}
	s.ServiceAccountSigningKeyFile = files.serviceAccountKey()
	s.Authorization.Modes = []string{"RBAC"}
	// Stop must not wait for clients' watches, which never end on their
	// own: without this, kube-apiserver waits out its request timeout
	// (a minute) for every open watch before it returns, so Stop fails and
	// a restart on the same port finds it still taken. With it, Stop waits
	// for ordinary requests to drain, then gives watches 2 seconds.
	s.GenericServerRunOptions.ShutdownSendRetryAfter = true
	s.ServiceClusterIPRanges = "10.0.0.0/24"
	s.EndpointReconcilerType = "none"

	if err := registry.Set(); err != nil {
		listener.Close()
		return fmt.Errorf("control plane: component versions: %w", err)
	}
	// The API server runs until Stop, not until the caller's ctx ends: its
	// lifetime keeps ctx's values but not its cancellation.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cp.cancel = cancel
	completed, err := s.Complete(ctx)
	if err != nil {
		listener.Close()
		return fmt.Errorf("control plane: complete kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		listener.Close()
		return fmt.Errorf("control plane: kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	config, err := app.NewConfig(completed)
	if err != nil {
		return fmt.Errorf("control plane: kube-apiserver config: %w", err)
	}
	completedConfig, err := config.Complete()
	if err != nil {
		return fmt.Errorf("control plane: complete kube-apiserver config: %w", err)
	}
	server, err := app.CreateServerChain(completedConfig)
	if err != nil {
		return fmt.Errorf("control plane: create kube-apiserver: %w", err)
	}
	prepared, err := server.PrepareRun()
	if err != nil {
		return fmt.Errorf("control plane: prepare kube-apiserver: %w", err)
	}
	cp.apiDone = make(chan error, 1)
	go func() {
		cp.apiDone <- prepared.Run(ctx)
		close(cp.apiDone)
	}()
	return nil
}

func (cp *ControlPlane) waitReady(ctx context.Context, timeout time.Duration) error {
	client, err := rest.UnversionedRESTClientFor(withCodec(cp.restConfig))
	if err != nil {
		return fmt.Errorf("control plane: readiness client: %w", err)
	}
	var lastErr error
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-cp.apiDone:
			return false, fmt.Errorf("kube-apiserver exited: %w", err)
		case err := <-cp.etcd.Err():
			return false, fmt.Errorf("etcd exited: %w", err)
		default:
		}
		lastErr = client.Get().AbsPath("/readyz").Do(ctx).Error()
		return lastErr == nil, nil
	})
	if err != nil {
		if lastErr != nil {
			err = fmt.Errorf("%w (last readiness error: %w)", err, lastErr)
		}
		return fmt.Errorf("control plane: wait for API server readiness: %w", err)
	}
	return nil
}

// RESTConfig returns an admin client configuration. Callers may modify the copy.
func (cp *ControlPlane) RESTConfig() *rest.Config { return rest.CopyConfig(cp.restConfig) }

// ClientConfig returns a REST configuration that authenticates to the API
// server as user in groups, with a client certificate the control plane's
// CA signs. The embedded platform gives each component its own identity
// this way (a service account's user name,
// system:serviceaccount:NAMESPACE:NAME, is bound by RBAC like the account
// itself), so that every component runs with the permissions it has on a
// real cluster.
func (cp *ControlPlane) ClientConfig(user string, groups ...string) (*rest.Config, error) {
	if user == "" {
		return nil, errors.New("control plane: a user name is required")
	}
	kp, err := issueLeaf(cp.ca, leafTemplate{commonName: user, organization: groups, usage: x509.ExtKeyUsageClientAuth}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("control plane: client certificate for %s: %w", user, err)
	}
	cfg := rest.CopyConfig(cp.restConfig)
	cfg.CertData, cfg.KeyData = kp.certPEM, kp.keyPEM
	return cfg, nil
}

// KubeconfigPath is the admin kubeconfig written in the data directory.
func (cp *ControlPlane) KubeconfigPath() string { return cp.kubeconfigPath }

// DataDir is the absolute data directory.
func (cp *ControlPlane) DataDir() string { return cp.dataDir }

// StartupDuration is how long Start took, from the call to ready CRDs.
func (cp *ControlPlane) StartupDuration() time.Duration { return cp.startedIn }

// Stop shuts down kube-apiserver, then etcd, and releases the data
// directory. It is safe to call more than once.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		var errs []error
		if cp.cancel != nil {
			cp.cancel()
			select {
			case err := <-cp.apiDone:
				if err != nil && !errors.Is(err, context.Canceled) {
					errs = append(errs, fmt.Errorf("kube-apiserver: %w", err))
				}
			case <-time.After(30 * time.Second):
				errs = append(errs, errors.New("kube-apiserver did not stop within 30s"))
			}
		}
		if cp.etcd != nil {
			cp.etcdQuiet.Store(true)
			cp.etcd.Close()
		}
		if cp.lock != nil {
			if err := syscall.Flock(int(cp.lock.Fd()), syscall.LOCK_UN); err != nil {
				errs = append(errs, fmt.Errorf("unlock data directory: %w", err))
			}
			cp.lock.Close()
		}
		cp.stopErr = errors.Join(errs...)
	})
	return cp.stopErr
}

func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // the data directory the operator chose
	if err != nil {
		return nil, fmt.Errorf("control plane: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("control plane: %s: %w", dir, ErrDataDirLocked)
		}
		return nil, fmt.Errorf("control plane: lock data directory: %w", err)
	}
	return f, nil
}

func listenLoopback(ctx context.Context, port int) (net.Listener, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, &PortInUseError{Address: addr, Err: err}
		}
		return nil, fmt.Errorf("control plane: listen on %s: %w", addr, err)
	}
	return l, nil
}

func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("control plane: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WriteKubeconfig writes a kubeconfig of mode 0600 at path for cfg's server,
// certificate authority and client certificate.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	const name = "wasmbed"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("control plane: write kubeconfig: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("control plane: kubeconfig permissions: %w", err)
	}
	return nil
}

// Done is closed, after delivering kube-apiserver's exit error if any, when
// the API server stops on its own or through Stop.
func (cp *ControlPlane) Done() <-chan error { return cp.apiDone }
