package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/modcheck"
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

// withCustomSection appends a custom section of n bytes to module: a bigger
// module that is otherwise the same.
func withCustomSection(module []byte, n int) []byte {
	leb := func(b []byte, v int) []byte {
		for {
			c := byte(v & 0x7f)
			v >>= 7
			if v == 0 {
				return append(b, c)
			}
			b = append(b, c|0x80)
		}
	}
	payload := append(leb(nil, 3), "pad"...)
	payload = append(payload, make([]byte, n)...)
	out := append([]byte(nil), module...)
	out = append(leb(append(out, 0), len(payload)), payload...)
	return out
}

// TestModuleTooBigForHiFive1: a module above the HiFive1's module budget is
// refused for the HiFive1 before anything is delivered to it, with a reason
// and an Event, and still reaches the ESP32.
func TestModuleTooBigForHiFive1(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("esp")
	g.addDevice("hifive", withType(wasmbedv1.DeviceTypeHiFive1))
	tb.create(tb.newApp("big", withCustomSection(blinky, 300<<10), "esp", "hifive"))

	g.until(wait, tb.phaseIs("big", wasmbedv1.ApplicationPhaseRunning))
	ctx := t.Context()
	app := tb.application(ctx, "big")
	if app.Status.TargetCount != 1 || app.Status.UntargetedCount != 1 {
		t.Errorf("got %d targets and %d untargeted, want 1 and 1", app.Status.TargetCount, app.Status.UntargetedCount)
	}
	if u := app.Status.UntargetedDevices; len(u) != 1 || u[0].Device != "hifive" || u[0].Reason != wasmbedv1.ReasonDoesNotFit {
		t.Errorf("untargeted: got %+v, want hifive DoesNotFit", u)
	}
	if r := app.Status.UntargetedReasons; len(r) != 1 || r[0] != (wasmbedv1.ReasonCount{Reason: wasmbedv1.ReasonDoesNotFit, Count: 1}) {
		t.Errorf("untargeted reasons: got %+v", r)
	}
	if dapps := tb.deviceApplications(ctx); dapps["hifive"] != nil || dapps["esp"] == nil {
		t.Errorf("got DeviceApplications for %v, want esp only", keys(dapps))
	}
	if _, delivered := g.devices["hifive"].modules["big"]; delivered {
		t.Error("the module reached the HiFive1")
	}
	g.until(wait, tb.hasEvent("big", wasmbedv1.ReasonDoesNotFit))
}

// TestInvalidModuleRefused: a module that does not pass the firmware's
// checks fails the Application with a terminal reason; nothing is issued.
func TestInvalidModuleRefused(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("d1")
	tb.create(tb.newApp("forbidden", apps.MustLoad(apps.Forbidden), "d1"))
	noModule := tb.newApp("empty", nil, "d1")
	noModule.Spec.WasmBinary = nil
	tb.create(noModule)

	g.until(wait, tb.phaseIs("forbidden", wasmbedv1.ApplicationPhaseFailed))
	g.until(wait, tb.phaseIs("empty", wasmbedv1.ApplicationPhaseFailed))
	ctx := t.Context()
	for _, name := range []string{"forbidden", "empty"} {
		app := tb.application(ctx, name)
		c := condition(app, wasmbedv1.ConditionDegraded)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != wasmbedv1.ReasonInvalidModule {
			t.Errorf("%s: Degraded %+v, want True InvalidModule", name, c)
		}
	}
	if c := condition(tb.application(ctx, "forbidden"), wasmbedv1.ConditionDegraded); !strings.Contains(c.Message, modcheck.ReasonForbiddenImport) {
		t.Errorf("message %q does not say which check refused it", c.Message)
	}
	if n := len(tb.deviceApplications(ctx)); n != 0 {
		t.Errorf("got %d DeviceApplications, want none", n)
	}
	g.until(wait, tb.hasEvent("forbidden", wasmbedv1.ReasonInvalidModule))
}

// TestStopStart: the desired run state reaches every device without new
// artifacts, and the Application follows what the devices report.
func TestStopStart(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	for i := range 3 {
		g.addDevice(fmt.Sprintf("d%d", i))
	}
	tb.create(tb.newApp("blinky", blinky, "d0", "d1", "d2"))
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	ctx := t.Context()
	seqs := map[string]int64{}
	for dev, da := range tb.deviceApplications(ctx) {
		seqs[dev] = da.Spec.Artifact.Sequence
	}

	tb.mutateApp("blinky", func(a *wasmbedv1.Application) { a.Spec.State = wasmbedv1.RunStateStopped })
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseStopped))
	for dev, da := range tb.deviceApplications(ctx) {
		if da.Spec.State != wasmbedv1.RunStateStopped || da.Status.Phase != wasmbedv1.DeviceApplicationPhaseStopped {
			t.Errorf("%s: desired %s, phase %s; want stopped", dev, da.Spec.State, da.Status.Phase)
		}
	}
	tb.mutateApp("blinky", func(a *wasmbedv1.Application) { a.Spec.State = wasmbedv1.RunStateRunning })
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
	for dev, da := range tb.deviceApplications(ctx) {
		if da.Spec.Artifact.Sequence != seqs[dev] {
			t.Errorf("%s: stop and start issued a new artifact (sequence %d, was %d)", dev, da.Spec.Artifact.Sequence, seqs[dev])
		}
	}
}
