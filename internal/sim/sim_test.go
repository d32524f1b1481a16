package sim_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/sim"
)

func TestParseMix(t *testing.T) {
	tests := []struct {
		in      string
		want    []sim.Share
		wantErr bool
	}{
		{"esp32=80,hifive1=20", []sim.Share{{"esp32", 80}, {"hifive1", 20}}, false},
		{"hifive1=1", []sim.Share{{"hifive1", 1}}, false},
		{"esp32", nil, true},
		{"esp32=x", nil, true},
		{"nrf52=10", nil, true},
		{"esp32=0", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := sim.ParseMix(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseMix(%q): got err %v, want error %v", tt.in, err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseMix(%q): got %v, want %v", tt.in, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("ParseMix(%q)[%d]: got %v, want %v", tt.in, i, got[i], tt.want[i])
				}
			}
		})
	}
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// quietServer starts a test gateway that keeps no message history.
func quietServer(t *testing.T) *clienttest.Server {
	t.Helper()
	srv, err := clienttest.Start(clienttest.Options{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// runFleet creates the fleet opts describes, with srv's endpoints and root
// when srv is not nil, and runs it. stop ends the run and returns the final
// summary; it also runs when the test ends.
func runFleet(t *testing.T, srv *clienttest.Server, opts sim.Options) (*sim.Fleet, func() sim.Summary) {
	t.Helper()
	if srv != nil {
		opts.Gateways, opts.EnrollGateways, opts.Root = []string{srv.SessionAddr()}, []string{srv.EnrollAddr()}, srv.Root()
	}
	f, err := sim.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan sim.Summary, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	var final sim.Summary
	stop := func() sim.Summary {
		once.Do(func() {
			cancel()
			final = <-done
		})
		return final
	}
	t.Cleanup(func() { stop() })
	return f, stop
}

func TestFleetOnlineReconnectAndSummary(t *testing.T) {
	const n = 200
	srv := quietServer(t)
	mix, err := sim.ParseMix("esp32=80,hifive1=20")
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	f, stop := runFleet(t, srv, sim.Options{
		Devices: n, Mix: mix, Seed: 42, StartRate: 0,
		HeartbeatInterval: time.Hour, MetricsInterval: -1,
		Backoff:         link.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		SummaryInterval: 100 * time.Millisecond, Out: &out,
	})

	online := func() bool { return f.Summary().Phases[device.Online] == n }
	waitFor(t, "every device online", 2*time.Minute, online)
	s := f.Summary()
	if s.Enrolled != n || srv.Enrolled() != n {
		t.Errorf("enrolled: got %d (gateway %d), want %d", s.Enrolled, srv.Enrolled(), n)
	}
	profiles := map[string]int{}
	for _, d := range f.Devices() {
		profiles[d.Status().Profile]++
	}
	if profiles["esp32"] != 160 || profiles["hifive1"] != 40 {
		t.Errorf("profile mix: got %v, want esp32=160 hifive1=40", profiles)
	}

	// The gateway drops every session: the fleet comes back.
	srv.DropAll()
	waitFor(t, "reconnects", 2*time.Minute, func() bool { return f.Summary().Reconnects >= n })
	waitFor(t, "every device online again", 2*time.Minute, online)

	final := stop()
	if !final.Final || final.Phases[device.Online] != n {
		t.Errorf("final summary: got %+v, want final with %d online", final, n)
	}
	text := out.String()
	if !strings.Contains(text, "final elapsed=") || !strings.Contains(text, "online=") {
		t.Errorf("summary output lacks the final line or phase counts:\n%s", text)
	}
	waitFor(t, "goodbyes", 30*time.Second, func() bool { return srv.Goodbyes.Load() >= n })
}

func TestFleetWaitsForGateway(t *testing.T) {
	// No gateway listens yet: devices retry with backoff and connect once
	// it appears.
	srv := quietServer(t)
	enrollAddr, sessAddr := srv.EnrollAddr(), srv.SessionAddr()
	auth := srv.Authority()
	key := srv.SigningKey()
	srv.Close()

	f, _ := runFleet(t, srv, sim.Options{
		Devices:         5,
		Backoff:         link.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		SummaryInterval: -1, HeartbeatInterval: time.Hour, MetricsInterval: -1,
	})
	waitFor(t, "failed attempts", 30*time.Second, func() bool {
		for _, d := range f.Devices() {
			if d.Status().Link.Failures < 2 {
				return false
			}
		}
		return true
	})
	_, port, _ := strings.Cut(enrollAddr, ":")
	_, sport, _ := strings.Cut(sessAddr, ":")
	srv2, err := clienttest.Start(clienttest.Options{Quiet: true, Authority: auth, SigningKey: key,
		EnrollPort: atoi(t, port), SessionPort: atoi(t, sport)})
	if err != nil {
		t.Skipf("could not listen on the same ports again: %v", err)
	}
	defer srv2.Close()
	waitFor(t, "devices online", time.Minute, func() bool { return f.Summary().Phases[device.Online] == 5 })
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestFleetFaultInjection(t *testing.T) {
	srv := quietServer(t)
	const n = 20
	f, stop := runFleet(t, srv, sim.Options{
		Devices: n, Seed: 3, ClockSkew: 2 * time.Second,
		// A fault every few seconds per device: some of each within the test.
		PowerLossRate: 720, FlapRate: 720, FlapDuration: 50 * time.Millisecond, PowerOffTime: 10 * time.Millisecond,
		Backoff:           link.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		HeartbeatInterval: time.Hour, MetricsInterval: -1, SummaryInterval: -1,
	})
	// Every device enrolls (a loaded machine may take a while), and faults
	// hit the fleet.
	waitFor(t, "enrollments, power losses and flaps", time.Minute, func() bool {
		s := f.Summary()
		return s.Enrolled == n && s.PowerLosses >= 2 && s.Flaps >= 2
	})
	final := stop()
	if final.PowerLosses < 2 || final.Flaps < 2 {
		t.Errorf("faults: got %d power losses and %d flaps, want >= 2 each", final.PowerLosses, final.Flaps)
	}
	// Power losses never cost a device its identity: one enrollment each.
	if got := srv.Enrolled(); got != n {
		t.Errorf("enrollments: got %d, want %d", got, n)
	}
}

func TestFleetLossyLink(t *testing.T) {
	srv := quietServer(t)
	const n = 10
	f, _ := runFleet(t, srv, sim.Options{
		Devices: n, Seed: 9,
		Conditions: link.Conditions{DropProbability: 0.02, Latency: time.Millisecond, Jitter: time.Millisecond},
		Backoff:    link.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		// Heartbeats keep the links busy so that the medium drops them.
		HeartbeatInterval: 20 * time.Millisecond, MetricsInterval: -1, SummaryInterval: -1,
	})
	waitFor(t, "every device enrolled despite losses", time.Minute, func() bool { return f.Summary().Enrolled == n })
	waitFor(t, "drops and reconnects", time.Minute, func() bool {
		var drops uint64
		for _, d := range f.Devices() {
			drops += d.Status().Link.Drops
		}
		return drops > 0 && f.Summary().Reconnects > 0
	})
}

// TestFleetSeedKeys checks where device keys come from: without a seed,
// from crypto/rand (two fleets differ, nothing is logged); with one, from
// the seed (two fleets with the same seed hold the same keys) and a
// warning says so.
func TestFleetSeedKeys(t *testing.T) {
	const n = 3
	keys := func(seed uint64) (keys []string, log string) {
		t.Helper()
		var out syncBuffer
		logger := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
		f, stop := runFleet(t, quietServer(t), sim.Options{
			Devices: n, Seed: seed, Logger: logger, SummaryInterval: -1,
			HeartbeatInterval: time.Hour, MetricsInterval: -1,
		})
		waitFor(t, "every device online", time.Minute, func() bool { return f.Summary().Phases[device.Online] == n })
		for _, d := range f.Devices() {
			keys = append(keys, string(d.Firmware().Security.PublicKey()))
		}
		stop()
		return keys, out.String()
	}
	tests := []struct {
		name     string
		seed     uint64
		wantSame bool
		wantWarn bool
	}{
		{"no seed", 0, false, false},
		{"seed 11", 11, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, logA := keys(tt.seed)
			b, _ := keys(tt.seed)
			if same := slices.Equal(a, b); same != tt.wantSame {
				t.Errorf("two fleets hold the same keys: got %v, want %v", same, tt.wantSame)
			}
			if len(slices.Compact(slices.Sorted(slices.Values(a)))) != n {
				t.Errorf("devices of one fleet share keys")
			}
			if warned := strings.Contains(logA, sim.SeedWarning); warned != tt.wantWarn {
				t.Errorf("seed warning logged: got %v, want %v; log:\n%s", warned, tt.wantWarn, logA)
			}
		})
	}
}
