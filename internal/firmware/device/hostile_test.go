package device_test

import (
	"testing"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm/wasmtest"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// TestHostileModulesDeployed deploys every hostile module to a device over
// its session: those the installation checks catch are refused as invalid
// modules, the loop-free call tree runs until its execution timeout stops
// it, and the device stays online and installs a good application after
// all of them.
func TestHostileModulesDeployed(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, clk, peer := fakeClockDevice(t, srv, -1)
	ctx := ctxFor(t)
	seq := uint64(0)
	for _, h := range wasmtest.HostileModules() {
		seq++
		st, err := peer.Deploy(ctx, "hostile", seq, h.Bin)
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		switch {
		case !h.Admitted && (st.State != protocol.StateRefused || st.Reason != protocol.ReasonInvalidModule):
			t.Errorf("%s: got %v %v (%s), want refused as an invalid module", h.Name, st.State, st.Reason, st.Message)
		case h.Admitted && st.State != protocol.StateRunning:
			t.Errorf("%s: got %v (%s), want running", h.Name, st.State, st.Message)
		}
	}
	// The call tree is the last admitted one deployed with a tick: its
	// first tick runs until executionTimeout.
	clk.Advance(wasm.DefaultTickInterval)
	if _, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		s, ok := r.Env.Message.(*protocol.AppStatus)
		return ok && s.App == "hostile" && s.State == protocol.StateLimitExceeded && s.Resource == protocol.ResourceTime
	}); err != nil {
		t.Fatalf("no time limit reported for the call tree: %v", err)
	}
	if d.Status().Phase != device.Online {
		t.Fatalf("device phase after hostile modules: got %v, want online", d.Status().Phase)
	}
	st, err := peer.Deploy(ctx, "blinky", 1, apps.MustLoad(apps.Blinky))
	if err != nil || st.State != protocol.StateRunning {
		t.Fatalf("blinky after hostile modules: got %+v, %v", st, err)
	}
}
