// Package bench measures the whole platform with a simulated fleet: the
// embedded control plane and the controller in this process, the gateways
// in child processes of their own (so that their memory and CPU are theirs
// alone), and N simulated devices enrolled through the real pairing flow.
//
// It reports what an operator sizing a fleet asks: how long enrolling and
// connecting N devices takes, how long a rollout takes to reach each device
// (p50, p99), what a session costs a gateway in memory (resident and
// private, from /proc/PID/smaps_rollup), how many API-server writes the
// platform makes per device per hour at steady state, and the gateways' CPU
// per 1,000 devices.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/wasmbed/wasmbed/internal/platform"
	"github.com/wasmbed/wasmbed/internal/procmem"
)

// Options configure Run. Zero values take the documented defaults.
type Options struct {
	// Devices is the size of the fleet; default 1,000.
	Devices int
	// Gateways is the number of gateway replicas; default 1.
	Gateways int
	// Mix is the fleet's board mix; default both boards alike.
	Mix string
	// DataDir is the platform's data directory; a temporary one, removed
	// afterwards, when empty.
	DataDir string
	// GatewayExec is the wasmbed binary the gateways run as; this
	// executable when empty.
	GatewayExec string
	// Steady is the steady-state window over which writes and CPU are
	// counted; default 2 minutes.
	Steady time.Duration
	// LastSeenPeriod is the gateways' --last-seen-period; default 1 hour,
	// the product's default. Shorter periods make the lastSeen writes
	// visible in a short window; the report scales them back to 1 hour.
	LastSeenPeriod time.Duration
	// HeartbeatInterval of gateways and devices; default 30s.
	HeartbeatInterval time.Duration
	// StartRate paces the fleet's start in devices per second; zero starts
	// every device at once.
	StartRate float64
	// MaxUpdating is the rollout's maxUpdating (a count or a percentage of
	// the targets); nil takes the product's default, 25%.
	MaxUpdating *intstr.IntOrString
	// RolloutTimeout bounds the wait for the rollout; default 2 minutes
	// plus 60 ms per device.
	RolloutTimeout time.Duration
	// Progress, when set, is told what the bench does.
	Progress func(string)
	// Logger receives the components' logs; nil discards them.
	Logger *slog.Logger
}

// maxDevices is the largest fleet: the devices' connections live in this
// process, which may hold 20,000 file descriptors, with the control plane's.
const maxDevices = 15000

func (o *Options) setDefaults() error {
	if o.Devices == 0 {
		o.Devices = 1000
	}
	if o.Devices < 1 || o.Devices > maxDevices {
		return fmt.Errorf("bench: %d devices, want 1 to %d", o.Devices, maxDevices)
	}
	if o.Gateways == 0 {
		o.Gateways = 1
	}
	if o.Gateways < 1 || o.Gateways > 16 {
		return fmt.Errorf("bench: %d gateways, want 1 to 16", o.Gateways)
	}
	if o.Steady == 0 {
		o.Steady = 2 * time.Minute
	}
	if o.Steady < 10*time.Second || o.Steady > 24*time.Hour {
		return fmt.Errorf("bench: steady-state window %v, want 10s to 24h", o.Steady)
	}
	if o.StartRate < 0 || o.StartRate > 100000 || math.IsNaN(o.StartRate) {
		return fmt.Errorf("bench: start rate %v devices/s, want 0 (all at once) to 100000", o.StartRate)
	}
	if o.LastSeenPeriod == 0 {
		o.LastSeenPeriod = time.Hour
	}
	if o.LastSeenPeriod < time.Second {
		return fmt.Errorf("bench: last-seen period %v, want at least 1s", o.LastSeenPeriod)
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.RolloutTimeout == 0 {
		o.RolloutTimeout = 2*time.Minute + time.Duration(o.Devices)*60*time.Millisecond
	}
	if o.GatewayExec == "" {
		// The name this process was started by, found as the shell found
		// it, keeps working where the binary is a link to a multi-call
		// executable; the executable itself otherwise.
		exe, err := exec.LookPath(os.Args[0])
		if err != nil {
			if exe, err = os.Executable(); err != nil {
				return fmt.Errorf("bench: the gateway binary: %w", err)
			}
		}
		o.GatewayExec = exe
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return nil
}

// Report is what Run measured.
type Report struct {
	// Devices and Gateways are the fleet's and the platform's size.
	Devices  int `json:"devices"`
	Gateways int `json:"gateways"`
	// PlatformStart is the time to start the control plane, the controller
	// and the gateways.
	PlatformStart time.Duration `json:"platformStartNs"`
	// EnrollConnect is the time from starting the fleet to every device
	// enrolled (certificate signed, Device created) and connected.
	EnrollConnect time.Duration `json:"enrollConnectNs"`
	// Rollout is the time from creating an Application that targets every
	// device to each device's DeviceApplication reaching Running.
	Rollout Percentiles `json:"rollout"`
	// Strategy is the rollout's maxUpdating.
	Strategy string `json:"maxUpdating"`
	// GatewayIdle is the gateways' memory before the fleet connected, and
	// GatewayLoaded with every session open and idle.
	GatewayIdle   procmem.Usage `json:"gatewayIdle"`
	GatewayLoaded procmem.Usage `json:"gatewayLoaded"`
	// SessionResident and SessionPrivate are the gateways' resident and
	// private memory per session, in bytes.
	SessionResident float64 `json:"sessionResidentBytes"`
	SessionPrivate  float64 `json:"sessionPrivateBytes"`
	// Steady is the steady-state window measured.
	Steady time.Duration `json:"steadyNs"`
	// LastSeenPeriod is the gateways' --last-seen-period during it.
	LastSeenPeriod time.Duration `json:"lastSeenPeriodNs"`
	// Writes are the API server's write requests during the window, by
	// resource.
	Writes map[string]float64 `json:"writes"`
	// WritesPerDeviceHour is every write of the window but the Leases' per
	// device, scaled to an hour; ProjectedPerDeviceHour scales the Device
	// status writes (the lastSeen refreshes) to the product's 1-hour period
	// instead. LeaseWritesPerHour are the Lease renewals of the gateways,
	// the controller and the API server, which do not grow with the fleet.
	WritesPerDeviceHour    float64 `json:"writesPerDeviceHour"`
	ProjectedPerDeviceHour float64 `json:"projectedWritesPerDeviceHour"`
	LeaseWritesPerHour     float64 `json:"leaseWritesPerHour"`
	// GatewayCPU is the gateways' CPU time during the window, and
	// CPUPer1000 the share of a core they used per 1,000 devices.
	GatewayCPU time.Duration `json:"gatewayCpuNs"`
	CPUPer1000 float64       `json:"gatewayCoresPer1000Devices"`
	// Heartbeats is the rate of heartbeats the gateways answered.
	Heartbeats float64 `json:"heartbeatsPerSecond"`
}

// Percentiles of a duration over devices.
type Percentiles struct {
	P50   time.Duration `json:"p50Ns"`
	P99   time.Duration `json:"p99Ns"`
	Max   time.Duration `json:"maxNs"`
	Count int           `json:"count"`
}

// percentiles of ds (sorted in place).
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(ds))+0.5) - 1
		return ds[min(max(i, 0), len(ds)-1)]
	}
	return Percentiles{P50: at(0.50), P99: at(0.99), Max: ds[len(ds)-1], Count: len(ds)}
}

// Run starts the platform, runs the fleet, measures, and stops everything.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	dir := opts.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "wasmbed-bench-")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	r := &Report{Devices: opts.Devices, Gateways: opts.Gateways, Steady: opts.Steady, LastSeenPeriod: opts.LastSeenPeriod}

	opts.Progress("starting the control plane, the controller and the gateways")
	begin := time.Now()
	p, err := platform.Start(ctx, platform.Options{
		DataDir: dir, Gateways: opts.Gateways, Mix: opts.Mix,
		GatewayExec: opts.GatewayExec, GatewayArgs: []string{"--last-seen-period", opts.LastSeenPeriod.String()},
		HeartbeatInterval: opts.HeartbeatInterval, Logger: opts.Logger,
		SourceAddrs: sourceAddrs(opts.Devices), MemoryFlash: true, StartRate: opts.StartRate,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer func() { _ = p.Stop() }()
	r.PlatformStart = time.Since(begin)
	m, err := newMeter(p)
	if err != nil {
		return nil, err
	}

	// Let the gateways settle before taking their idle memory.
	if err := sleep(ctx, 3*time.Second); err != nil {
		return nil, err
	}
	if r.GatewayIdle, err = m.gatewayMemory(); err != nil {
		return nil, err
	}

	opts.Progress(fmt.Sprintf("enrolling and connecting %d devices", opts.Devices))
	begin = time.Now()
	if err := p.RunFleet(ctx, opts.Devices); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r.EnrollConnect = time.Since(begin)

	// Idle sessions: give the gateways a few seconds to park them.
	if err := sleep(ctx, 10*time.Second); err != nil {
		return nil, err
	}
	if r.GatewayLoaded, err = m.gatewayMemory(); err != nil {
		return nil, err
	}
	r.SessionResident, r.SessionPrivate = r.GatewayLoaded.Sub(r.GatewayIdle).Per(opts.Devices)

	opts.Progress("rolling an application out to every device")
	if r.Rollout, r.Strategy, err = m.rollout(ctx, opts.Devices, opts.MaxUpdating, opts.RolloutTimeout); err != nil {
		return nil, err
	}

	// The rollout's last status writes (the Application's coalesced
	// status among them) settle before the steady state is measured.
	if err := sleep(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	opts.Progress(fmt.Sprintf("measuring the steady state for %v", opts.Steady))
	if err := m.steady(ctx, r, opts.Steady); err != nil {
		return nil, err
	}
	opts.Progress("stopping")
	return r, nil
}

// devicesPerSource is how many devices dial from one loopback address: the
// gateway admits at most 64 pending connections per source address, and a
// fleet behind one address would spend its time in reconnection backoff.
const devicesPerSource = 40

// sourceAddrs returns loopback addresses for n devices, from 127.0.1.1 on.
func sourceAddrs(n int) []string {
	k := min((n+devicesPerSource-1)/devicesPerSource, 250*250)
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
	}
	return out
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errNoGateway is returned when a gateway runs in this process: its memory
// and CPU cannot be told apart from the control plane's.
var errNoGateway = errors.New("bench: gateways must run as child processes")
