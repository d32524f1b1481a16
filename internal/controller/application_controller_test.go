package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

const wait = 30 * time.Second

// TestDeployToNamedDevicesAndSelector: an Application naming two devices
// and selecting a third reaches Running on exactly those three, each with a
// DeviceApplication labelled, owned and finalized as the contract says, an
// artifact the device verifies, and one payload ConfigMap for all.
func TestDeployToNamedDevicesAndSelector(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("d1")
	g.addDevice("d2")
	g.addDevice("d3", withLabels(map[string]string{"site": "a"}))
	g.addDevice("d4", withLabels(map[string]string{"site": "b"}))
	app := tb.newApp("blinky", blinky, "d1", "d2")
	app.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"site": "a"}}
	tb.create(app)

	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	ctx := t.Context()
	got := tb.application(ctx, "blinky")
	if st := got.Status; st.TargetCount != 3 || st.UpdatedCount != 3 || st.RunningCount != 3 || st.FailedCount != 0 {
		t.Errorf("counts: got targets %d updated %d running %d failed %d, want 3 3 3 0", st.TargetCount, st.UpdatedCount, st.RunningCount, st.FailedCount)
	}
	if c := condition(got, wasmbedv1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready: got %+v, want True", c)
	}
	dapps := tb.deviceApplications(ctx)
	if len(dapps) != 3 || dapps["d4"] != nil {
		t.Fatalf("got DeviceApplications for %v, want d1 d2 d3", keys(dapps))
	}
	payloads := map[string]bool{}
	for dev, da := range dapps {
		if da.Name != wasmbedv1.DeviceApplicationName("blinky", dev) {
			t.Errorf("%s: name %s, want %s", dev, da.Name, wasmbedv1.DeviceApplicationName("blinky", dev))
		}
		if da.Labels[wasmbedv1.LabelApplication] != "blinky" || da.Labels[wasmbedv1.LabelDevice] != dev {
			t.Errorf("%s: labels %v", dev, da.Labels)
		}
		if !metav1.IsControlledBy(da, got) || len(da.Finalizers) != 1 || da.Finalizers[0] != wasmbedv1.FinalizerDeviceRemoval {
			t.Errorf("%s: owners %v finalizers %v", dev, da.OwnerReferences, da.Finalizers)
		}
		if da.Spec.AppName != "blinky" || da.Spec.Version != "1.0" || da.Spec.State != wasmbedv1.RunStateRunning || da.Spec.Artifact == nil {
			t.Errorf("%s: spec %+v", dev, da.Spec)
			continue
		}
		payloads[da.Spec.Artifact.Payload.ConfigMap] = true
	}
	if len(payloads) != 1 {
		t.Fatalf("got payload configmaps %v, want one", payloads)
	}
	for name := range payloads {
		cm := &corev1.ConfigMap{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.ns, Name: name}, cm); err != nil {
			t.Fatal(err)
		}
		if cm.Immutable == nil || !*cm.Immutable || !metav1.IsControlledBy(cm, got) || string(cm.BinaryData[PayloadKey]) != string(blinky) {
			t.Errorf("payload configmap: immutable %v, owners %v, %d bytes", cm.Immutable, cm.OwnerReferences, len(cm.BinaryData[PayloadKey]))
		}
	}
	// The keys exist, and their public halves are published.
	for _, name := range []string{wasmbedv1.SigningKeySecret, wasmbedv1.IssuerKeySecret} {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.sys, Name: name}, &corev1.Secret{}); err != nil {
			t.Errorf("secret %s: %v", name, err)
		}
	}
	g.until(wait, tb.hasEvent("blinky", "RolloutStarted"))
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestNoMatchingDevice: a selector that matches nothing leaves the
// Application Pending with no targets; a named device that does not exist
// is reported, with an Event.
func TestNoMatchingDevice(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	app := tb.newApp("lonely", blinky)
	app.Spec.TargetDevices = nil
	app.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"site": "nowhere"}}
	tb.create(app)
	missing := tb.newApp("missing", blinky, "ghost")
	tb.create(missing)

	g.until(wait, tb.phaseIs("lonely", wasmbedv1.ApplicationPhasePending))
	g.until(wait, tb.phaseIs("missing", wasmbedv1.ApplicationPhasePending))
	ctx := t.Context()
	got := tb.application(ctx, "lonely")
	if c := condition(got, wasmbedv1.ConditionReady); c == nil || c.Reason != wasmbedv1.ReasonNoTargets {
		t.Errorf("Ready: got %+v, want reason NoTargets", c)
	}
	m := tb.application(ctx, "missing")
	if m.Status.UntargetedCount != 1 || len(m.Status.UntargetedDevices) != 1 || m.Status.UntargetedDevices[0].Reason != wasmbedv1.ReasonDeviceMissing {
		t.Errorf("untargeted: got %d %+v, want ghost DeviceMissing", m.Status.UntargetedCount, m.Status.UntargetedDevices)
	}
	g.until(wait, tb.hasEvent("missing", wasmbedv1.ReasonDeviceMissing))
	if n := len(tb.deviceApplications(ctx)); n != 0 {
		t.Errorf("got %d DeviceApplications, want none", n)
	}
}

var _ = fmt.Sprintf
var _ context.Context
