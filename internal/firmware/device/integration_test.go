package device_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// testModule reads a module built from testdata/<name>.wat
// (wat2wasm testdata/<name>.wat -o testdata/<name>.wasm).
func testModule(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnrollSendsSealingKey(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	tap, err := srv.StartEnrollTap()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(srv)
	cfg.EnrollGateways = []string{tap.Addr()}
	d := newDevice(t, cfg)
	runDevice(t, d)
	t.Cleanup(tap.Close) // after the device stopped
	req, err := tap.Next(ctxFor(t), 0)
	if err != nil {
		t.Fatalf("no enrollment request: %v", err)
	}
	fw := d.Firmware()
	if fw == nil {
		t.Fatal("device is off")
	}
	want := fw.Security.SealingPublicKey().Bytes()
	if len(req.SealingKey) != 32 || !bytes.Equal(req.SealingKey, want) {
		t.Errorf("sealing key: got %x, want the device's X25519 key %x", req.SealingKey, want)
	}
	if len(req.SealingKeyProof) == 0 {
		t.Error("sealing key sent without its proof")
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		t.Fatalf("certificate request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil || !fw.Security.PublicKey().Equal(csr.PublicKey) {
		t.Errorf("certificate request: signature %v, key %v; want one signed by the identity key", err, csr.PublicKey)
	}
}

func TestFailedUpdateReportsFallback(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	_, peer := onlineDevice(t, srv)
	ctx := ctxFor(t)
	st, err := peer.Deploy(ctx, "app", 1, apps.MustLoad(apps.Blinky))
	if err != nil || st.State != protocol.StateRunning {
		t.Fatalf("deploy: got %+v, %v; want running", st, err)
	}
	art, err := srv.SignArtifact(peer.DeviceID, "app", 2, testModule(t, "inittrap"), clienttest.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	env, err := peer.Send(ctx, &protocol.Update{App: "app", Sequence: 2, Artifact: art, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	// The reply reports the version that failed ...
	failed := env.Message.(*protocol.AppStatus)
	if failed.Sequence != 2 || failed.State != protocol.StateTrapped {
		t.Errorf("update reply: got seq=%d state=%v (%s), want seq=2 trapped", failed.Sequence, failed.State, failed.Message)
	}
	// ... and, unasked, the old version running again.
	if _, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		s, ok := r.Env.Message.(*protocol.AppStatus)
		return ok && protocol.Owns(protocol.Device, r.Env.MessageID) && s.App == "app" && s.Sequence == 1 && s.State == protocol.StateRunning
	}); err != nil {
		t.Fatalf("no unsolicited status of the version fallen back to: %v", err)
	}
	// In that order: the gateway's last word on the app is the running one.
	var order []uint64
	for _, r := range srv.History() {
		if s, ok := r.Env.Message.(*protocol.AppStatus); ok && s.App == "app" {
			order = append(order, s.Sequence)
		}
	}
	if n := len(order); n < 2 || order[n-1] != 1 || order[n-2] != 2 {
		t.Errorf("statuses of app by sequence: got %v, want ... 2 1", order)
	}
}

func TestTrapTriggersMetricsReport(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, clk, peer := fakeClockDevice(t, srv, time.Hour)
	ctx := ctxFor(t)
	if st, err := peer.Deploy(ctx, "divzero", 1, apps.MustLoad(apps.DivZero)); err != nil || st.State != protocol.StateRunning {
		t.Fatalf("deploy: got %+v, %v", st, err)
	}
	// The first tick traps, an hour before the next periodic report is due.
	clk.Advance(wasm.DefaultTickInterval)
	rec, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		m, ok := r.Env.Message.(*protocol.MetricsReport)
		return ok && len(m.Apps) == 1 && m.Apps[0].App == "divzero" && m.Apps[0].Traps == 1
	})
	if err != nil {
		t.Fatalf("no metrics report with the trap: %v", err)
	}
	m := rec.Env.Message.(*protocol.MetricsReport)
	if m.Apps[0].MemoryBytes != 0 {
		t.Errorf("trapped app memory: got %d, want 0 (released)", m.Apps[0].MemoryBytes)
	}
	if got := d.Firmware().Monitoring.Reports(); got < 2 {
		t.Errorf("monitor reports: got %d, want at least 2 (session start, trap)", got)
	}
	// Removing the app drops it from the reports.
	if _, err := peer.Send(ctx, &protocol.Remove{App: "divzero"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "report without the app", func() bool {
		last := -1
		for _, r := range srv.History() {
			if m, ok := r.Env.Message.(*protocol.MetricsReport); ok {
				last = len(m.Apps)
			}
		}
		return last == 0
	})
}

func TestMemoryGrowthTriggersMetricsReport(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	_, clk, peer := fakeClockDevice(t, srv, time.Hour)
	ctx := ctxFor(t)
	lim := clienttest.DefaultLimits
	lim.MemoryLimit = 2 * wasm.PageSize
	art, err := srv.SignArtifact(peer.DeviceID, "memhog", 1, apps.MustLoad(apps.MemHog), lim)
	if err != nil {
		t.Fatal(err)
	}
	env, err := peer.Send(ctx, &protocol.Deploy{App: "memhog", Sequence: 1, Artifact: art, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := env.Message.(*protocol.AppStatus); st.State != protocol.StateRunning {
		t.Fatalf("deploy: got %v (%s), want running", st.State, st.Message)
	}
	appMemory := func(m *protocol.MetricsReport) uint64 {
		if len(m.Apps) != 1 || m.Apps[0].App != "memhog" {
			return 0
		}
		return m.Apps[0].MemoryBytes
	}
	// The report that follows the deploy is the baseline: one page.
	if _, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		m, ok := r.Env.Message.(*protocol.MetricsReport)
		return ok && appMemory(m) == wasm.PageSize
	}); err != nil {
		t.Fatalf("no baseline report: %v", err)
	}
	// The first tick grows the memory to two pages; a report follows once
	// the monitor's minimum spacing (5 s) has passed, long before the
	// hourly one.
	clk.Advance(6 * wasm.DefaultTickInterval)
	if _, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool {
		m, ok := r.Env.Message.(*protocol.MetricsReport)
		return ok && appMemory(m) == 2*wasm.PageSize
	}); err != nil {
		t.Fatalf("no report after the memory grew: %v", err)
	}
}

func TestConfigReadAtInit(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, peer := onlineDevice(t, srv)
	ctx := ctxFor(t)
	art, err := srv.SignArtifact(peer.DeviceID, "cfg", 1, testModule(t, "cfginit"), clienttest.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	send := func(m protocol.Message) protocol.Message {
		t.Helper()
		env, err := peer.Send(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return env.Message
	}
	// Without its configuration the app traps as it initialises: the test
	// can tell whether init saw the value.
	if st := send(&protocol.Deploy{App: "cfg", Sequence: 1, Artifact: art, Start: true}).(*protocol.AppStatus); st.State != protocol.StateTrapped {
		t.Fatalf("start without configuration: got %v (%s), want trapped", st.State, st.Message)
	}
	if _, ok := send(&protocol.ConfigPush{App: "cfg", Generation: 1, Values: map[string]string{"mode": "ok"}}).(*protocol.ConfigAck); !ok {
		t.Fatal("configuration push not acknowledged")
	}
	if st := send(&protocol.Start{App: "cfg"}).(*protocol.AppStatus); st.State != protocol.StateRunning {
		t.Fatalf("start after the push: got %v (%s), want running", st.State, st.Message)
	}
	for i, restart := range []func(){d.Reboot, d.PowerLoss} {
		boots := d.Status().Boots
		restart()
		waitFor(t, "back online", func() bool { st := d.Status(); return st.Boots > boots && st.Phase == device.Online })
		st, ok := d.Firmware().Applications.Status("cfg")
		if !ok || st.State != protocol.StateRunning {
			t.Errorf("restart %d: got %v (%s), want running with the stored configuration", i, st.State, st.Message)
		}
	}
}

func TestMonitoringDoesNotAllocate(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d, peer := onlineDevice(t, srv)
	for i, app := range []string{"a", "b"} {
		if st, err := peer.Deploy(ctxFor(t), app, uint64(i+1), apps.MustLoad(apps.Blinky)); err != nil || st.State != protocol.StateRunning {
			t.Fatalf("deploy %s: got %+v, %v", app, st, err)
		}
	}
	mon := d.Firmware().Monitoring
	var hb protocol.Heartbeat
	var m protocol.MetricsReport
	mon.Metrics(&m) // grows m.Apps once
	allocs := testing.AllocsPerRun(100, func() {
		mon.Due()
		mon.Heartbeat(&hb)
		mon.Metrics(&m)
	})
	if allocs != 0 {
		t.Errorf("sampling and reporting: got %v allocations per run, want 0", allocs)
	}
	if len(m.Apps) != 2 || m.Apps[0].App != "a" || m.Apps[1].App != "b" {
		t.Errorf("apps in the report: got %+v, want a and b in name order", m.Apps)
	}
}
