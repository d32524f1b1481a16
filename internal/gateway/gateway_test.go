package gateway_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/trust"
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
		if d.Labels[wasmbedv1.LabelDeviceType] != string(d.Spec.DeviceType) {
			t.Errorf("%s: labels %v, want the board type under %s", d.Name, d.Labels, wasmbedv1.LabelDeviceType)
		}
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

// TestRestartRedeliversNothing restarts a gateway (same replica name, same
// addresses) under a device running an application: the device reconnects
// and nothing is delivered again, nor is its Device written.
func TestRestartRedeliversNothing(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	p.openPairing(10*time.Minute, nil)
	p.runFleet(1, "esp32=1", gw)
	dev := p.waitDevices("connected", 1, func(d *wasmbedv1.Device) bool {
		return d.Status.Phase == wasmbedv1.DevicePhaseConnected
	})[0]
	da := p.issue(&dev, "blinky", "1.0", apps.MustLoad(apps.Blinky), 1, wasmbedv1.RunStateRunning)
	p.waitDA(da.Name, "running", func(da *wasmbedv1.DeviceApplication) bool {
		return da.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning
	})
	// Let the device's reports after the start settle, then take the
	// state the restart must leave as it is.
	time.Sleep(2 * time.Second)
	running := p.waitDA(da.Name, "running", func(da *wasmbedv1.DeviceApplication) bool {
		return da.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning
	})
	before := &wasmbedv1.Device{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(&dev), before); err != nil {
		t.Fatal(err)
	}

	gw.stop()
	again := p.startGateway("gw-0", func(o *gateway.Options) {
		o.SessionListener, o.EnrollListener, o.HTTPListener = relisten(t, gw.session), relisten(t, gw.enroll), relisten(t, gw.hp)
	})
	eventually(t, 60*time.Second, "the device back", func() (bool, string) {
		return again.Sessions() == 1, ""
	})
	// Give delivery a chance to act on the reconnected device.
	time.Sleep(2 * time.Second)
	if n := again.counter("wasmbed_gateway_deliveries_total", nil); n != 0 {
		t.Errorf("the restarted gateway delivered %v artifacts, want 0", n)
	}
	after := p.waitDA(da.Name, "still running", func(da *wasmbedv1.DeviceApplication) bool {
		return da.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning
	})
	if after.ResourceVersion != running.ResourceVersion {
		t.Errorf("the DeviceApplication was written across the restart: %+v", after.Status)
	}
	now := &wasmbedv1.Device{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(&dev), now); err != nil {
		t.Fatal(err)
	}
	if now.ResourceVersion != before.ResourceVersion {
		t.Errorf("the Device was written across the restart: %+v", now.Status)
	}
}

// relisten listens again on an address a stopped gateway used.
func relisten(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	eventually(t, 10*time.Second, "listen on "+addr, func() (bool, string) {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err == nil, fmt.Sprint(err)
	})
	return ln
}

// TestFloodDoesNotStopADevice floods the session listener from several
// source addresses with connections that never finish their handshake,
// then enrolls and connects a simulated device.
func TestFloodDoesNotStopADevice(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", func(o *gateway.Options) {
		o.Limits.MaxPendingPerSource = 16
		o.Limits.HelloTimeout = time.Minute
	})
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		for range 20 {
			c, err := d.Dial("tcp", gw.session)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	eventually(t, 10*time.Second, "the per-source limit to refuse the excess", func() (bool, string) {
		n := gw.counter("wasmbed_gateway_connections_refused_total", map[string]string{"limit": "per_source"})
		return n >= 12, fmt.Sprint(n)
	})
	p.openPairing(10*time.Minute, nil)
	p.runFleet(1, "hifive1=1", gw)
	p.waitDevices("the device connected through the flood", 1, func(d *wasmbedv1.Device) bool {
		return d.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
}

// TestReadyz checks /readyz says ready only while the gateway serves, and
// /healthz and /metrics answer.
func TestReadyz(t *testing.T) {
	p := newPlatform(t)
	gw := p.startGateway("gw-0", nil)
	get := func(path string) int {
		resp, err := http.Get("http://" + gw.hp + path)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/readyz", "/healthz", "/metrics"} {
		if code := get(path); code != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", path, code)
		}
	}
	gw.stop()
	if err := gw.Ready(); err == nil {
		t.Error("Ready() after shutdown: nil, want an error")
	}
}

// TestTrustFromCluster starts a gateway given nothing but its name and
// address: it reads the trust bundle and the signing key from their
// ConfigMaps, has its serving certificate signed through a certificate
// request, and a simulated device pinning the gateway CA enrolls and
// connects through it.
func TestTrustFromCluster(t *testing.T) {
	p := newPlatform(t)
	bundle, err := trust.FromAuthority(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	ik, err := issuer.GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := &issuer.Public{SigningKey: p.signer.PublicKey(), IssuerKey: ik.PublicKey()}
	for name, data := range map[string]map[string]string{wasmbedv1.TrustConfigMap: bundle.Data(), wasmbedv1.IssuerConfigMap: pub.Data()} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.sys, Name: name}, Data: data}
		if err := env.Client.Create(t.Context(), cm); err != nil {
			t.Fatal(err)
		}
	}
	gw := p.startGateway(p.ns+"-gw", func(o *gateway.Options) {
		o.Trust = gateway.Trust{}
		o.ServingIPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	})
	p.openPairing(10*time.Minute, nil)
	p.runFleet(1, "esp32=1", gw)
	p.waitDevices("connected through a cluster-issued certificate", 1, func(d *wasmbedv1.Device) bool {
		return d.Status.Phase == wasmbedv1.DevicePhaseConnected
	})
}
