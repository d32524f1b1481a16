package v1_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

func deviceApplication(ns, app, device string) *wasmbedv1.DeviceApplication {
	sum := sha256.Sum256([]byte(app))
	hash := hex.EncodeToString(sum[:])
	return &wasmbedv1.DeviceApplication{
		ObjectMeta: metav1.ObjectMeta{
			Name:      wasmbedv1.DeviceApplicationName(app, device),
			Namespace: ns,
			Labels: map[string]string{
				wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app),
				wasmbedv1.LabelDevice:      wasmbedv1.LabelValue(device),
			},
		},
		Spec: wasmbedv1.DeviceApplicationSpec{
			Device: device, Application: app, AppName: app, Version: "1.0",
			Artifact: &wasmbedv1.DeviceArtifact{
				Manifest:   []byte{0xa1, 0x01, 0x01},
				Signature:  make([]byte, 64),
				Sequence:   7,
				ModuleHash: hash,
				Payload:    wasmbedv1.PayloadReference{ConfigMap: app + "-module", SHA256: hash, Size: 8},
			},
		},
	}
}

func TestDeviceApplicationCRUDAndSelection(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	for _, pair := range [][2]string{{"blinky", "d1"}, {"blinky", "d2"}, {"sensor", "d1"}} {
		if err := env.Client.Create(ctx, deviceApplication(ns, pair[0], pair[1])); err != nil {
			t.Fatalf("create %v: %v", pair, err)
		}
	}
	got := &wasmbedv1.DeviceApplication{}
	key := client.ObjectKey{Namespace: ns, Name: "blinky.d1"}
	if err := env.Client.Get(ctx, key, got); err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Spec.State != wasmbedv1.RunStateRunning {
		t.Errorf("defaulted state: got %q, want %q", got.Spec.State, wasmbedv1.RunStateRunning)
	}
	if len(got.Spec.Artifact.Signature) != 64 || got.Spec.Artifact.Sequence != 7 {
		t.Errorf("artifact round trip: got %+v", got.Spec.Artifact)
	}

	// Status goes through the subresource only.
	got.Status = wasmbedv1.DeviceApplicationStatus{Phase: wasmbedv1.DeviceApplicationPhaseRunning, Sequence: 7, Gateway: "gw-0"}
	if err := env.Client.Status().Update(ctx, got); err != nil {
		t.Fatalf("status update: %v", err)
	}

	byLabel := &wasmbedv1.DeviceApplicationList{}
	if err := env.Client.List(ctx, byLabel, client.InNamespace(ns), client.MatchingLabels{wasmbedv1.LabelApplication: "blinky"}); err != nil {
		t.Fatalf("list by label: %v", err)
	}
	if len(byLabel.Items) != 2 {
		t.Errorf("list -l application=blinky: got %d items, want 2", len(byLabel.Items))
	}
	byField := &wasmbedv1.DeviceApplicationList{}
	if err := env.Client.List(ctx, byField, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("spec.device", "d1")}); err != nil {
		t.Fatalf("list by field: %v", err)
	}
	if len(byField.Items) != 2 {
		t.Errorf("list --field-selector spec.device=d1: got %d items, want 2", len(byField.Items))
	}
	for _, it := range byField.Items {
		if it.Name == "blinky.d1" && it.Status.Phase != wasmbedv1.DeviceApplicationPhaseRunning {
			t.Errorf("status after list: got %+v", it.Status)
		}
	}
}

func TestDeviceApplicationValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*wasmbedv1.DeviceApplication)
		wantMsg string
	}{
		{
			name:    "payload hash not hex",
			mutate:  func(d *wasmbedv1.DeviceApplication) { d.Spec.Artifact.Payload.SHA256 = strings.Repeat("Z", 64) },
			wantMsg: "spec.artifact.payload.sha256",
		},
		{
			name:    "short signature",
			mutate:  func(d *wasmbedv1.DeviceApplication) { d.Spec.Artifact.Signature = make([]byte, 10) },
			wantMsg: "spec.artifact.signature",
		},
		{
			name:    "oversized manifest",
			mutate:  func(d *wasmbedv1.DeviceApplication) { d.Spec.Artifact.Manifest = make([]byte, 4099) }, // 5468 characters of base64
			wantMsg: "spec.artifact.manifest",
		},
		{
			name:    "zero sequence",
			mutate:  func(d *wasmbedv1.DeviceApplication) { d.Spec.Artifact.Sequence = 0 },
			wantMsg: "spec.artifact.sequence",
		},
		{
			name:    "unknown run state",
			mutate:  func(d *wasmbedv1.DeviceApplication) { d.Spec.State = "paused" },
			wantMsg: "spec.state",
		},
	}
	ns := env.Namespace(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deviceApplication(ns, "app", "dev-"+strings.ReplaceAll(tt.name, " ", "-"))
			tt.mutate(d)
			err := env.Client.Create(t.Context(), d)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("create: got %v, want an error mentioning %q", err, tt.wantMsg)
			}
		})
	}
}

func TestDeviceApplicationDeviceIsImmutable(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	d := deviceApplication(ns, "app", "d1")
	if err := env.Client.Create(ctx, d); err != nil {
		t.Fatalf("create: %v", err)
	}
	d.Spec.Device = "d2"
	if err := env.Client.Update(ctx, d); err == nil || !strings.Contains(err.Error(), "device is immutable") {
		t.Fatalf("update device: got %v, want %q", err, "device is immutable")
	}
}
