package e2e

import (
	"crypto/rand"
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// withCustomSection appends a custom section named "pad" holding data to
// module: a module that runs as the original does, bigger by data, with
// data somewhere in its bytes.
func withCustomSection(module, data []byte) []byte {
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
	payload = append(payload, data...)
	out := append([]byte(nil), module...)
	out = append(leb(append(out, 0), len(payload)), payload...)
	return out
}

// randomBytes returns n bytes that appear nowhere else.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// runsOn lists every way in which app differs from running r on exactly
// the devices on (Device names of the fleet): the Application's counts,
// one Running DeviceApplication per device of on and none for another
// device, and the firmware of each device of the fleet.
func (fl *fleet) runsOn(t *testing.T, app string, r release, on []string) []string {
	ctx := t.Context()
	var out []string
	a := &wasmbedv1.Application{}
	if err := fl.e.admin.Get(ctx, keyOf(app), a); err != nil {
		return []string{fmt.Sprintf("application %s: %v", app, err)}
	}
	n := int32(len(on)) //nolint:gosec // small
	if st := a.Status; st.ObservedGeneration != a.Generation || st.Phase != wasmbedv1.ApplicationPhaseRunning ||
		st.TargetCount != n || st.RunningCount != n || st.FailedCount != 0 {
		out = append(out, fmt.Sprintf("application %s: observed %d of %d, phase %s, %d targets, %d running, %d failed; want Running on %d",
			app, st.ObservedGeneration, a.Generation, st.Phase, st.TargetCount, st.RunningCount, st.FailedCount, n))
	}
	var list wasmbedv1.DeviceApplicationList
	if err := fl.e.admin.List(ctx, &list, client.MatchingLabels{wasmbedv1.LabelApplication: app}); err != nil {
		return append(out, err.Error())
	}
	got := map[string]bool{}
	for _, da := range list.Items {
		got[da.Spec.Device] = true
		switch {
		case !slices.Contains(on, da.Spec.Device):
			out = append(out, fmt.Sprintf("DeviceApplication %s for device %s, which is not targeted", da.Name, da.Spec.Device))
		case da.Status.Phase != wasmbedv1.DeviceApplicationPhaseRunning || da.Status.Version != r.version ||
			(da.Status.ModuleHash != "" && da.Status.ModuleHash != r.hash()):
			out = append(out, fmt.Sprintf("DeviceApplication %s: phase %s (%s), version %q, hash %q; want Running %s",
				da.Name, da.Status.Phase, da.Status.Reason, da.Status.Version, da.Status.ModuleHash, r.version))
		}
	}
	for i, d := range fl.sim.Devices() {
		name := fl.names[i]
		want := slices.Contains(on, name)
		if want && !got[name] {
			out = append(out, fmt.Sprintf("device %s: no DeviceApplication of %s", name, app))
		}
		fw := d.Firmware()
		if fw == nil {
			out = append(out, name+": off")
			continue
		}
		st, ok := fw.Applications.Status(app)
		switch {
		case want && (!ok || st.Version != r.version || st.State != protocol.StateRunning):
			out = append(out, fmt.Sprintf("device %s: %s installed %v, version %q, state %v; want %s running", name, app, ok, st.Version, st.State, r.version))
		case !want && ok:
			out = append(out, fmt.Sprintf("device %s holds %s %q but is not targeted", name, app, st.Version))
		}
	}
	return out
}

// deviceTypes returns the board type of each Device of the fleet by name.
func (fl *fleet) deviceTypes(t *testing.T) map[string]wasmbedv1.DeviceType {
	t.Helper()
	out := map[string]wasmbedv1.DeviceType{}
	for _, name := range fl.names {
		dev := &wasmbedv1.Device{}
		if err := fl.e.admin.Get(t.Context(), keyOf(name), dev); err != nil {
			t.Fatal(err)
		}
		out[name] = dev.Spec.DeviceType
	}
	return out
}

// TestTargetDevices deploys to two named devices of a fleet of three: the
// application reaches exactly those two; then an application whose
// selector matches no device stays Pending with the Ready condition's
// reason NoTargets, and nothing of it reaches a device.
func TestTargetDevices(t *testing.T) {
	e := platformEnv(t)
	fl := e.startFleet(t, fleetOptions{devices: 3})

	const named = "named"
	app := fl.application(named, v1, 2)
	app.Spec.Selector, app.Spec.TargetDevices = nil, fl.names[:2]
	fl.deploy(t, app)
	waitFor(t, 2*time.Minute, named+" running on exactly the two named devices", func() []string {
		return fl.runsOn(t, named, v1, fl.names[:2])
	})

	const lonely = "lonely"
	app = fl.application(lonely, v1, 2)
	app.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{fleetLabel: fl.label + "-nowhere"}}
	fl.deploy(t, app)
	waitFor(t, time.Minute, lonely+" to have no targets", func() []string {
		a := &wasmbedv1.Application{}
		if err := e.admin.Get(t.Context(), keyOf(lonely), a); err != nil {
			return []string{err.Error()}
		}
		cond := meta.FindStatusCondition(a.Status.Conditions, wasmbedv1.ConditionReady)
		if a.Status.ObservedGeneration != a.Generation || a.Status.Phase != wasmbedv1.ApplicationPhasePending ||
			a.Status.TargetCount != 0 || cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != wasmbedv1.ReasonNoTargets {
			return []string{fmt.Sprintf("observed %d of %d, phase %s, %d targets, Ready %+v; want Pending, 0 targets, Ready False NoTargets",
				a.Status.ObservedGeneration, a.Generation, a.Status.Phase, a.Status.TargetCount, cond)}
		}
		return nil
	})
	var das wasmbedv1.DeviceApplicationList
	if err := e.admin.List(t.Context(), &das, client.MatchingLabels{wasmbedv1.LabelApplication: lonely}); err != nil {
		t.Fatal(err)
	}
	for _, da := range das.Items {
		t.Errorf("DeviceApplication %s for device %s of an application with no targets", da.Name, da.Spec.Device)
	}
	for i, d := range fl.sim.Devices() {
		if fw := d.Firmware(); fw != nil {
			if _, ok := fw.Applications.Status(lonely); ok {
				t.Errorf("device %s holds %s, which targets no device", fl.names[i], lonely)
			}
		}
	}
	// The named application is undisturbed.
	if p := fl.runsOn(t, named, v1, fl.names[:2]); len(p) > 0 {
		t.Errorf("after the untargeted application: %v", p)
	}
}

// TestModuleTooBigForHiFive1 deploys a module larger than the HiFive1's
// app slot (256 KiB) but within the ESP32's (512 KiB) to one board of each
// type: the controller refuses it for the HiFive1 before anything is
// delivered (no DeviceApplication, untargeted with reason DoesNotFit) and
// the ESP32 runs it.
//
// The sample bigmem is refused by both boards (its 64-page memory exceeds
// the ESP32's application RAM too), so the module is blinky with a 300 KiB
// custom section.
func TestModuleTooBigForHiFive1(t *testing.T) {
	e := platformEnv(t)
	fl := e.startFleet(t, fleetOptions{devices: 2, mix: "esp32=1,hifive1=1"})
	var esp, hifive string
	for name, typ := range fl.deviceTypes(t) {
		switch typ {
		case wasmbedv1.DeviceTypeESP32:
			esp = name
		case wasmbedv1.DeviceTypeHiFive1:
			hifive = name
		}
	}
	if esp == "" || hifive == "" {
		t.Fatalf("want one ESP32 and one HiFive1, got %v", fl.deviceTypes(t))
	}

	const name = "too-big"
	big := release{version: "1.0", module: withCustomSection(apps.MustLoad(apps.Blinky), randomBytes(t, 300<<10))}
	fl.deploy(t, fl.application(name, big, 2))
	waitFor(t, 3*time.Minute, name+" running on the ESP32 only", func() []string {
		out := fl.runsOn(t, name, big, []string{esp})
		a := &wasmbedv1.Application{}
		if err := e.admin.Get(t.Context(), keyOf(name), a); err != nil {
			return append(out, err.Error())
		}
		if u := a.Status.UntargetedDevices; a.Status.UntargetedCount != 1 || len(u) != 1 || u[0].Device != hifive || u[0].Reason != wasmbedv1.ReasonDoesNotFit {
			out = append(out, fmt.Sprintf("untargeted: %d %+v; want %s DoesNotFit", a.Status.UntargetedCount, u, hifive))
		}
		return out
	})
	for i, d := range fl.sim.Devices() {
		if fl.names[i] == hifive && d.Status().Installs != 0 {
			t.Errorf("the HiFive1 wrote %d versions to flash, want none", d.Status().Installs)
		}
	}
}
