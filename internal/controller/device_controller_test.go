package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
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
