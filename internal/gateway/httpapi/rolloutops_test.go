package httpapi

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

func paused(pausedAt time.Time, resumedAt *time.Time) func(*wasmbedv1.Application) {
	return func(a *wasmbedv1.Application) {
		a.Status.Rollout = &wasmbedv1.RolloutStatus{Paused: true, PausedAt: &metav1.Time{Time: pausedAt}}
		if resumedAt != nil {
			a.Status.Rollout.ResumedAt = &metav1.Time{Time: *resumedAt}
		}
	}
}

func TestResumeRollout(t *testing.T) {
	earlier := t0.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		app  func(*wasmbedv1.Application)
		want time.Time
	}{
		// The request is the gateway's time...
		{"paused before now", paused(earlier, nil), t0},
		// ...or later than the pause and the last resume, whatever the clocks say.
		{"paused after now", paused(t0.Add(10*time.Second), nil), t0.Add(11 * time.Second)},
		{"resumed after now", paused(earlier, ptrTo(t0.Add(time.Minute))), t0.Add(time.Minute + time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, application("fleet", "blinky", tc.app))
			var app Application
			e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/resume", adminToken, nil, "").decode(t, http.StatusOK, &app)
			var stored wasmbedv1.Application
			if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); err != nil {
				t.Fatal(err)
			}
			got := stored.Annotations[wasmbedv1.AnnotationResume]
			if want := tc.want.UTC().Format(time.RFC3339); got != want || app.Annotations[wasmbedv1.AnnotationResume] != want {
				t.Errorf("resume annotation stored %q answered %q, want %q", got, app.Annotations[wasmbedv1.AnnotationResume], want)
			}
		})
	}
	t.Run("not paused", func(t *testing.T) {
		e := newTestEnv(t, application("fleet", "blinky"))
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/resume", adminToken, nil, "").wantProblem(t, http.StatusConflict, ProblemConflict)
		var stored wasmbedv1.Application
		if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); err != nil || stored.Annotations[wasmbedv1.AnnotationResume] != "" {
			t.Errorf("annotations %v, %v", stored.Annotations, err)
		}
	})
	t.Run("viewer", func(t *testing.T) {
		e := newTestEnv(t, application("fleet", "blinky", paused(earlier, nil)))
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/resume", viewerToken, nil, "").wantProblem(t, http.StatusForbidden, ProblemForbidden)
		asked := e.auth.lastAsked()
		if n := len(asked); n == 0 || asked[n-1].Verb != "update" || asked[n-1].Resource != "applications" || asked[n-1].Name != "blinky" {
			t.Errorf("authorised %+v", asked)
		}
	})
	t.Run("missing", func(t *testing.T) {
		e := newTestEnv(t)
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/resume", adminToken, nil, "").wantProblem(t, http.StatusNotFound, ProblemNotFound)
	})
}

func withPrevious(prev wasmbedv1.RevisionRecord) func(*wasmbedv1.Application) {
	return func(a *wasmbedv1.Application) {
		a.Spec.Version = "2.0"
		a.Spec.Config = wasmbedv1.ApplicationConfig{MemoryLimit: 131072, ExecutionTimeout: "5s", MaxStackSize: 8192}
		a.Status.Rollout = &wasmbedv1.RolloutStatus{Previous: &prev}
	}
}

func TestUndoRollout(t *testing.T) {
	oldModule := append(append([]byte(nil), wasmHeader...), 0x00, 0x01)
	payload := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "blinky-module-old"},
		BinaryData: map[string][]byte{payloadKey: oldModule}}
	prev := wasmbedv1.RevisionRecord{Revision: "abc", Version: "1.0", Payload: payload.Name,
		Config: wasmbedv1.ApplicationConfig{MemoryLimit: 65536}}

	t.Run("plain", func(t *testing.T) {
		e := newTestEnv(t, application("fleet", "blinky", withPrevious(prev)), payload)
		var app Application
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/undo", adminToken, "{}", "application/json").decode(t, http.StatusOK, &app)
		var stored wasmbedv1.Application
		if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stored.Spec.WasmBinary, oldModule) || stored.Spec.Version != "1.0" ||
			stored.Spec.Config != prev.Config || stored.Spec.SealedModule != nil || stored.Spec.Confidential {
			t.Errorf("stored spec: module %d bytes, version %q, config %+v, sealed %v", len(stored.Spec.WasmBinary),
				stored.Spec.Version, stored.Spec.Config, stored.Spec.SealedModule)
		}
		if app.Spec.Module.Size != len(oldModule) || app.Spec.Version != "1.0" {
			t.Errorf("answer: module %+v version %q", app.Spec.Module, app.Spec.Version)
		}
	})
	t.Run("confidential", func(t *testing.T) {
		sealed := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "fleet", Name: "blinky-sealed-old"},
			Data:       map[string]string{issuerKeyIDKey: "0123456789abcdef"},
			BinaryData: map[string][]byte{payloadKey: []byte("ciphertext"), wrappedKeyKey: []byte("wrapped")}}
		p := prev
		p.Payload, p.Confidential = sealed.Name, true
		e := newTestEnv(t, application("fleet", "blinky", withPrevious(p)), sealed)
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/undo", adminToken, nil, "").decode(t, http.StatusOK, &Application{})
		var stored wasmbedv1.Application
		if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); err != nil {
			t.Fatal(err)
		}
		sm := stored.Spec.SealedModule
		if stored.Spec.WasmBinary != nil || !stored.Spec.Confidential || sm == nil || string(sm.Ciphertext) != "ciphertext" ||
			string(sm.WrappedKey) != "wrapped" || sm.IssuerKeyID != "0123456789abcdef" {
			t.Errorf("stored spec: module %d bytes, confidential %v, sealed %+v", len(stored.Spec.WasmBinary), stored.Spec.Confidential, sm)
		}
	})
	t.Run("no previous version", func(t *testing.T) {
		e := newTestEnv(t, application("fleet", "blinky"), payload)
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/undo", adminToken, nil, "").wantProblem(t, http.StatusConflict, ProblemConflict)
	})
	t.Run("payload gone", func(t *testing.T) {
		e := newTestEnv(t, application("fleet", "blinky", withPrevious(prev)))
		p := e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/undo", adminToken, nil, "").wantProblem(t, http.StatusConflict, ProblemConflict)
		var stored wasmbedv1.Application
		if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); err != nil || stored.Spec.Version != "2.0" {
			t.Errorf("after a refused undo: version %q, %v (%s)", stored.Spec.Version, err, p.Detail)
		}
	})
	t.Run("viewer", func(t *testing.T) {
		e := newTestEnv(t, application("fleet", "blinky", withPrevious(prev)), payload)
		e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/rollout/undo", viewerToken, nil, "").wantProblem(t, http.StatusForbidden, ProblemForbidden)
	})
}

func ptrTo[T any](v T) *T { return &v }
