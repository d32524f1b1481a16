package gateway_test

import (
	"encoding/base64"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
)

// TestEnrollConnectDeliver follows devices of both board types from
// enrollment through the pairing window to running an application, a stop,
// a start and a removal.
func TestEnrollConnectDeliver(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	p.openPairing(10*time.Minute, nil)
	p.runFleet(2, "esp32=1,hifive1=1", gw)

	devs := p.waitDevices("two devices connected", 2, func(d *wasmbedv1.Device) bool {
		return d.Status.Phase == wasmbedv1.DevicePhaseConnected && d.Status.Gateway == "gw-0"
	})
	types := map[wasmbedv1.DeviceType]bool{}
	for _, d := range devs {
		types[d.Spec.DeviceType] = true
		if d.Spec.PublicKey == "" || d.Spec.DeviceID == "" {
			t.Errorf("%s: enrollment left spec %+v", d.Name, d.Spec)
		}
		if k, err := base64.RawURLEncoding.DecodeString(d.Spec.SealingKey); err != nil || len(k) != 32 {
			t.Errorf("%s: sealing key %q, want 32 bytes of base64url", d.Name, d.Spec.SealingKey)
		}
		if c := apimeta.FindStatusCondition(d.Status.Conditions, wasmbedv1.ConditionConnected); c == nil || c.Status != "True" {
			t.Errorf("%s: Connected condition %+v", d.Name, c)
		}
		if d.Status.ConnectedSince == nil || d.Status.CertificateNotAfter == nil {
			t.Errorf("%s: status misses connectedSince or certificateNotAfter: %+v", d.Name, d.Status)
		}
	}
	if !types[wasmbedv1.DeviceTypeESP32] || !types[wasmbedv1.DeviceTypeHiFive1] {
		t.Errorf("device types %v, want both boards", types)
	}

	module := apps.MustLoad(apps.Blinky)
	for i := range devs {
		d := &devs[i]
		da := p.issue(d, "blinky", "1.0", module, 1, wasmbedv1.RunStateRunning)
		p.waitDA(da.Name, "blinky running on "+d.Name, func(da *wasmbedv1.DeviceApplication) bool {
			st := da.Status
			return st.Phase == wasmbedv1.DeviceApplicationPhaseRunning && st.Sequence == 1 && st.Version == "1.0" && st.Gateway == "gw-0"
		})
	}

	// Stop, then start again.
	d := &devs[0]
	name := wasmbedv1.DeviceApplicationName("blinky", d.Name)
	p.issue(d, "blinky", "1.0", module, 1, wasmbedv1.RunStateStopped)
	p.waitDA(name, "blinky stopped", func(da *wasmbedv1.DeviceApplication) bool {
		return da.Status.Phase == wasmbedv1.DeviceApplicationPhaseStopped
	})
	p.issue(d, "blinky", "1.0", module, 1, wasmbedv1.RunStateRunning)
	p.waitDA(name, "blinky running again", func(da *wasmbedv1.DeviceApplication) bool {
		return da.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning
	})

	// Delete: the finalizer holds the object until the device removed it.
	da := &wasmbedv1.DeviceApplication{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: p.ns, Name: name}, da); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(t.Context(), da); err != nil {
		t.Fatal(err)
	}
	p.waitDA(name, "the DeviceApplication gone", func(da *wasmbedv1.DeviceApplication) bool { return da == nil })
	if got := gw.counter("wasmbed_gateway_deliveries_total", map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("deliveries_total{ok} = %v, want 2 (one per device)", got)
	}
}
