package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/rollout"
)

// TestDeleteWaitsForDevices: deleting an Application removes it from every
// device first. An offline device holds the deletion until it comes back; a
// revoked or deleted Device does not hold it at all.
func TestDeleteWaitsForDevices(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	for _, d := range []string{"on", "away", "revoked", "deleted"} {
		g.addDevice(d)
	}
	tb.create(tb.newApp("blinky", blinky, "on", "away", "revoked", "deleted"))
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	ctx := t.Context()

	g.setOnline(g.devices["away"], nil, false)
	g.setOnline(g.devices["revoked"], nil, false)
	g.setOnline(g.devices["deleted"], nil, false)
	dev := &wasmbedv1.Device{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.ns, Name: "deleted"}, dev); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.ns, Name: "revoked"}, dev); err != nil {
		t.Fatal(err)
	}
	dev.Spec.Revoked = true
	if err := env.Client.Update(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, tb.application(ctx, "blinky")); err != nil {
		t.Fatal(err)
	}

	// Everything but the offline device's removal completes; the
	// Application waits.
	g.until(wait, func(ctx context.Context) (bool, string) {
		dapps := tb.deviceApplications(ctx)
		return len(dapps) == 1 && dapps["away"] != nil, fmt.Sprintf("DeviceApplications left: %v, want away only", keys(dapps))
	})
	if app := tb.application(ctx, "blinky"); app == nil || !slices.Contains(app.Finalizers, wasmbedv1.FinalizerApplicationRemoval) {
		t.Fatal("the Application went before the offline device confirmed the removal")
	}
	if _, ok := g.devices["on"].modules["blinky"]; ok {
		t.Error("the online device still has the application")
	}

	// The device comes back: it gets the removal, and the Application goes.
	g.setOnline(g.devices["away"], nil, true)
	g.until(wait, func(ctx context.Context) (bool, string) {
		return tb.application(ctx, "blinky") == nil, "the Application is still there"
	})
	if _, ok := g.devices["away"].modules["blinky"]; ok {
		t.Error("the device that came back still has the application")
	}
}

// TestRestartMidRollout: a controller stopped in the middle of a rollout
// and started again finishes it with one DeviceApplication per device, and
// the next version's sequences are above the first's on every device (the
// fake devices refuse anything else).
func TestRestartMidRollout(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	var names []string
	for i := range 6 {
		names = append(names, fmt.Sprintf("d%d", i))
		g.addDevice(names[i])
	}
	app := tb.newApp("blinky", blinky, names...)
	two := intstr.FromInt32(2)
	app.Spec.Strategy.MaxUpdating = &two
	tb.create(app)

	// Let the first batch complete and the second be issued, then stop.
	g.until(wait, func(ctx context.Context) (bool, string) {
		n := 0
		for _, da := range tb.deviceApplications(ctx) {
			if da.Spec.Artifact != nil {
				n++
			}
		}
		return n >= 4, fmt.Sprintf("%d artifacts issued, want 4", n)
	})
	tb.stop()
	ctx := t.Context()
	before := tb.deviceApplications(ctx)
	if len(before) != 6 {
		t.Fatalf("got %d DeviceApplications before the restart, want 6", len(before))
	}
	issuedBefore := 0
	for _, da := range before {
		if da.Spec.Artifact != nil {
			issuedBefore++
		}
	}
	if issuedBefore == 6 {
		t.Fatal("the rollout finished before the restart; the test shows nothing")
	}

	tb.start()
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	after := tb.deviceApplications(ctx)
	if len(after) != 6 {
		t.Fatalf("got %d DeviceApplications after the restart, want 6", len(after))
	}
	for dev, da := range before {
		if a := da.Spec.Artifact; a != nil && after[dev].Spec.Artifact.Sequence != a.Sequence {
			t.Errorf("%s: the restart issued again (sequence %d, was %d)", dev, after[dev].Spec.Artifact.Sequence, a.Sequence)
		}
	}

	// Restart once more and roll out a new version.
	tb.stop()
	tb.start()
	tb.mutateApp("blinky", func(a *wasmbedv1.Application) { a.Spec.WasmBinary, a.Spec.Version = sensor, "2.0" })
	g.until(wait, func(ctx context.Context) (bool, string) {
		app := tb.application(ctx, "blinky")
		ok := app.Status.Phase == wasmbedv1.ApplicationPhaseRunning && app.Status.ObservedGeneration == app.Generation && app.Status.Rollout.Current.Version == "2.0"
		return ok, fmt.Sprintf("phase %s, rollout %+v", app.Status.Phase, app.Status.Rollout)
	})
	for _, n := range names {
		seqs := g.devices[n].seqs["blinky"]
		if len(seqs) != 2 || seqs[1] <= seqs[0] {
			t.Errorf("%s: accepted sequences %v, want two increasing", n, seqs)
		}
	}
}

// TestFailureThresholdPausesResumeAndUndo: a version that fails on the
// devices it reaches pauses the rollout before it reaches the fleet, with
// a Degraded condition and an Event; a resume lets one more batch through;
// an undo rolls the previous version out again.
func TestFailureThresholdPausesResumeAndUndo(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	var names []string
	for i := range 10 {
		names = append(names, fmt.Sprintf("d%d", i))
		g.addDevice(names[i])
	}
	app := tb.newApp("blinky", blinky, names...)
	two := intstr.FromInt32(2)
	app.Spec.Strategy = wasmbedv1.RolloutStrategy{MaxUpdating: &two, FailureThreshold: ptr.To[int32](25)}
	tb.create(app)
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))

	for _, f := range g.devices {
		f.fail = true
	}
	tb.mutateApp("blinky", func(a *wasmbedv1.Application) { a.Spec.WasmBinary, a.Spec.Version = sensor, "2.0" })
	// The first batch reaches two devices; both fail (the rollout may
	// pause at the first failure: one of two is above 25%).
	paused := func(ctx context.Context) (bool, string) {
		app := tb.application(ctx, "blinky")
		ro := app.Status.Rollout
		return ro != nil && ro.Paused && ro.Current.Version == "2.0" && app.Status.FailedCount == 2, fmt.Sprintf("rollout %+v, %d failed", ro, app.Status.FailedCount)
	}
	g.until(wait, paused)
	ctx := t.Context()
	reached := func() int {
		n := 0
		for _, da := range tb.deviceApplications(ctx) {
			if rollout.Classify(da, tb.application(ctx, "blinky").Status.Rollout.Current.Revision) != rollout.Unassigned {
				n++
			}
		}
		return n
	}
	got := tb.application(ctx, "blinky")
	if c := condition(got, wasmbedv1.ConditionDegraded); c == nil || c.Status != metav1.ConditionTrue || c.Reason != wasmbedv1.ReasonRolloutPaused {
		t.Errorf("Degraded: got %+v, want True RolloutPaused", c)
	}
	if c := condition(got, wasmbedv1.ConditionProgressing); c == nil || c.Status != metav1.ConditionFalse || c.Reason != wasmbedv1.ReasonRolloutPaused {
		t.Errorf("Progressing: got %+v, want False RolloutPaused", c)
	}
	if got.Status.Phase != wasmbedv1.ApplicationPhasePartiallyRunning || got.Status.RunningCount != 8 {
		t.Errorf("got phase %s with %d running, want PartiallyRunning with the 8 devices on 1.0", got.Status.Phase, got.Status.RunningCount)
	}
	if len(got.Status.FailingDevices) != 2 || got.Status.FailingDevices[0].Reason != "FellBack" {
		t.Errorf("failing devices: %+v, want 2 with reason FellBack", got.Status.FailingDevices)
	}
	if n := reached(); n != 2 {
		t.Fatalf("version 2.0 reached %d devices, want the first batch of 2", n)
	}
	g.until(wait, tb.hasEvent("blinky", wasmbedv1.ReasonRolloutPaused))
	// Paused stays paused.
	time.Sleep(500 * time.Millisecond)
	g.step(ctx)
	if n := reached(); n != 2 {
		t.Fatalf("a paused rollout reached %d devices", n)
	}

	// Resume: one more batch goes out, fails, and pauses again.
	if err := Resume(ctx, env.Client, client.ObjectKey{Namespace: tb.ns, Name: "blinky"}, time.Now()); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	g.until(wait, func(ctx context.Context) (bool, string) {
		app := tb.application(ctx, "blinky")
		ro := app.Status.Rollout
		return ro.Paused && ro.ResumedAt != nil && reached() == 4 && app.Status.FailedCount == 4, fmt.Sprintf("rollout %+v, reached %d", ro, reached())
	})
	g.until(wait, tb.hasEvent("blinky", wasmbedv1.ReasonRolloutResumed))

	// Undo: version 1.0 goes out again, as a new artifact.
	for _, f := range g.devices {
		f.fail = false
	}
	if err := Undo(ctx, env.Client, client.ObjectKey{Namespace: tb.ns, Name: "blinky"}); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	g.until(wait, func(ctx context.Context) (bool, string) {
		app := tb.application(ctx, "blinky")
		ok := app.Status.Phase == wasmbedv1.ApplicationPhaseRunning && app.Status.ObservedGeneration == app.Generation && app.Status.Rollout.Current.Version == "1.0"
		return ok, fmt.Sprintf("phase %s rollout %+v", app.Status.Phase, app.Status.Rollout)
	})
	back := tb.application(ctx, "blinky")
	if string(back.Spec.WasmBinary) != string(blinky) || back.Status.Rollout.Previous.Version != "2.0" {
		t.Errorf("after undo: module of %d bytes, previous %+v; want blinky with 2.0 as previous", len(back.Spec.WasmBinary), back.Status.Rollout.Previous)
	}
	if err := Undo(ctx, env.Client, client.ObjectKey{Namespace: tb.ns, Name: "nothing"}); !apierrors.IsNotFound(err) {
		t.Errorf("undo of a missing application: got %v", err)
	}
	if err := Resume(ctx, env.Client, client.ObjectKey{Namespace: tb.ns, Name: "blinky"}, time.Now()); err == nil {
		t.Error("resume of a rollout that is not paused: got nil error")
	}
}

// TestSequencesAfterDeleteAndRecreate: an Application deleted and created
// again issues sequences above those its first life issued; the fake
// devices keep their replay marks and refuse anything else.
func TestSequencesAfterDeleteAndRecreate(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("d1")
	tb.create(tb.newApp("blinky", blinky, "d1"))
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	ctx := t.Context()
	if err := env.Client.Delete(ctx, tb.application(ctx, "blinky")); err != nil {
		t.Fatal(err)
	}
	g.until(wait, func(ctx context.Context) (bool, string) {
		return tb.application(ctx, "blinky") == nil && len(tb.deviceApplications(ctx)) == 0, "the Application is still there"
	})
	tb.create(tb.newApp("blinky", blinky, "d1"))
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	if seqs := g.devices["d1"].seqs["blinky"]; len(seqs) != 2 || seqs[1] <= seqs[0] {
		t.Errorf("accepted sequences %v, want two increasing", seqs)
	}
}

// TestStatusWritesCoalesced: devices reporting one by one do not each cause
// an Application status write.
func TestStatusWritesCoalesced(t *testing.T) {
	tb := newTestbed(t, func(o *Options) { o.StatusInterval = time.Second })
	g := newGateway(tb)
	const n = 60
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("d%02d", i))
		g.addDevice(names[i])
	}
	all := intstr.FromString("100%")
	app := tb.newApp("blinky", blinky, names...)
	app.Spec.Strategy.MaxUpdating = &all
	tb.create(app)
	ctx := t.Context()
	g.devices = nil // the test reports for the devices itself
	g.until(wait, func(ctx context.Context) (bool, string) {
		return len(tb.deviceApplications(ctx)) == n, "waiting for the DeviceApplications"
	})
	// Report the devices one at a time, as sessions would.
	start := counterValue(statusWrites)
	for _, da := range tb.deviceApplications(ctx) {
		a := da.Spec.Artifact
		da.Status = wasmbedv1.DeviceApplicationStatus{Phase: wasmbedv1.DeviceApplicationPhaseRunning, Sequence: a.Sequence, AttemptedSequence: a.Sequence, Gateway: gatewayName}
		if err := env.Client.Status().Update(ctx, da); err != nil {
			t.Fatal(err)
		}
	}
	reported := time.Now()
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	writes := counterValue(statusWrites) - start
	t.Logf("%d device reports in %s caused %d Application status writes", n, time.Since(reported).Round(time.Millisecond), int(writes))
	if writes > n/6 {
		t.Errorf("got %d status writes for %d device reports, want them coalesced", int(writes), n)
	}
}

func counterValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }
