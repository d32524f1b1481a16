// Package sim runs fleets of simulated Wasmbed devices in one process.
//
// A [Fleet] builds N devices (package device) from [Options]: a mix of
// hardware profiles, one shared WebAssembly engine (so each module is
// compiled once for the whole fleet), per-device flash in memory or under a
// data directory, per-device random sources, and optional clock skew.
// [Fleet.Run] starts them at a bounded rate, injects faults — power losses
// and link flaps at a rate per device-hour — and prints a summary of the
// fleet's states periodically and once more when it stops. Devices keep
// retrying, with backoff, while no gateway answers.
//
// Device keys come from crypto/rand. [Options.Seed] makes a fleet
// reproducible, keys included: whoever knows the seed can recreate every
// device's key and impersonate it, so New logs a warning when a seed is
// set, and a seeded fleet is for test gateways only.
//
// Each device costs one goroutine (its boot loop, which is also its
// gateway session) and, when connected, one socket; with a data directory
// it also keeps its flash file open.
package sim

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
)

// Share is one entry of a profile mix: Weight parts of Profile.
type Share struct {
	Profile string
	Weight  int
}

// ParseMix parses a profile mix such as "esp32=80,hifive1=20".
func ParseMix(s string) ([]Share, error) {
	var mix []Share
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("profile mix %q: want name=weight", part)
		}
		if _, err := profile.Lookup(name); err != nil {
			return nil, fmt.Errorf("profile mix: %w", err)
		}
		w, err := strconv.Atoi(weight)
		if err != nil || w < 0 {
			return nil, fmt.Errorf("profile mix %q: weight must be a non-negative integer", part)
		}
		mix = append(mix, Share{Profile: name, Weight: w})
	}
	total := 0
	for _, sh := range mix {
		total += sh.Weight
	}
	if total == 0 {
		return nil, fmt.Errorf("profile mix %q: weights sum to zero", s)
	}
	return mix, nil
}

// assign returns the profile of device i of n so that the fleet follows the
// mix exactly (largest remainder), interleaved.
func assign(mix []Share, n int) []string {
	total := 0
	for _, sh := range mix {
		total += sh.Weight
	}
	out := make([]string, 0, n)
	counts := make([]int, len(mix))
	for i := range n {
		// Pick the share furthest below its target after i+1 devices.
		best, bestGap := 0, -1.0
		for j, sh := range mix {
			gap := float64(sh.Weight)*float64(i+1)/float64(total) - float64(counts[j])
			if gap > bestGap {
				best, bestGap = j, gap
			}
		}
		counts[best]++
		out = append(out, mix[best].Profile)
	}
	return out
}

// Options configure a [Fleet]. Zero fields take the documented defaults.
type Options struct {
	// Devices is the fleet size. Required.
	Devices int
	// Gateways are the session endpoints; EnrollGateways the enrollment
	// endpoints (default: Gateways).
	Gateways, EnrollGateways []string
	// Root is the gateways' trust anchor. Required.
	Root *x509.Certificate
	// GatewayCA and DeviceCA, when set, pin the intermediates that issue
	// gateway and device certificates (see device.Config).
	GatewayCA, DeviceCA *x509.Certificate
	// ServerName is the name in gateway certificates (default: endpoint host).
	ServerName string
	// DataDir keeps each device's flash in DataDir/<name>/; empty means
	// in-memory flash.
	DataDir string
	// Mix is the profile mix (default: all esp32).
	Mix []Share
	// Seed, when non-zero, makes the fleet reproducible: every device's
	// noise (backoff jitter, medium drops, clock skew), the fault draws and
	// every device's keys derive from it. Anyone who knows it can recreate
	// the keys and impersonate the devices: use it against test gateways
	// only. Zero (the default) draws keys from crypto/rand and the rest
	// from a random seed.
	Seed uint64
	// StartRate bounds devices started per second (staggered start); zero
	// starts them all at once.
	StartRate float64
	// PowerLossRate and FlapRate are fault rates per device per hour.
	PowerLossRate, FlapRate float64
	// FlapDuration is how long a flap keeps the link down (default 5s).
	FlapDuration time.Duration
	// PowerOffTime is how long a device stays off after a power loss
	// (default 1s).
	PowerOffTime time.Duration
	// ClockSkew gives each device a clock offset uniform in ±ClockSkew.
	ClockSkew time.Duration
	// HeartbeatInterval and MetricsInterval of every device (client
	// defaults when zero).
	HeartbeatInterval, MetricsInterval time.Duration
	// Backoff between reconnection rounds (link default when zero).
	Backoff link.Backoff
	// Conditions of every device's simulated medium.
	Conditions link.Conditions
	// SourceAddrs are local addresses devices dial from, round robin, to
	// spread connections over more source ports (e.g. 127.0.0.2, ...).
	SourceAddrs []string
	// Engine is the shared WebAssembly engine; nil creates one.
	Engine *wasm.Engine
	// SummaryInterval between summary lines on Out (default 10s; negative
	// disables the periodic lines, the final one is always printed).
	SummaryInterval time.Duration
	// Out receives summary lines; nil discards them.
	Out io.Writer
	// Clock is the fleet's clock; nil means the system clock.
	Clock hal.Clock
	// Logger receives device logs; nil discards them.
	Logger *slog.Logger
}

// Fleet is a set of simulated devices run together.
type Fleet struct {
	opts    Options
	devices []*device.Device
	ownEng  bool
	eng     *wasm.Engine
	started atomic.Int64
	begin   time.Time
	rand    *rand.Rand

	mu    sync.Mutex
	flaps uint64
}

// New builds the fleet's devices; it opens their flash but starts nothing.
func New(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Devices <= 0 {
		return nil, errors.New("sim: the fleet needs at least one device")
	}
	if len(opts.Gateways) == 0 {
		return nil, errors.New("sim: at least one gateway endpoint is required")
	}
	if opts.Root == nil {
		return nil, errors.New("sim: gateway root certificate is required")
	}
	if len(opts.Mix) == 0 {
		opts.Mix = []Share{{Profile: "esp32", Weight: 1}}
	}
	seeded := opts.Seed != 0
	if !seeded {
		opts.Seed = rand.Uint64() //nolint:gosec // a seed for simulated noise; keys come from crypto/rand unless a seed is given
	}
	if opts.FlapDuration <= 0 {
		opts.FlapDuration = 5 * time.Second
	}
	if opts.SummaryInterval == 0 {
		opts.SummaryInterval = 10 * time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Clock == nil {
		opts.Clock = hal.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if seeded {
		opts.Logger.Warn(SeedWarning, "seed", opts.Seed)
	}
	if opts.DataDir != "" {
		if err := checkFileLimit(opts.Devices); err != nil {
			return nil, err
		}
	}
	f := &Fleet{opts: opts, eng: opts.Engine, rand: rand.New(rand.NewPCG(opts.Seed, 0))} //nolint:gosec // simulated noise, reproducible from the seed
	if f.eng == nil {
		eng, err := wasm.NewEngine(ctx, wasm.Config{Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("sim: %w", err)
		}
		f.eng, f.ownEng = eng, true
	}
	dialers, err := dialers(opts.SourceAddrs)
	if err != nil {
		return nil, err
	}
	profiles := assign(opts.Mix, opts.Devices)
	width := len(strconv.Itoa(opts.Devices))
	f.devices = make([]*device.Device, 0, opts.Devices)
	for i := range opts.Devices {
		name := fmt.Sprintf("sim-%0*d", width, i+1)
		r := rand.New(rand.NewPCG(opts.Seed, uint64(i+1))) //nolint:gosec // simulated noise, reproducible from the seed
		clk := opts.Clock
		if opts.ClockSkew > 0 {
			clk = device.Skewed(clk, time.Duration(r.Int64N(2*int64(opts.ClockSkew)+1))-opts.ClockSkew)
		}
		cfg := device.Config{
			Name: name, Profile: profiles[i], Gateways: opts.Gateways, EnrollGateways: opts.EnrollGateways,
			Root: opts.Root, GatewayCA: opts.GatewayCA, DeviceCA: opts.DeviceCA, ServerName: opts.ServerName, Engine: f.eng, Clock: clk, Rand: r,
			Backoff: opts.Backoff, Conditions: opts.Conditions,
			HeartbeatInterval: opts.HeartbeatInterval, MetricsInterval: opts.MetricsInterval,
			PowerOffTime: opts.PowerOffTime, Logger: opts.Logger,
		}
		if seeded {
			cfg.KeyRand = keyRand(opts.Seed, i)
		}
		if len(dialers) > 0 {
			cfg.Dial = dialers[i%len(dialers)]
		}
		if opts.DataDir != "" {
			cfg.StateDir = filepath.Join(opts.DataDir, name)
		}
		d, err := device.New(cfg)
		if err != nil {
			f.close(ctx)
			return nil, fmt.Errorf("sim: %s: %w", name, err)
		}
		f.devices = append(f.devices, d)
	}
	return f, nil
}

// SeedWarning is the message logged when a fleet's keys derive from a seed.
const SeedWarning = "device keys derive from the seed: anyone who knows it can impersonate these devices; use a seed only against test gateways"

// keyRand is device i's key entropy in a seeded fleet: a ChaCha8 stream
// keyed by the seed, the device index and a label that keeps it apart from
// the noise streams.
func keyRand(seed uint64, i int) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i)) //nolint:gosec // a loop index, never negative
	copy(key[16:], "wasmbed sim keys")
	return rand.NewChaCha8(key)
}

// dialers returns one dial function per source address.
func dialers(addrs []string) ([]link.DialFunc, error) {
	out := make([]link.DialFunc, 0, len(addrs))
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil {
			return nil, fmt.Errorf("sim: source address %q is not an IP address", a)
		}
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
		out = append(out, d.DialContext)
	}
	return out, nil
}

// Devices returns the fleet's devices.
func (f *Fleet) Devices() []*device.Device { return f.devices }

// Engine returns the fleet's shared WebAssembly engine.
func (f *Fleet) Engine() *wasm.Engine { return f.eng }

// Started returns how many devices have been started.
func (f *Fleet) Started() int { return int(f.started.Load()) }

// close closes the devices and, if the fleet made it, the engine.
func (f *Fleet) close(ctx context.Context) {
	for _, d := range f.devices {
		_ = d.Close()
	}
	if f.ownEng {
		_ = f.eng.Close(ctx)
	}
}

// Run starts the devices at the configured rate, injects faults, prints
// summaries, and returns once ctx ends and every device stopped (each says
// goodbye to its gateway). It returns, and prints, the summary taken when
// ctx ended.
func (f *Fleet) Run(ctx context.Context) Summary {
	// ctx has ended by the time the fleet is closed.
	defer f.close(context.WithoutCancel(ctx))
	f.mu.Lock()
	f.begin = f.opts.Clock.Now()
	f.mu.Unlock()
	var wg sync.WaitGroup
	// Devices run on their own context so that the final summary sees
	// them as they were when ctx ended, before they shut down.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()

	wg.Add(1)
	go func() {
		defer wg.Done()
		f.startAll(runCtx, &wg)
	}()
	if f.opts.PowerLossRate > 0 || f.opts.FlapRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.injectFaults(runCtx)
		}()
	}
	if f.opts.SummaryInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for hal.Sleep(runCtx, f.opts.Clock, f.opts.SummaryInterval) == nil {
				fmt.Fprintln(f.opts.Out, f.Summary())
			}
		}()
	}
	<-ctx.Done()
	s := f.Summary()
	s.Final = true
	cancel()
	wg.Wait()
	fmt.Fprintln(f.opts.Out, s)
	return s
}

// startAll starts the devices, pacing them at StartRate.
func (f *Fleet) startAll(ctx context.Context, wg *sync.WaitGroup) {
	var interval time.Duration
	if f.opts.StartRate > 0 {
		interval = time.Duration(float64(time.Second) / f.opts.StartRate)
	}
	next := f.opts.Clock.Now()
	for _, d := range f.devices {
		if interval > 0 {
			if wait := next.Sub(f.opts.Clock.Now()); wait > 0 {
				if hal.Sleep(ctx, f.opts.Clock, wait) != nil {
					return
				}
			}
			next = next.Add(interval)
		}
		if ctx.Err() != nil {
			return
		}
		wg.Add(1)
		f.started.Add(1)
		go func() {
			defer wg.Done()
			_ = d.Run(ctx)
		}()
	}
}

// faultTick is the period at which faults are drawn.
const faultTick = time.Second

// injectFaults draws, every faultTick, which devices lose power or see
// their link flap, each with probability rate·tick/hour.
func (f *Fleet) injectFaults(ctx context.Context) {
	pLoss := f.opts.PowerLossRate * faultTick.Hours()
	pFlap := f.opts.FlapRate * faultTick.Hours()
	for hal.Sleep(ctx, f.opts.Clock, faultTick) == nil {
		n := f.Started()
		for _, d := range f.devices[:n] {
			if pLoss > 0 && f.rand.Float64() < pLoss {
				d.PowerLoss()
			}
			if pFlap > 0 && f.rand.Float64() < pFlap {
				d.FlapLink(f.opts.FlapDuration)
				f.mu.Lock()
				f.flaps++
				f.mu.Unlock()
			}
		}
	}
}

// Summary is a snapshot of the fleet.
type Summary struct {
	// Elapsed since Run started.
	Elapsed time.Duration
	// Devices in the fleet, Started so far.
	Devices, Started int
	// Phases counts devices per phase.
	Phases map[device.Phase]int
	// Enrolled counts devices with an identity.
	Enrolled int
	// AppsInstalled and AppsRunning over the fleet.
	AppsInstalled, AppsRunning int
	// Reconnects, Errors, PowerLosses and Flaps over the fleet.
	Reconnects, Errors, PowerLosses, Flaps uint64
	// Heartbeats sent over the fleet.
	Heartbeats uint64
	// Final marks the summary printed when the fleet stopped.
	Final bool
}

// Summary computes the fleet's current summary.
func (f *Fleet) Summary() Summary {
	f.mu.Lock()
	begin := f.begin
	f.mu.Unlock()
	s := Summary{Elapsed: f.opts.Clock.Now().Sub(begin), Devices: len(f.devices), Started: f.Started(),
		Phases: map[device.Phase]int{}}
	for _, d := range f.devices {
		st := d.Status()
		s.Phases[st.Phase]++
		if st.DeviceID != "" {
			s.Enrolled++
		}
		s.AppsInstalled += st.AppsInstalled
		s.AppsRunning += st.AppsRunning
		s.Reconnects += st.Link.Reconnects
		s.Errors += st.Errors
		s.PowerLosses += st.PowerLosses
		s.Heartbeats += st.Client.Heartbeats
	}
	f.mu.Lock()
	s.Flaps = f.flaps
	f.mu.Unlock()
	return s
}

// String renders the summary as one line of key=value pairs.
func (s Summary) String() string {
	var b strings.Builder
	if s.Final {
		b.WriteString("final ")
	}
	fmt.Fprintf(&b, "elapsed=%s devices=%d started=%d", s.Elapsed.Round(100*time.Millisecond), s.Devices, s.Started)
	phases := make([]device.Phase, 0, len(s.Phases))
	for p := range s.Phases {
		phases = append(phases, p)
	}
	sort.Slice(phases, func(i, j int) bool { return phases[i] < phases[j] })
	for _, p := range slices.Compact(phases) {
		fmt.Fprintf(&b, " %s=%d", p, s.Phases[p])
	}
	fmt.Fprintf(&b, " enrolled=%d apps_installed=%d apps_running=%d reconnects=%d errors=%d power_losses=%d flaps=%d heartbeats=%d",
		s.Enrolled, s.AppsInstalled, s.AppsRunning, s.Reconnects, s.Errors, s.PowerLosses, s.Flaps, s.Heartbeats)
	return b.String()
}
