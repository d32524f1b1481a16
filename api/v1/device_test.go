package v1_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fixture"
)

func TestDeviceCRUD(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	dev := fixture.Device("sensor-1", fixture.InNamespace(ns), fixture.WithType(wasmbedv1.DeviceTypeHiFive1))
	if err := env.Client.Create(ctx, dev); err != nil {
		t.Fatalf("create: %v", err)
	}

	got := &wasmbedv1.Device{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(dev), got); err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Spec.DeviceType != wasmbedv1.DeviceTypeHiFive1 {
		t.Errorf("deviceType: got %q, want %q", got.Spec.DeviceType, wasmbedv1.DeviceTypeHiFive1)
	}
	if want := []wasmbedv1.Capability{"wasm", "tls"}; !equalCaps(got.Spec.Capabilities, want) {
		t.Errorf("defaulted capabilities: got %v, want %v", got.Spec.Capabilities, want)
	}

	got.Spec.Capabilities = []wasmbedv1.Capability{"wasm", "tls", "serial"}
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatalf("update: %v", err)
	}
	list := &wasmbedv1.DeviceList{}
	if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Items) != 1 || len(list.Items[0].Spec.Capabilities) != 3 {
		t.Fatalf("list after update: got %+v, want one device with 3 capabilities", list.Items)
	}

	if err := env.Client.Delete(ctx, got); err != nil {
		t.Fatalf("delete: %v", err)
	}
	err := env.Client.Get(ctx, client.ObjectKeyFromObject(dev), &wasmbedv1.Device{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: got %v, want NotFound", err)
	}
}

func TestDeviceIDIsImmutable(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	dev := fixture.Device("d1", fixture.InNamespace(ns))
	if err := env.Client.Create(ctx, dev); err != nil {
		t.Fatalf("create: %v", err)
	}
	dev.Spec.DeviceID = "other"
	err := env.Client.Update(ctx, dev)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "deviceId is immutable") {
		t.Fatalf("update deviceId: got %v, want Invalid with 'deviceId is immutable'", err)
	}
}

func TestDeviceStatusOnlyThroughSubresource(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	dev := fixture.Device("d1", fixture.InNamespace(ns))
	if err := env.Client.Create(ctx, dev); err != nil {
		t.Fatalf("create: %v", err)
	}

	// A status change sent through the main resource is dropped.
	dev.Status.Phase = wasmbedv1.DevicePhaseConnected
	if err := env.Client.Update(ctx, dev); err != nil {
		t.Fatalf("update main resource: %v", err)
	}
	got := &wasmbedv1.Device{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(dev), got); err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Status.Phase != "" {
		t.Fatalf("status via main resource: got phase %q, want it ignored", got.Status.Phase)
	}

	// Through the status subresource it sticks, and spec changes are dropped.
	now := metav1.Now()
	got.Status.Phase = wasmbedv1.DevicePhaseConnected
	got.Status.Gateway = "gateway-0"
	got.Status.LastSeen = &now
	got.Spec.Revoked = true
	if err := env.Client.Status().Update(ctx, got); err != nil {
		t.Fatalf("update status: %v", err)
	}
	after := &wasmbedv1.Device{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(dev), after); err != nil {
		t.Fatalf("get: %v", err)
	}
	if after.Status.Phase != wasmbedv1.DevicePhaseConnected || after.Status.Gateway != "gateway-0" {
		t.Errorf("status: got %+v, want Connected on gateway-0", after.Status)
	}
	if after.Spec.Revoked {
		t.Errorf("spec via status subresource: got revoked=true, want it ignored")
	}

	bad := after.DeepCopy()
	bad.Status.Phase = "Sleeping"
	err := env.Client.Status().Update(ctx, bad)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.phase") {
		t.Fatalf("unknown phase: got %v, want Invalid on status.phase", err)
	}
}

func TestDeviceFieldSelectorOnPublicKey(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	for _, name := range []string{"a", "b", "c"} {
		if err := env.Client.Create(ctx, fixture.Device(name, fixture.InNamespace(ns))); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	for _, want := range []string{"a", "b", "c"} {
		list := &wasmbedv1.DeviceList{}
		err := env.Client.List(ctx, list, client.InNamespace(ns),
			client.MatchingFields{"spec.publicKey": fixture.PublicKeyFor(want)})
		if err != nil {
			t.Fatalf("list by key of %s: %v", want, err)
		}
		if len(list.Items) != 1 || list.Items[0].Name != want {
			t.Errorf("list by key of %s: got %d items %v, want exactly %s", want, len(list.Items), names(list.Items), want)
		}
	}
	list := &wasmbedv1.DeviceList{}
	err := env.Client.List(ctx, list, client.InNamespace(ns),
		client.MatchingFields{"spec.publicKey": fixture.PublicKeyFor("nobody")})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("list by unknown key: got %d items, err %v, want none", len(list.Items), err)
	}
}

func TestDeviceValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*wasmbedv1.Device)
		wantMsg string
	}{
		{
			name:    "unknown device type",
			mutate:  func(d *wasmbedv1.Device) { d.Spec.DeviceType = "arduino" },
			wantMsg: `spec.deviceType: Unsupported value: "arduino"`,
		},
		{
			name:    "missing device id",
			mutate:  func(d *wasmbedv1.Device) { d.Spec.DeviceID = "" },
			wantMsg: "spec.deviceId",
		},
		{
			name:    "public key not base64url",
			mutate:  func(d *wasmbedv1.Device) { d.Spec.PublicKey = "not/base64+url==padding!!" },
			wantMsg: "spec.publicKey",
		},
		{
			name:    "unknown capability",
			mutate:  func(d *wasmbedv1.Device) { d.Spec.Capabilities = []wasmbedv1.Capability{"teleport"} },
			wantMsg: `Unsupported value: "teleport"`,
		},
	}
	ns := env.Namespace(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := fixture.Device(deviceName(i), fixture.InNamespace(ns))
			tt.mutate(dev)
			err := env.Client.Create(t.Context(), dev)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: got %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("create: got %q, want it to mention %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

func deviceName(i int) string { return "invalid-" + string(rune('a'+i)) }

func names(devs []wasmbedv1.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.Name
	}
	return out
}

func equalCaps(got, want []wasmbedv1.Capability) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestCapabilitiesMatchSchema keeps the Capabilities list and the CRD's
// enumeration the same.
func TestCapabilitiesMatchSchema(t *testing.T) {
	crd, err := os.ReadFile(filepath.Join("..", "..", "config", "crd", "wasmbed.github.io_devices.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(crd)
	start := strings.Index(text, "capabilities:")
	if start < 0 {
		t.Fatal("no capabilities in the Device CRD")
	}
	section := text[start:]
	section = section[strings.Index(section, "enum:"):strings.Index(section, "type: array")]
	var enum []string
	for _, line := range strings.Split(section, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "- "); ok {
			enum = append(enum, v)
		}
	}
	var want []string
	for _, c := range wasmbedv1.Capabilities {
		want = append(want, string(c))
	}
	if strings.Join(enum, ",") != strings.Join(want, ",") {
		t.Errorf("CRD capabilities enum %v, Capabilities %v", enum, want)
	}
}
