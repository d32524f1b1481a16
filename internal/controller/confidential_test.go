package controller

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/issuer"
)

// TestConfidentialModule: a module sealed by the client reaches the devices
// that have a sealing key, which decrypt it; a device without one is not
// targeted; and the plaintext appears in no object the API server stores.
func TestConfidentialModule(t *testing.T) {
	tb := newTestbed(t)
	g := newGateway(tb)
	g.addDevice("d1")
	g.addDevice("d2")
	g.addDevice("nokey", noSealingKey())
	ctx := t.Context()

	// The client finds the issuer key the controller published.
	cm := &corev1.ConfigMap{}
	g.until(wait, func(ctx context.Context) (bool, string) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.sys, Name: wasmbedv1.IssuerConfigMap}, cm)
		return err == nil, fmt.Sprintf("issuer configmap: %v", err)
	})
	pub, err := issuer.ParsePublicData(cm.Data)
	if err != nil {
		t.Fatal(err)
	}
	app := tb.newApp("secret", nil, "d1", "d2", "nokey")
	if err := issuer.SealApplication(app, compute, pub.IssuerKey); err != nil {
		t.Fatal(err)
	}
	tb.create(app)

	g.until(wait, tb.phaseIs("secret", wasmbedv1.ApplicationPhaseRunning))
	for _, d := range []string{"d1", "d2"} {
		if !bytes.Equal(g.devices[d].modules["secret"], compute) {
			t.Errorf("%s: decrypted %d bytes, want the module", d, len(g.devices[d].modules["secret"]))
		}
	}
	got := tb.application(ctx, "secret")
	if u := got.Status.UntargetedDevices; len(u) != 1 || u[0].Device != "nokey" || u[0].Reason != wasmbedv1.ReasonNoSealingKey {
		t.Errorf("untargeted: got %+v, want nokey NoSealingKey", u)
	}

	// A copy of the sealed module in another Application does not open.
	thief := tb.newApp("thief", nil, "d1")
	thief.Spec.Confidential, thief.Spec.WasmBinary, thief.Spec.SealedModule = true, nil, app.Spec.SealedModule
	tb.create(thief)
	g.until(wait, tb.phaseIs("thief", wasmbedv1.ApplicationPhaseFailed))
	if c := condition(tb.application(ctx, "thief"), wasmbedv1.ConditionDegraded); c == nil || c.Reason != wasmbedv1.ReasonSealedModuleRefused {
		t.Errorf("copied sealed module: Degraded %+v, want SealedModuleRefused", c)
	}

	// No stored object holds the plaintext, raw or base64 encoded.
	needles := [][]byte{compute[100:164], []byte(base64.StdEncoding.EncodeToString(compute[99:150]))}
	if plain, _ := json.Marshal(tb.newApp("plain", compute)); !containsAny(plain, needles...) {
		t.Fatal("the search does not find the module in a plaintext Application")
	}
	lists := []client.ObjectList{&wasmbedv1.ApplicationList{}, &wasmbedv1.DeviceApplicationList{}, &wasmbedv1.DeviceList{},
		&corev1.ConfigMapList{}, &corev1.SecretList{}, &eventsv1.EventList{}}
	for _, ns := range []string{tb.ns, tb.sys} {
		for _, l := range lists {
			if err := env.Client.List(ctx, l, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			if containsAny(b, needles...) {
				t.Errorf("a %T in %s contains the plaintext module", l, ns)
			}
		}
	}
}
