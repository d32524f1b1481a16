package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fixture"
)

// deviceIs waits for a Device's phase and the reason of its Connected
// condition.
func (tb *testbed) deviceIs(name string, phase wasmbedv1.DevicePhase, reason string) func(context.Context) (bool, string) {
	return func(ctx context.Context) (bool, string) {
		d := &wasmbedv1.Device{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.ns, Name: name}, d); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(d.Status.Conditions, wasmbedv1.ConditionConnected)
		return d.Status.Phase == phase && c != nil && c.Reason == reason,
			fmt.Sprintf("device %s: phase %s, Connected %+v; want %s with reason %s", name, d.Status.Phase, c, phase, reason)
	}
}

// TestDeviceConditionsAndGatewayLoss: a connected device is Enrolled,
// Connected and Ready; when its gateway stops renewing its Lease it becomes
// Unreachable, with an Event.
func TestDeviceConditionsAndGatewayLoss(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("d1")
	g.until(wait, tb.deviceIs("d1", wasmbedv1.DevicePhaseConnected, wasmbedv1.ReasonSessionOpen))
	d := &wasmbedv1.Device{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tb.ns, Name: "d1"}, d); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{wasmbedv1.ConditionEnrolled, wasmbedv1.ConditionConnected, wasmbedv1.ConditionReady} {
		if !meta.IsStatusConditionTrue(d.Status.Conditions, typ) {
			t.Errorf("%s: got %+v, want True", typ, meta.FindStatusCondition(d.Status.Conditions, typ))
		}
	}
	g.until(wait, tb.hasEvent("d1", wasmbedv1.ConditionConnected))

	tb.renewLease(time.Now().Add(-time.Minute), 10)
	g.until(wait, tb.deviceIs("d1", wasmbedv1.DevicePhaseUnreachable, wasmbedv1.ReasonGatewayLost))
	g.until(wait, tb.hasEvent("d1", "Unreachable"))
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: tb.ns, Name: "d1"}, d); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(d.Status.Conditions, wasmbedv1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("Ready: got %+v, want False", c)
	}

	// The device reconnects through a live gateway.
	tb.renewLease(time.Now(), 3600)
	g.setOnline(g.devices["d1"], nil, true)
	g.until(wait, tb.deviceIs("d1", wasmbedv1.DevicePhaseConnected, wasmbedv1.ReasonSessionOpen))
}

// TestDeviceHeartbeatDeadline: a connected device whose lastSeen is not
// refreshed within the deadline becomes Unreachable, though its gateway is
// alive.
func TestDeviceHeartbeatDeadline(t *testing.T) {
	tb := newTestbed(t, func(o *Options) { o.UnreachableAfter = 2 * time.Second })
	g := newGateway(tb)
	g.addDevice("quiet")
	g.until(wait, tb.deviceIs("quiet", wasmbedv1.DevicePhaseUnreachable, wasmbedv1.ReasonHeartbeatMissed))
}

// TestDeletedDeviceReleasesItsApplications: deleting a Device removes its
// DeviceApplications at once; no gateway will confirm their removal.
func TestDeletedDeviceReleasesItsApplications(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("d1")
	g.addDevice("d2")
	tb.create(tb.newApp("blinky", blinky, "d1", "d2"))
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	g.setOnline(g.devices["d2"], nil, false)
	d := &wasmbedv1.Device{}
	ctx := t.Context()
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.ns, Name: "d2"}, d); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	g.until(wait, func(ctx context.Context) (bool, string) {
		dapps := tb.deviceApplications(ctx)
		return len(dapps) == 1 && dapps["d1"] != nil, fmt.Sprintf("DeviceApplications of %v, want d1 only", keys(dapps))
	})
	g.until(wait, func(ctx context.Context) (bool, string) {
		app := tb.application(ctx, "blinky")
		return app.Status.TargetCount == 1 && app.Status.UntargetedCount == 1, fmt.Sprintf("targets %d untargeted %d", app.Status.TargetCount, app.Status.UntargetedCount)
	})
}

// TestFreshDeviceLeftToItsCreator: the conditions of a Device created
// without a status are not written within freshDeviceGrace (the gateway
// that created it at enrollment writes its status then, conditions
// included), and are written after it. The reconciler runs on its own
// clock against the API server; no controller watches the namespace.
func TestFreshDeviceLeftToItsCreator(t *testing.T) {
	ns := env.Namespace(t)
	dev := fixture.Device("fresh", fixture.InNamespace(ns))
	if err := env.Client.Create(t.Context(), dev); err != nil {
		t.Fatal(err)
	}
	var now time.Time
	r := &DeviceReconciler{Client: env.Client, Recorder: events.NewFakeRecorder(10), SystemNamespace: ns,
		UnreachableAfter: time.Hour, Now: func() time.Time { return now }}
	req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(dev)}
	stored := func() *wasmbedv1.Device {
		got := &wasmbedv1.Device{}
		if err := env.Client.Get(t.Context(), req.NamespacedName, got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	now = dev.CreationTimestamp.Add(time.Second)
	res, err := r.Reconcile(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > freshDeviceGrace {
		t.Errorf("within the grace: requeue after %v, want the rest of %v", res.RequeueAfter, freshDeviceGrace)
	}
	if got := stored(); len(got.Status.Conditions) != 0 {
		t.Fatalf("within the grace the controller wrote conditions %+v (freshDeviceGrace)", got.Status.Conditions)
	}

	now = dev.CreationTimestamp.Add(freshDeviceGrace + time.Second)
	if _, err := r.Reconcile(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(stored().Status.Conditions, wasmbedv1.ConditionEnrolled)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != wasmbedv1.ReasonNotEnrolled {
		t.Errorf("after the grace: Enrolled %+v, want False NotEnrolled", c)
	}
}
