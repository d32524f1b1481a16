package device_test

import (
	"context"
	"crypto/ed25519"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

var (
	engineOnce sync.Once
	engine     *wasm.Engine
)

// sharedEngine is one engine for the package, as in a simulator process.
func sharedEngine(t *testing.T) *wasm.Engine {
	t.Helper()
	engineOnce.Do(func() {
		var err error
		engine, err = wasm.NewEngine(context.Background(), wasm.Config{Mode: wasm.ModeInterpreter})
		if err != nil {
			t.Fatal(err)
		}
	})
	return engine
}

// onlineDevice starts a device with the shared engine and waits until its
// session is up.
func onlineDevice(t *testing.T, srv *clienttest.Server) (*device.Device, *clienttest.Peer) {
	t.Helper()
	cfg := testConfig(srv)
	cfg.Engine = sharedEngine(t)
	d := newDevice(t, cfg)
	runDevice(t, d)
	waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
	p := srv.Peer(d.Status().DeviceID)
	if p == nil {
		t.Fatal("no session on the gateway")
	}
	return d, p
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDeploySignedArtifact(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, peer := onlineDevice(t, srv)
	ctx := ctxFor(t)
	st, err := peer.Deploy(ctx, "blinky", 1, apps.MustLoad(apps.Blinky))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != protocol.StateRunning || st.Sequence != 1 {
		t.Fatalf("deploy: got state=%v seq=%d (%s), want running 1", st.State, st.Sequence, st.Message)
	}
	if got := d.Status(); got.AppsRunning != 1 || got.AppsInstalled != 1 {
		t.Errorf("device: got %d running / %d installed, want 1 / 1", got.AppsRunning, got.AppsInstalled)
	}
	// The application change is followed by a metrics report listing it.
	if _, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		m, ok := r.Env.Message.(*protocol.MetricsReport)
		return ok && len(m.Apps) == 1 && m.Apps[0].App == "blinky"
	}); err != nil {
		t.Errorf("no metrics report with the app: %v", err)
	}
	// Stop, start and remove go through the same session.
	for _, tc := range []struct {
		msg  protocol.Message
		want protocol.AppState
	}{
		{&protocol.Stop{App: "blinky"}, protocol.StateStopped},
		{&protocol.Start{App: "blinky"}, protocol.StateRunning},
		{&protocol.Remove{App: "blinky"}, protocol.StateRemoved},
	} {
		env, err := peer.Send(ctx, tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := env.Message.(*protocol.AppStatus).State; got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.msg.Type(), got, tc.want)
		}
	}
}

func TestBadArtifactsRefused(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	_, peer := onlineDevice(t, srv)
	ctx := ctxFor(t)
	module := apps.MustLoad(apps.Blinky)
	_, forger, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	good, err := srv.SignArtifact(peer.DeviceID, "blinky", 5, module, sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := clienttest.SignArtifactWith(forger, peer.DeviceID, "blinky", 6, module, sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	otherDevice, err := srv.SignArtifact("someone-else", "blinky", 7, module, sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	older, err := srv.SignArtifact(peer.DeviceID, "blinky", 3, module, sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := srv.SignArtifact(peer.DeviceID, "blinky", 8, module, sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), fresh...)
	tampered[len(tampered)-10] ^= 0xff // inside the module: hash mismatch
	tests := []struct {
		name       string
		art        []byte
		wantState  protocol.AppState
		wantReason protocol.Reason
	}{
		{"valid", good, protocol.StateRunning, 0},
		{"unknown signer", forged, protocol.StateRefused, protocol.ReasonBadSignature},
		{"tampered", tampered, protocol.StateRefused, protocol.ReasonBadSignature},
		{"other device", otherDevice, protocol.StateRefused, protocol.ReasonWrongDevice},
		{"downgrade", older, protocol.StateRefused, protocol.ReasonReplay},
		{"garbage", []byte("not an artifact"), protocol.StateRefused, protocol.ReasonMalformedArtifact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := peer.Send(ctx, &protocol.Deploy{App: "blinky", Sequence: 1, Artifact: tt.art, Start: true})
			if err != nil {
				t.Fatal(err)
			}
			st := env.Message.(*protocol.AppStatus)
			if st.State != tt.wantState || st.Reason != tt.wantReason {
				t.Errorf("got state=%v reason=%v (%s), want %v %v", st.State, st.Reason, st.Message, tt.wantState, tt.wantReason)
			}
		})
	}
}

func TestPowerLossDuringInstallIsConsistent(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, peer := onlineDevice(t, srv)
	ctx := ctxFor(t)
	module := apps.MustLoad(apps.Blinky)
	st, err := peer.Deploy(ctx, "blinky", 1, module)
	if err != nil || st.State != protocol.StateRunning {
		t.Fatalf("first deploy: got %v, %v", st, err)
	}
	installed := uint64(1)
	seq := uint64(1)
	interrupted, rolledBack := 0, 0
	// Cut power at successive write steps of an update; after the reboot
	// the application is the old version or the new one, complete and
	// running, never a mix or nothing.
	for _, n := range []int64{0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32} {
		seq++
		d.Flash().FailAfter(n)
		reply, err := peer.Deploy(ctx, "blinky", seq, module)
		if err != nil {
			t.Fatalf("cut at %d: deploy: %v", n, err)
		}
		boots := d.Status().Boots
		d.PowerLoss()
		waitFor(t, "reboot", func() bool { st := d.Status(); return st.Boots > boots && st.Phase == device.Online })
		d.Flash().FailAfter(-1)
		old := peer
		waitFor(t, "new session", func() bool { p := srv.Peer(old.DeviceID); return p != nil && p != old })
		peer = srv.Peer(old.DeviceID)

		sts := d.Firmware().Applications.Statuses(nil)
		if len(sts) != 1 {
			t.Fatalf("cut at %d: got %d apps after reboot, want 1", n, len(sts))
		}
		got := sts[0]
		if got.State != protocol.StateRunning {
			t.Errorf("cut at %d: state %v (%s), want running", n, got.State, got.Message)
		}
		switch {
		case reply.State == protocol.StateRunning && got.Sequence != seq:
			t.Errorf("cut at %d: install was acknowledged but sequence %d survived, want %d", n, got.Sequence, seq)
		case got.Sequence != seq && got.Sequence != installed:
			t.Errorf("cut at %d: sequence %d after reboot, want %d or %d", n, got.Sequence, installed, seq)
		}
		if reply.State != protocol.StateRunning {
			interrupted++
		}
		if got.Sequence != seq {
			rolledBack++
		}
		installed = got.Sequence
	}
	// The cuts must have hit installs in flight, some early enough to roll
	// back, or the test proves nothing.
	if interrupted == 0 || rolledBack == 0 {
		t.Errorf("got %d interrupted installs and %d rollbacks, want both > 0", interrupted, rolledBack)
	}
	seq++
	st, err = peer.Deploy(ctx, "blinky", seq, module)
	if err != nil || st.State != protocol.StateRunning || st.Sequence != seq {
		t.Fatalf("deploy after the power losses: got %+v, %v; want running %d", st, err, seq)
	}
}

// fakeClockDevice starts a device with the shared engine on a fake clock
// and waits until its session is up.
func fakeClockDevice(t *testing.T, srv *clienttest.Server, metricsInterval time.Duration) (*device.Device, *hal.ManualClock, *clienttest.Peer) {
	t.Helper()
	clk := hal.NewManualClock(time.Now())
	cfg := testConfig(srv)
	cfg.Engine = sharedEngine(t)
	cfg.Clock = clk
	cfg.MetricsInterval = metricsInterval
	d := newDevice(t, cfg)
	runDevice(t, d)
	waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
	return d, clk, srv.Peer(d.Status().DeviceID)
}

func TestTrapReportedUnsolicited(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, clk, peer := fakeClockDevice(t, srv, -1)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	st, err := peer.Deploy(ctx, "divzero", 1, apps.MustLoad(apps.DivZero))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != protocol.StateRunning {
		t.Fatalf("deploy: got %v (%s), want running until the first tick", st.State, st.Message)
	}
	// The first tick traps: the device reports it without being asked.
	clk.Advance(wasm.DefaultTickInterval)
	rec, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		s, ok := r.Env.Message.(*protocol.AppStatus)
		return ok && s.App == "divzero" && s.State == protocol.StateTrapped
	})
	if err != nil {
		t.Logf("pending timers %d; statuses %+v", clk.Pending(), d.Firmware().Applications.Statuses(nil))
		t.Fatalf("no unsolicited trapped status: %v", err)
	}
	if !protocol.Owns(protocol.Device, rec.Env.MessageID) {
		t.Errorf("message id %d: want a device-initiated id", rec.Env.MessageID)
	}
}

func TestProfileAdmission(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	cfg := testConfig(srv)
	cfg.Engine = sharedEngine(t)
	cfg.Profile = "hifive1"
	d := newDevice(t, cfg)
	runDevice(t, d)
	waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
	peer := srv.Peer(d.Status().DeviceID)
	ctx := ctxFor(t)
	module := apps.MustLoad(apps.Blinky)
	tests := []struct {
		name       string
		app        string
		seq        uint64
		stack      uint64
		wantState  protocol.AppState
		wantReason protocol.Reason
		wantText   string // the resource the message names
	}{
		// 8 KiB of stack next to blinky's data does not fit the HiFive1's
		// 8 KiB of application RAM; the Application API's default
		// maxStackSize, 4096, does.
		{"stack too big for the board", "blinky", 1, 8 << 10, protocol.StateRefused, protocol.ReasonNoSpace, "ram"},
		{"API default stack", "blinky", 2, 4096, protocol.StateRunning, 0, ""},
		// The HiFive1 holds one application: a second is refused.
		{"second app", "other", 3, 4096, protocol.StateRefused, protocol.ReasonNoSpace, "app-slots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := clienttest.DefaultLimits
			lim.MaxStackSize = tt.stack
			art, err := srv.SignArtifact(peer.DeviceID, tt.app, tt.seq, module, lim)
			if err != nil {
				t.Fatal(err)
			}
			env, err := peer.Send(ctx, &protocol.Deploy{App: tt.app, Sequence: tt.seq, Artifact: art, Start: true})
			if err != nil {
				t.Fatal(err)
			}
			st := env.Message.(*protocol.AppStatus)
			if st.State != tt.wantState || st.Reason != tt.wantReason {
				t.Errorf("got state=%v reason=%v (%s), want %v %v", st.State, st.Reason, st.Message, tt.wantState, tt.wantReason)
			}
			if !strings.Contains(st.Message, tt.wantText) {
				t.Errorf("message %q: want it to name %q", st.Message, tt.wantText)
			}
		})
	}
	if got := d.Status(); got.AppsInstalled != 1 || got.AppsRunning != 1 {
		t.Errorf("device: got %d installed / %d running, want 1 / 1", got.AppsInstalled, got.AppsRunning)
	}
}

// TestInstallsCountAcrossBoots: Status.Installs counts each version written
// to flash once, not an artifact delivered again, and keeps counting across
// a reboot.
func TestInstallsCountAcrossBoots(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, peer := onlineDevice(t, srv)
	ctx := ctxFor(t)
	module := apps.MustLoad(apps.Blinky)
	for _, seq := range []uint64{1, 1, 2} {
		if st, err := peer.Deploy(ctx, "blinky", seq, module); err != nil || st.State != protocol.StateRunning {
			t.Fatalf("deploy %d: got %v, %v", seq, st, err)
		}
	}
	if got := d.Status().Installs; got != 2 {
		t.Fatalf("after deploying sequences 1, 1, 2: Installs = %d, want 2", got)
	}
	boots := d.Status().Boots
	old := peer
	d.Reboot()
	waitFor(t, "reboot", func() bool { st := d.Status(); return st.Boots > boots && st.Phase == device.Online })
	waitFor(t, "new session", func() bool { p := srv.Peer(old.DeviceID); return p != nil && p != old })
	peer = srv.Peer(old.DeviceID)
	if st, err := peer.Deploy(ctx, "blinky", 3, module); err != nil || st.State != protocol.StateRunning {
		t.Fatalf("deploy 3: got %v, %v", st, err)
	}
	if got := d.Status().Installs; got != 3 {
		t.Errorf("after a reboot and sequence 3: Installs = %d, want 3", got)
	}
}
