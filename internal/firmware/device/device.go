package device

import (
	"context"
	cryptorand "crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/firmware/monitor"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/security"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// FirmwareVersion is reported at enrollment.
const FirmwareVersion = "wasmbed-sim/1"

// Config configures a [Device]. Zero fields take the documented defaults.
type Config struct {
	// Name labels the device in logs (the enrolled id is learnt later).
	Name string
	// Profile is the hardware profile name (esp32, hifive1); default esp32.
	Profile string
	// StateDir keeps the device's flash in StateDir/flash.bin. Empty means
	// in-memory flash (lost when the process exits, kept across simulated
	// reboots and power losses).
	StateDir string
	// Chip, when set, is the flash chip to use instead of StateDir; tests
	// use it to inspect or damage the flash.
	Chip flash.Chip
	// Gateways are the session endpoints (host:port), in failover order.
	// Required.
	Gateways []string
	// EnrollGateways are the enrollment endpoints; empty means Gateways.
	EnrollGateways []string
	// Root is the pinned trust anchor. Required.
	Root *x509.Certificate
	// GatewayCA and DeviceCA, when set, pin the intermediates that issue
	// gateway certificates and this device's certificates (see
	// client.Config).
	GatewayCA, DeviceCA *x509.Certificate
	// ServerName is the name in gateway certificates; empty means the
	// endpoint's host.
	ServerName string
	// Engine is the shared WebAssembly engine. Nil means applications
	// cannot start (installs fail with an internal reason).
	Engine *wasm.Engine
	// Codec is the shared device-side protocol codec; nil means the
	// client's default.
	Codec *protocol.Codec
	// Clock is the device clock; nil means the system clock.
	Clock hal.Clock
	// Rand is the device's source of simulated noise (backoff jitter, link
	// drops and latency); nil seeds one at random. Keys never come from it.
	Rand *rand.Rand
	// KeyRand is the entropy the device's identity and sealing keys are
	// generated from on first boot; nil means crypto/rand. A deterministic
	// reader makes the keys known to whoever knows the reader's seed, who
	// can then impersonate the device: only for tests and reproducible
	// simulations against test gateways.
	KeyRand io.Reader
	// Dial opens transport connections; nil means a net.Dialer.
	Dial link.DialFunc
	// Backoff between reconnection rounds; zero means link.DefaultBackoff.
	Backoff link.Backoff
	// Conditions of the simulated medium.
	Conditions link.Conditions
	// HeartbeatInterval and MetricsInterval: see client.Config.
	HeartbeatInterval, MetricsInterval time.Duration
	// PowerOffTime is how long a device stays off after a power loss;
	// default 1s.
	PowerOffTime time.Duration
	// PairingToken is sent at enrollment when set.
	PairingToken []byte
	// Logger receives device logs; nil discards them.
	Logger *slog.Logger
}

// Phase is the device's coarse state, as the simulator reports it.
type Phase uint32

// Phases.
const (
	// Off: not running (before Run, after it returned, or powered off).
	Off Phase = iota
	// Booting: mounting flash and starting the firmware.
	Booting
	// Connecting: waiting for a gateway.
	Connecting
	// Enrolling: enrollment in progress.
	Enrolling
	// Online: in a session with a gateway.
	Online
	// Revoked: the gateway revoked the device.
	Revoked
	// Failed: the last boot failed; the device retries.
	Failed
)

var phaseNames = [...]string{"off", "booting", "connecting", "enrolling", "online", "revoked", "failed"}

// String returns the phase name.
func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", uint32(p))
}

// Phases returns every phase, in order.
func Phases() []Phase {
	return []Phase{Off, Booting, Connecting, Enrolling, Online, Revoked, Failed}
}

// Status is a snapshot of a device.
type Status struct {
	Name     string
	Profile  string
	Phase    Phase
	DeviceID string
	// AppsInstalled and AppsRunning count applications.
	AppsInstalled, AppsRunning int
	// Boots counts boots, PowerLosses injected power losses.
	Boots, PowerLosses uint64
	// Link is the connectivity snapshot (zero when off).
	Link link.Stats
	// Client counters of the current boot.
	Client client.Stats
	// Errors counts failed boots, failed sessions and errors exchanged
	// with the gateway, across boots.
	Errors uint64
	// Installs counts application versions written to flash, across boots
	// (appmgr.Manager.Installs): a version delivered twice and installed
	// once counts once.
	Installs uint64
}

// Device is one simulated device: flash that survives power cycles, and
// the firmware booted from it.
type Device struct {
	cfg     Config
	prof    profile.Profile
	chip    *flash.Faulty
	closer  func() error
	clock   hal.Clock
	rand    *rand.Rand
	log     *slog.Logger
	randMu  sync.Mutex
	phaseNo atomic.Uint32

	mu      sync.Mutex
	fw      *Firmware
	cancel  context.CancelFunc
	lost    bool
	boots   uint64
	losses  uint64
	errs    uint64
	linkAcc link.Stats // link counters of previous boots
	cliAcc  client.Stats
	install uint64 // installs of previous boots
}

// New returns a device for cfg. It opens the flash but does not boot.
func New(cfg Config) (*Device, error) {
	if len(cfg.Gateways) == 0 {
		return nil, errors.New("device: at least one gateway endpoint is required")
	}
	if cfg.Root == nil {
		return nil, errors.New("device: gateway root certificate is required")
	}
	if cfg.Profile == "" {
		cfg.Profile = "esp32"
	}
	prof, err := profile.Lookup(cfg.Profile)
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = hal.SystemClock{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) //nolint:gosec // simulated noise (jitter, drops), never keys: see Config.Rand
	}
	if cfg.KeyRand == nil {
		cfg.KeyRand = cryptorand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PowerOffTime <= 0 {
		cfg.PowerOffTime = time.Second
	}
	d := &Device{cfg: cfg, prof: prof, clock: cfg.Clock, rand: cfg.Rand, closer: func() error { return nil }}
	d.log = cfg.Logger
	if cfg.Name != "" {
		d.log = d.log.With("device", cfg.Name)
	}
	chip := cfg.Chip
	if chip == nil {
		geo := flash.GeometryFor(storeBytes(prof))
		if cfg.StateDir == "" {
			mc, err := flash.NewMem(geo)
			if err != nil {
				return nil, fmt.Errorf("device: %w", err)
			}
			chip = mc
		} else {
			if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
				return nil, fmt.Errorf("device: state dir: %w", err)
			}
			fc, err := flash.OpenFile(filepath.Join(cfg.StateDir, "flash.bin"), geo)
			if err != nil {
				return nil, fmt.Errorf("device: %w", err)
			}
			chip, d.closer = fc, fc.Close
		}
	}
	if f, ok := chip.(*flash.Faulty); ok {
		d.chip = f
	} else {
		d.chip = flash.NewFaulty(chip)
	}
	return d, nil
}

// storeBytes sizes the firmware's flash partition: both slots of the
// application flash plus room for identity, records and compaction.
func storeBytes(p profile.Profile) int64 {
	n := int64(2*p.AppFlashBytes) + 256<<10          //nolint:gosec // board flash sizes, far below 2^63
	if fb := int64(p.FlashBytes); fb > 0 && n > fb { //nolint:gosec // board flash sizes, far below 2^63
		n = fb
	}
	return n
}

// Close releases the flash file, if any. Call it after Run returned.
func (d *Device) Close() error { return d.closer() }

// Flash returns the device's chip, through which tests can cut power at an
// exact write step (Faulty.FailAfter, Faulty.OnWrite).
func (d *Device) Flash() *flash.Faulty { return d.chip }

// Firmware returns the running firmware, or nil while the device is off.
func (d *Device) Firmware() *Firmware {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fw
}

// Run boots the device and keeps it running — through reboots, power
// losses and failed boots — until ctx ends; it then shuts the firmware
// down in order (the client says goodbye) and returns nil.
func (d *Device) Run(ctx context.Context) error {
	defer d.phaseNo.Store(uint32(Off))
	failures := 0
	for {
		if ctx.Err() != nil {
			return nil
		}
		runCtx, cancel := context.WithCancel(ctx)
		d.mu.Lock()
		d.cancel = cancel
		d.boots++
		d.mu.Unlock()
		d.phaseNo.Store(uint32(Booting))
		fw, err := d.boot(runCtx)
		if err == nil {
			failures = 0
			d.setFirmware(fw)
			if err := fw.run(runCtx); err != nil && !d.poweredOff() {
				d.countError()
				d.log.Warn("firmware stopped", "err", err)
			}
			d.setFirmware(nil)
			// runCtx has ended: the applications stop all the same.
			fw.halt(context.WithoutCancel(runCtx))
			d.accumulate(fw)
		} else if !d.poweredOff() {
			d.countError()
			failures++
			d.phaseNo.Store(uint32(Failed))
			d.log.Warn("boot failed", "err", err)
		}
		cancel()
		d.mu.Lock()
		d.cancel = nil // off: power losses have nothing to cut until the next boot
		d.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case d.takePowerLoss():
			d.phaseNo.Store(uint32(Off))
			if hal.Sleep(ctx, d.clock, d.cfg.PowerOffTime) != nil {
				return nil
			}
			d.chip.PowerOn()
		case failures > 0:
			if hal.Sleep(ctx, d.clock, d.backoff().Delay(failures, d.lockedRand())) != nil {
				return nil
			}
		}
	}
}

func (d *Device) backoff() link.Backoff {
	if d.cfg.Backoff == (link.Backoff{}) {
		return link.DefaultBackoff
	}
	return d.cfg.Backoff
}

func (d *Device) lockedRand() *rand.Rand {
	d.randMu.Lock()
	defer d.randMu.Unlock()
	return rand.New(rand.NewPCG(d.rand.Uint64(), d.rand.Uint64())) //nolint:gosec // simulated noise (jitter, drops), never keys: see Config.Rand
}

func (d *Device) setFirmware(fw *Firmware) {
	d.mu.Lock()
	d.fw = fw
	d.mu.Unlock()
}

func (d *Device) poweredOff() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost
}

func (d *Device) takePowerLoss() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	lost := d.lost
	d.lost = false
	return lost
}

func (d *Device) countError() {
	d.mu.Lock()
	d.errs++
	d.mu.Unlock()
}

func (d *Device) accumulate(fw *Firmware) {
	ls := fw.linkStats()
	cs := fw.Client.Status().Stats
	d.mu.Lock()
	defer d.mu.Unlock()
	d.linkAcc = addLink(d.linkAcc, ls)
	d.cliAcc = addClient(d.cliAcc, cs)
	d.errs += cs.SessionErrors + cs.ErrorsReceived + cs.ErrorsSent
	d.install += fw.Applications.Installs()
}

// PowerLoss cuts power now: flash writes in flight are torn, the link
// drops without a goodbye, and the device boots again from flash after
// Config.PowerOffTime.
//
// It does nothing while the device is not running (before Run, while off).
func (d *Device) PowerLoss() {
	d.mu.Lock()
	if d.cancel == nil || d.lost {
		d.mu.Unlock()
		return
	}
	d.chip.Cut()
	d.lost = true
	d.losses++
	fw, cancel := d.fw, d.cancel
	d.mu.Unlock()
	if fw != nil {
		fw.WiFi.Flap(d.cfg.PowerOffTime)
		if fw.enrollLink != nil {
			fw.enrollLink.Flap(d.cfg.PowerOffTime)
		}
	}
	cancel()
}

// Reboot restarts the firmware in order: the client says goodbye, the
// applications stop, and the device boots again at once.
func (d *Device) Reboot() {
	d.mu.Lock()
	cancel := d.cancel
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// FlapLink takes the link down for down (fault injection).
func (d *Device) FlapLink(down time.Duration) {
	if fw := d.Firmware(); fw != nil {
		fw.WiFi.Flap(down)
	}
}

// Status returns a snapshot of the device.
func (d *Device) Status() Status {
	d.mu.Lock()
	st := Status{Name: d.cfg.Name, Profile: d.prof.Name, Boots: d.boots, PowerLosses: d.losses,
		Errors: d.errs, Link: d.linkAcc, Client: d.cliAcc, Installs: d.install}
	fw := d.fw
	d.mu.Unlock()
	st.Phase = Phase(d.phaseNo.Load())
	if fw == nil {
		return st
	}
	cs := fw.Client.Status()
	st.DeviceID = cs.DeviceID
	st.Link = addLink(st.Link, fw.linkStats())
	st.Client = addClient(st.Client, cs.Stats)
	st.Errors += cs.SessionErrors + cs.ErrorsReceived + cs.ErrorsSent
	st.Installs += fw.Applications.Installs()
	switch cs.Phase {
	case client.Online:
		st.Phase = Online
	case client.Enrolling:
		st.Phase = Enrolling
	case client.Revoked:
		st.Phase = Revoked
	case client.Connecting:
		st.Phase = Connecting
	}
	for _, a := range fw.Applications.Statuses(nil) {
		st.AppsInstalled++
		if a.State == protocol.StateRunning {
			st.AppsRunning++
		}
	}
	return st
}

func addLink(a, b link.Stats) link.Stats {
	return link.Stats{Connects: a.Connects + b.Connects, Reconnects: a.Reconnects + b.Reconnects,
		Failures: a.Failures + b.Failures, Drops: a.Drops + b.Drops, Flaps: a.Flaps + b.Flaps}
}

func addClient(a, b client.Stats) client.Stats {
	return client.Stats{
		Sessions: a.Sessions + b.Sessions, Enrollments: a.Enrollments + b.Enrollments,
		Heartbeats: a.Heartbeats + b.Heartbeats, HeartbeatAcks: a.HeartbeatAcks + b.HeartbeatAcks,
		Commands: a.Commands + b.Commands, Reports: a.Reports + b.Reports,
		ErrorsSent: a.ErrorsSent + b.ErrorsSent, ErrorsReceived: a.ErrorsReceived + b.ErrorsReceived,
		SessionErrors: a.SessionErrors + b.SessionErrors, EnrollmentsRejected: a.EnrollmentsRejected + b.EnrollmentsRejected,
	}
}

// Firmware is one boot of a device: the components of the firmware
// architecture wired together. It lives in the device's RAM, so a power
// loss discards it and the next boot rebuilds it from flash.
type Firmware struct {
	// Runtime is the shared WebAssembly engine (nil: no applications).
	Runtime *wasm.Engine
	// Security holds the device identity and verifies artifacts.
	Security *security.Manager
	// Applications installs and runs applications from flash.
	Applications *appmgr.Manager
	// WiFi is the connectivity manager (a wired link on boards without a
	// radio).
	WiFi *link.Manager
	// Monitoring fills heartbeats and metrics.
	Monitoring *monitor.Monitor
	// Client is the gateway client.
	Client *client.Client

	// Store is the mounted flash store.
	Store *flash.Store

	enrollLink *link.Manager
	board      *hal.Sim
	runner     *runner
	clientRef  atomic.Pointer[client.Client]
}

// boot mounts the flash and builds the firmware.
func (d *Device) boot(ctx context.Context) (*Firmware, error) {
	store, err := flash.Mount(d.chip, flash.Options{Logger: d.log})
	if err != nil {
		return nil, fmt.Errorf("mount flash: %w", err)
	}
	r := d.lockedRand()
	sec, err := security.Open(security.Config{
		Store: store, Rand: d.cfg.KeyRand, Clock: d.clock.Now,
		DeviceType: d.prof.Name, Capabilities: d.prof.Capabilities, FirmwareVersion: FirmwareVersion,
		Logger: d.log,
	})
	if err != nil {
		return nil, err
	}
	fw := &Firmware{Runtime: d.cfg.Engine, Security: sec, Store: store}
	fw.board = hal.NewSim(d.clock, d.prof.SimConfig())
	// Applications read their configuration from the application manager
	// (appmgr.RunSpec.Config), also while they initialise.
	run := newRunner(d.cfg.Engine, d.prof.ModuleBounds, d.clock, wasm.Host{Board: d.prof.Board(fw.board), Clock: d.clock, Publisher: discard{},
		Logger: d.log}, d.log)
	fw.Monitoring = newMonitor(d.clock, d.prof, run, d.cfg.MetricsInterval)
	fw.runner = run
	run.ticked = fw.afterTick
	// The board profile admits applications (see admission); the flash
	// store refuses what does not fit in it.
	mgr, err := appmgr.Open(ctx, appmgr.Config{Store: store, Runner: run, Observer: fw.observe, Logger: d.log})
	if err != nil {
		return nil, err
	}
	fw.Applications = mgr

	medium := link.WiFi
	if !d.prof.WiFi {
		medium = link.Wired
	}
	lcfg := link.Config{Medium: medium, Endpoints: d.cfg.Gateways, Dial: d.cfg.Dial, Conditions: d.cfg.Conditions,
		Backoff: d.cfg.Backoff, Clock: d.clock, Rand: r, Logger: d.log}
	if fw.WiFi, err = link.New(lcfg); err != nil {
		mgr.Shutdown(ctx)
		return nil, err
	}
	// The enrollment link serves first boot and, later, re-enrollment of a
	// device whose certificate expired before it could be renewed.
	if len(d.cfg.EnrollGateways) > 0 {
		lcfg.Endpoints = d.cfg.EnrollGateways
		if fw.enrollLink, err = link.New(lcfg); err != nil {
			mgr.Shutdown(ctx)
			return nil, err
		}
	}
	fw.Client, err = client.New(client.Config{
		Link: fw.WiFi, EnrollLink: fw.enrollLink, Identity: sec,
		Apps:      &appmgr.Commands{Apps: mgr, Verifier: admitter{sec: sec, prof: d.prof, mgr: mgr, run: run}},
		Telemetry: fw.Monitoring, Root: d.cfg.Root, GatewayCA: d.cfg.GatewayCA, DeviceCA: d.cfg.DeviceCA,
		ServerName: d.cfg.ServerName, Codec: d.cfg.Codec,
		HeartbeatInterval: d.cfg.HeartbeatInterval, MetricsInterval: d.cfg.MetricsInterval,
		PairingToken: d.cfg.PairingToken, Clock: d.clock, Logger: d.log,
	})
	if err != nil {
		mgr.Shutdown(ctx)
		return nil, err
	}
	fw.clientRef.Store(fw.Client)
	return fw, nil
}

// linkStats sums the counters of the session and enrollment links.
func (fw *Firmware) linkStats() link.Stats {
	s := fw.WiFi.Status().Stats
	if fw.enrollLink != nil {
		s = addLink(s, fw.enrollLink.Status().Stats)
	}
	return s
}

// observe forwards application changes nobody asked for to the gateway: a
// trap or a limit hit, a rollback at boot, and the previous version
// running again after a failed update (the command's reply reports the
// failed version). The client follows each with a metrics report.
func (fw *Firmware) observe(ev appmgr.Event) {
	if ev.Kind == appmgr.EventRemoved {
		fw.runner.forget(ev.Status.Name) // no counters of an ended instance left to report
	}
	switch ev.Kind {
	case appmgr.EventExited, appmgr.EventRecovered, appmgr.EventFellBack:
		if c := fw.clientRef.Load(); c != nil {
			c.Notify(ev.Status.AppStatus())
		}
	}
}

// afterTick asks the monitor whether the metrics changed beyond its
// thresholds since the last report (an application's memory grew, free
// memory fell) and, if so, has the client report before the next regular
// report.
func (fw *Firmware) afterTick() {
	if c := fw.clientRef.Load(); c != nil && fw.Monitoring.Due() == monitor.TriggerChange {
		c.ReportMetrics()
	}
}

// run serves the gateway until ctx ends.
func (fw *Firmware) run(ctx context.Context) error {
	err := fw.Client.Run(ctx)
	if errors.Is(err, client.ErrRevoked) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// halt stops the applications. After a power loss nothing is written:
// the flash is already unpowered.
func (fw *Firmware) halt(ctx context.Context) {
	fw.Applications.Shutdown(ctx)
}
