package device_test

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
)

func startServer(t *testing.T, opts clienttest.Options) *clienttest.Server {
	t.Helper()
	srv, err := clienttest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func testConfig(srv *clienttest.Server) device.Config {
	return device.Config{
		Name:              "dev",
		Gateways:          []string{srv.SessionAddr()},
		EnrollGateways:    []string{srv.EnrollAddr()},
		Root:              srv.Root(),
		Rand:              rand.New(rand.NewPCG(1, 1)),
		Backoff:           link.Backoff{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		HeartbeatInterval: time.Hour,
		MetricsInterval:   -1,
		PowerOffTime:      time.Millisecond,
	}
}

// runDevice runs d until the test ends.
func runDevice(t *testing.T, d *device.Device) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newDevice(t *testing.T, cfg device.Config) *device.Device {
	t.Helper()
	d, err := device.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestBootEnrollsAndConnects(t *testing.T) {
	tests := []struct {
		profile string
		medium  link.Medium
	}{
		{"esp32", link.WiFi},
		{"hifive1", link.Wired},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			srv := startServer(t, clienttest.Options{})
			cfg := testConfig(srv)
			cfg.Profile = tt.profile
			d := newDevice(t, cfg)
			runDevice(t, d)
			waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
			st := d.Status()
			if st.DeviceID == "" || srv.Peer(st.DeviceID) == nil {
				t.Fatalf("device id %q has no session on the gateway", st.DeviceID)
			}
			if st.Profile != tt.profile || st.Boots != 1 {
				t.Errorf("status: got profile=%s boots=%d, want %s and 1", st.Profile, st.Boots, tt.profile)
			}
			fw := d.Firmware()
			if got := fw.WiFi.Medium(); got != tt.medium {
				t.Errorf("medium: got %v, want %v", got, tt.medium)
			}
			ls := fw.WiFi.Status()
			if ls.HasRSSI != (tt.medium == link.WiFi) {
				t.Errorf("HasRSSI: got %v for %v", ls.HasRSSI, tt.medium)
			}
		})
	}
}

func TestIdentitySurvivesPowerLoss(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := newDevice(t, testConfig(srv))
	runDevice(t, d)
	waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
	id := d.Status().DeviceID
	for i := range 3 {
		d.PowerLoss()
		waitFor(t, "reboot", func() bool { return d.Status().Boots == uint64(i+2) })
		waitFor(t, "online after power loss", func() bool { return d.Status().Phase == device.Online })
	}
	st := d.Status()
	if st.DeviceID != id {
		t.Errorf("device id after power losses: got %q, want %q", st.DeviceID, id)
	}
	if st.PowerLosses != 3 {
		t.Errorf("power losses: got %d, want 3", st.PowerLosses)
	}
	if n := srv.Enrolled(); n != 1 {
		t.Errorf("enrollments: got %d, want 1 (identity kept in flash)", n)
	}
	if srv.Goodbyes.Load() != 0 {
		t.Errorf("goodbyes: got %d, want 0 (power loss says nothing)", srv.Goodbyes.Load())
	}
}

func TestStateDirKeepsIdentity(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	cfg := testConfig(srv)
	cfg.StateDir = t.TempDir()
	var ids []string
	for range 2 {
		d, err := device.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		stop := runDevice(t, d)
		waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
		ids = append(ids, d.Status().DeviceID)
		stop()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0] != ids[1] {
		t.Errorf("device id after restart: got %q, want %q", ids[1], ids[0])
	}
	if n := srv.Enrolled(); n != 1 {
		t.Errorf("enrollments: got %d, want 1", n)
	}
	if srv.Goodbyes.Load() != 2 {
		t.Errorf("goodbyes: got %d, want 2 (one per orderly shutdown)", srv.Goodbyes.Load())
	}
}

func TestRebootReconnects(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := newDevice(t, testConfig(srv))
	runDevice(t, d)
	waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
	d.Reboot()
	waitFor(t, "second boot online", func() bool {
		st := d.Status()
		return st.Boots == 2 && st.Phase == device.Online
	})
	if srv.Goodbyes.Load() != 1 {
		t.Errorf("goodbyes: got %d, want 1", srv.Goodbyes.Load())
	}
}

// TestKeysComeFromKeyRand checks where identity keys come from: never from
// the simulation's seeded Rand (two devices with the same Rand get
// different keys from crypto/rand), and from KeyRand when one is given.
func TestKeysComeFromKeyRand(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	keyOf := func(cfg device.Config) string {
		t.Helper()
		d := newDevice(t, cfg)
		stop := runDevice(t, d)
		defer stop()
		waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
		return string(d.Firmware().Security.PublicKey())
	}
	seeded := func() io.Reader { return rand.NewChaCha8([32]byte{7}) }
	tests := []struct {
		name     string
		a, b     func(*device.Config)
		wantSame bool
	}{
		{"same Rand, no KeyRand", func(*device.Config) {}, func(*device.Config) {}, false},
		{"same KeyRand seed", func(c *device.Config) { c.KeyRand = seeded() }, func(c *device.Config) { c.KeyRand = seeded() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, cb := testConfig(srv), testConfig(srv)
			tt.a(&ca)
			tt.b(&cb)
			ka, kb := keyOf(ca), keyOf(cb)
			if same := ka == kb; same != tt.wantSame {
				t.Errorf("keys equal: got %v, want %v", same, tt.wantSame)
			}
		})
	}
}
