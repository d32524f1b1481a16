package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/controller"
	"github.com/wasmbed/wasmbed/internal/controlplane"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/sim"
)

// scheme knows the Kubernetes and Wasmbed types.
var scheme = func() *runtime.Scheme {
	s, err := gateway.NewScheme()
	if err != nil {
		panic(err)
	}
	return s
}()

// SampleApplication is the name of the sample application Start deploys.
const SampleApplication = "blinky"

// Start checks its options, the data directory and the ports, then starts
// every component and returns once the platform serves: gateways ready,
// devices connected, the sample application running. It fails without
// changing anything on disk when an option, a port or the data directory
// is wrong. The platform runs until ctx ends or Stop is called.
func Start(ctx context.Context, opts Options) (*Platform, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("platform: data directory: %w", err)
	}
	opts.DataDir = abs
	if err := checkDataDir(opts.DataDir); err != nil {
		return nil, err
	}
	if err := opts.checkPorts(ctx); err != nil {
		return nil, err
	}
	// What a previous run wrote is stale until this one is up.
	if err := os.Remove(filepath.Join(opts.DataDir, "endpoints.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("platform: %w", err)
	}
	p := &Platform{opts: opts, log: opts.Logger, errs: make(chan error, 16)}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, p.cancel)
	ok := false
	defer func() {
		if !ok {
			stop()
			_ = p.Stop()
		}
	}()

	begin := time.Now()
	p.cp, err = controlplane.Start(ctx, controlplane.Options{DataDir: opts.DataDir, APIPort: opts.APIPort, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	p.admin = p.cp.RESTConfig()
	p.stage("control plane", p.admin.Host, begin)

	step := time.Now()
	admin, err := client.New(p.admin, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	if err := p.bootstrap(ctx, admin); err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	if p.token, err = adminToken(ctx, p.admin); err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	p.stage("certificates and roles", "root CA kept in "+filepath.Join(opts.DataDir, "platform-pki"), step)

	step = time.Now()
	if err := p.StartController(); err != nil {
		return nil, err
	}
	if err := p.waitIssuer(ctx, admin); err != nil {
		return nil, err
	}
	p.stage("controller", "signing key published", step)

	step = time.Now()
	for i := range opts.Gateways {
		if err := p.startGateway(ctx, i); err != nil {
			return nil, err
		}
	}
	p.stage("gateways", fmt.Sprintf("%d ready", opts.Gateways), step)

	if opts.Devices > 0 {
		step = time.Now()
		if err := p.startFleet(ctx, admin); err != nil {
			return nil, err
		}
		p.stage("devices", fmt.Sprintf("%d enrolled and connected", opts.Devices), step)
	}
	if opts.Sample && opts.Devices > 0 {
		step = time.Now()
		if err := p.deploySample(ctx, admin); err != nil {
			return nil, err
		}
		p.stage("sample application", SampleApplication+" running on every device", step)
	}
	if err := p.writeEndpoints(); err != nil {
		return nil, err
	}
	ok = true
	return p, nil
}

func (p *Platform) stage(name, detail string, since time.Time) {
	p.opts.Progress(Stage{Name: name, Detail: detail, Took: time.Since(since)})
}

// identity returns a REST configuration for a component's service account.
func (p *Platform) identity(account string) (*rest.Config, error) {
	cfg, err := p.cp.ClientConfig(serviceAccountUser(account), "system:serviceaccounts", "system:serviceaccounts:"+wasmbedv1.DefaultSystemNamespace)
	if err != nil {
		return nil, fmt.Errorf("platform: %s identity: %w", account, err)
	}
	return cfg, nil
}

// StartController starts the controller (after StopController, again). A
// controller that stops on its own, having lost its leader Lease while the
// API server was unreachable, is started again.
func (p *Platform) StartController() error {
	cfg, err := p.identity(controllerAccount)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan error, 1)
	go func() {
		for {
			err := controller.Run(ctx, controller.Options{
				RESTConfig:         cfg,
				MetricsAddr:        "0",
				ProbeAddr:          "0",
				LeaderElection:     true,
				GatewayIPs:         []net.IP{net.ParseIP(p.opts.Host)},
				SkipNameValidation: true,
			})
			if ctx.Err() != nil {
				done <- err
				return
			}
			// On its own the controller stops when it lost its leader
			// Lease, the API server having been out of reach for longer
			// than the renew deadline: on a cluster its Deployment
			// restarts it, here the platform does.
			p.log.Warn("controller stopped; restarting it", "err", err)
			select {
			case <-ctx.Done():
				done <- err
				return
			case <-time.After(time.Second):
			}
		}
	}()
	p.mu.Lock()
	p.ctrlStop, p.ctrlDone = cancel, done
	p.mu.Unlock()
	return nil
}

// StopController stops the controller and waits for it.
func (p *Platform) StopController() {
	p.mu.Lock()
	cancel, done := p.ctrlStop, p.ctrlDone
	p.ctrlStop, p.ctrlDone = nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			p.log.Warn("controller stopped with an error", "err", err)
		}
	}
}

// waitIssuer waits until the controller published its keys.
func (p *Platform) waitIssuer(ctx context.Context, c client.Client) error {
	return poll(ctx, 2*time.Minute, func() (bool, error) {
		cm := &corev1.ConfigMap{}
		err := c.Get(ctx, types.NamespacedName{Namespace: wasmbedv1.DefaultSystemNamespace, Name: wasmbedv1.IssuerConfigMap}, cm)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}, "the controller to publish its keys")
}

// startGateway starts replica i and waits until it is ready.
func (p *Platform) startGateway(ctx context.Context, i int) error {
	if p.opts.GatewayExec != "" {
		return p.startChildGateway(ctx, i)
	}
	cfg, err := p.identity(gatewayAccount)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("gateway-%d", i)
	o := p.opts
	g, err := gateway.New(gateway.Options{
		Name:              name,
		Config:            cfg,
		DeviceNamespace:   "default",
		SessionAddr:       o.gatewayAddr(o.SessionPort, i),
		EnrollAddr:        o.gatewayAddr(o.EnrollPort, i),
		HTTPAddr:          o.gatewayAddr(o.HTTPPort, i),
		ServingIPs:        []net.IP{net.ParseIP(o.Host)},
		HeartbeatInterval: o.HeartbeatInterval,
		Logger:            p.log.With("component", name),
	})
	if err != nil {
		return fmt.Errorf("platform: %s: %w", name, err)
	}
	gctx, cancel := context.WithCancel(p.ctx)
	rg := &runningGateway{Endpoint: Endpoint{Name: name}, gw: g, cancel: cancel, done: make(chan error, 1)}
	go func() { rg.done <- g.Run(gctx) }()
	if err := poll(ctx, 2*time.Minute, func() (bool, error) {
		select {
		case err := <-rg.done:
			rg.done <- err
			return false, fmt.Errorf("%s stopped: %w", name, err)
		default:
		}
		return g.Ready() == nil, nil
	}, name+" to be ready"); err != nil {
		cancel()
		return err
	}
	rg.Session, rg.Enroll, rg.HTTP = g.Addrs()
	p.mu.Lock()
	p.gateways = append(p.gateways, rg)
	p.mu.Unlock()
	return nil
}

// startFleet starts the simulated devices, opening the pairing window while
// any of them has still to enroll, and waits until all are connected.
func (p *Platform) startFleet(ctx context.Context, c client.Client) error {
	shares, _ := sim.ParseMix(p.opts.Mix)
	var sess, enr []string
	for _, g := range p.gateways {
		sess, enr = append(sess, g.Session), append(enr, g.Enroll)
	}
	connected := func() (int, error) {
		var list wasmbedv1.DeviceList
		if err := c.List(ctx, &list); err != nil {
			return 0, err
		}
		n := 0
		for _, d := range list.Items {
			if d.Status.Phase == wasmbedv1.DevicePhaseConnected {
				n++
			}
		}
		return n, nil
	}
	flashDir := p.opts.devicesDir()
	if p.opts.MemoryFlash {
		flashDir = ""
	}
	opened, err := p.openPairingIfNeeded(ctx, c)
	if err != nil {
		return err
	}
	f, err := sim.New(ctx, sim.Options{
		Devices: p.opts.Devices, Gateways: sess, EnrollGateways: enr,
		Root: p.bundle.root, GatewayCA: p.bundle.gatewayCA, DeviceCA: p.bundle.deviceCA,
		DataDir: flashDir, Mix: shares, HeartbeatInterval: p.opts.HeartbeatInterval,
		SummaryInterval: -1, Logger: p.log.With("component", "devices"), SourceAddrs: p.opts.SourceAddrs,
		StartRate: p.opts.StartRate,
	})
	if err != nil {
		return fmt.Errorf("platform: %w", err)
	}
	fctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(fctx)
	}()
	p.mu.Lock()
	p.fleet, p.fleetStop, p.fleetDone = f, cancel, done
	p.mu.Unlock()
	// Count the sessions the gateways hold, not the Devices' phases: after
	// a restart the phases still say Connected from before.
	err = poll(ctx, fleetWait(p.opts.Devices, p.opts.StartRate), func() (bool, error) {
		held := 0
		for _, g := range p.gateways {
			n, err := g.sessions(ctx)
			if err != nil {
				return false, err
			}
			held += n
		}
		if held < p.opts.Devices {
			return false, nil // listing every Device on each poll costs the API server
		}
		n, err := connected()
		return n >= p.opts.Devices, err
	}, "the devices to connect")
	if opened {
		if cerr := closePairing(ctx, c); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// RunFleet starts a simulated fleet of n devices on a platform started
// without one, enrolling them through the pairing window, and returns once
// all are connected.
func (p *Platform) RunFleet(ctx context.Context, n int) error {
	p.mu.Lock()
	running := p.fleet != nil
	p.mu.Unlock()
	if running {
		return errors.New("platform: a fleet runs already")
	}
	if n < 1 || n > maxDevices {
		return fmt.Errorf("platform: %d devices, want 1 to %d", n, maxDevices)
	}
	admin, err := client.New(p.admin, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	p.opts.Devices = n
	return p.startFleet(ctx, admin)
}

// openPairingIfNeeded opens the pairing window when a simulated device has
// not enrolled yet (a first start), and reports whether it did.
func (p *Platform) openPairingIfNeeded(ctx context.Context, c client.Client) (bool, error) {
	var list wasmbedv1.DeviceList
	if err := c.List(ctx, &list); err != nil {
		return false, err
	}
	if len(list.Items) >= p.opts.Devices {
		return false, nil
	}
	// Open for as long as the fleet may take to enroll (it is closed once
	// every device is connected).
	w, err := pairing.Open(time.Now(), min(fleetWait(p.opts.Devices, p.opts.StartRate), pairing.MaxDuration), "wasmbed up", nil)
	if err != nil {
		return false, err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: wasmbedv1.DefaultSystemNamespace, Name: wasmbedv1.PairingConfigMap}}
	err = c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	switch {
	case apierrors.IsNotFound(err):
		cm.Data = w.Data()
		err = c.Create(ctx, cm)
	case err == nil:
		cm.Data = w.Data()
		err = c.Update(ctx, cm)
	}
	if err != nil {
		return false, fmt.Errorf("platform: open the pairing window: %w", err)
	}
	return true, nil
}

// closePairing closes the pairing window.
func closePairing(ctx context.Context, c client.Client) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: wasmbedv1.DefaultSystemNamespace, Name: wasmbedv1.PairingConfigMap}}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
		return client.IgnoreNotFound(err)
	}
	cm.Data = pairing.Window{}.Data()
	return c.Update(ctx, cm)
}

// deploySample deploys blinky to every device (once: a second start finds it)
// and waits until it runs everywhere.
func (p *Platform) deploySample(ctx context.Context, c client.Client) error {
	app := &wasmbedv1.Application{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: SampleApplication},
		Spec: wasmbedv1.ApplicationSpec{
			Name: SampleApplication, Version: "1.0", WasmBinary: apps.MustLoad(apps.Blinky),
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: wasmbedv1.LabelDeviceType, Operator: metav1.LabelSelectorOpExists},
			}},
		},
	}
	if err := c.Create(ctx, app); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("platform: sample application: %w", err)
	}
	return poll(ctx, 5*time.Minute, func() (bool, error) {
		got := &wasmbedv1.Application{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(app), got); err != nil {
			return false, err
		}
		return got.Status.Phase == wasmbedv1.ApplicationPhaseRunning && got.Status.RunningCount >= int32(p.opts.Devices), nil //nolint:gosec // bounded
	}, "the sample application to run on every device")
}

// Endpoints returns where the platform serves.
func (p *Platform) Endpoints() Endpoints {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := Endpoints{Kubeconfig: p.cp.KubeconfigPath(), APIServer: p.admin.Host, AdminToken: p.token, DataDir: p.opts.DataDir}
	for _, g := range p.gateways {
		e.Gateways = append(e.Gateways, g.Endpoint)
	}
	return e
}

// Endpoints are the facts a user or a script needs to use the platform;
// Start writes them to endpoints.json in the data directory.
type Endpoints struct {
	// Kubeconfig is the admin kubeconfig's path.
	Kubeconfig string `json:"kubeconfig"`
	// APIServer is the Kubernetes API server's URL.
	APIServer string `json:"apiServer"`
	// Gateways are the gateway replicas' addresses.
	Gateways []Endpoint `json:"gateways"`
	// AdminToken is a bearer token of the HTTP API's admin role, valid a
	// day.
	AdminToken string `json:"adminToken"`
	// DataDir is the data directory.
	DataDir string `json:"dataDir"`
}

func (p *Platform) writeEndpoints() error {
	data, err := json.MarshalIndent(p.Endpoints(), "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.opts.DataDir, "endpoints.json"), append(data, '\n'), 0o600)
}

// AdminConfig returns the admin REST configuration.
func (p *Platform) AdminConfig() *rest.Config { return rest.CopyConfig(p.admin) }

// ControlPlane returns the embedded control plane.
func (p *Platform) ControlPlane() *controlplane.ControlPlane { return p.cp }

// Fleet returns the simulated fleet, or nil.
func (p *Platform) Fleet() *sim.Fleet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fleet
}

// Wait blocks until the platform stops: ctx of Start ended, or the control
// plane failed.
func (p *Platform) Wait() error {
	select {
	case <-p.ctx.Done():
		return nil
	case err := <-p.cp.Done():
		return fmt.Errorf("control plane stopped: %w", err)
	}
}

// Stop stops the fleet, the gateways (with their goodbyes), the controller
// and the control plane, in that order.
func (p *Platform) Stop() error {
	p.mu.Lock()
	fleetStop, fleetDone, gws := p.fleetStop, p.fleetDone, p.gateways
	p.fleetStop, p.gateways = nil, nil
	p.mu.Unlock()
	if fleetStop != nil {
		fleetStop()
		<-fleetDone
	}
	var errs []error
	for _, g := range gws {
		g.cancel()
		if err := <-g.done; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", g.Name, err))
		}
	}
	p.StopController()
	if p.cancel != nil {
		p.cancel()
	}
	if p.cp != nil {
		if err := p.cp.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// transient reports whether err may go away by itself: the object is not
// there yet, or the API server or a gateway was too busy to answer in time.
func transient(err error) bool {
	var ne net.Error
	return apierrors.IsNotFound(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) ||
		errors.As(err, &ne) && ne.Timeout()
}

// poll calls cond until it holds, fails, or timeout or ctx ends.
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error), what string) error {
	deadline := time.Now().Add(timeout)
	delay := 50 * time.Millisecond
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil && !transient(err) {
			return fmt.Errorf("platform: waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("platform: %s did not happen within %v: %w", what, timeout, err)
			}
			return fmt.Errorf("platform: %s did not happen within %v", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Second)
	}
}

// fleetWait bounds the wait for a fleet of n devices started at rate per
// second to enroll and connect: 5 minutes, plus the paced start, plus
// 150 ms per device (enrollment costs a handful of API writes per device).
func fleetWait(n int, rate float64) time.Duration {
	d := 5*time.Minute + time.Duration(n)*150*time.Millisecond
	if rate > 0 {
		d += time.Duration(float64(n) / rate * float64(time.Second))
	}
	return d
}
