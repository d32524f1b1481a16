package v1_test

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fixture"
)

func TestApplicationCRUDAndDefaults(t *testing.T) {
	ctx := t.Context()
	ns := env.Namespace(t)
	app := fixture.Application("blinky", fixture.InNamespace(ns), fixture.Targeting("d1", "d2"))
	if err := env.Client.Create(ctx, app); err != nil {
		t.Fatalf("create: %v", err)
	}
	got := &wasmbedv1.Application{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(app), got); err != nil {
		t.Fatalf("get: %v", err)
	}
	want := wasmbedv1.ApplicationConfig{MemoryLimit: 65536, ExecutionTimeout: "30s", MaxStackSize: 4096}
	if got.Spec.Config != want {
		t.Errorf("defaulted config: got %+v, want %+v", got.Spec.Config, want)
	}
	if s := got.Spec.Strategy; s.MaxUpdating == nil || s.MaxUpdating.String() != wasmbedv1.DefaultMaxUpdating ||
		s.FailureThreshold == nil || *s.FailureThreshold != wasmbedv1.DefaultFailureThreshold {
		t.Errorf("defaulted strategy: got %+v, want maxUpdating %s and failureThreshold %d", s, wasmbedv1.DefaultMaxUpdating, wasmbedv1.DefaultFailureThreshold)
	}
	if got.Spec.State != wasmbedv1.RunStateRunning {
		t.Errorf("defaulted state: got %q, want %q", got.Spec.State, wasmbedv1.RunStateRunning)
	}
	if string(got.Spec.WasmBinary) != string(fixture.MinimalModule) {
		t.Errorf("wasmBinary round trip: got %x, want %x", got.Spec.WasmBinary, fixture.MinimalModule)
	}

	got.Spec.State = wasmbedv1.RunStateStopped
	got.Spec.Config.ExecutionTimeout = "1m30s"
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatalf("update: %v", err)
	}
	if got.Generation != 2 {
		t.Errorf("generation after spec update: got %d, want 2", got.Generation)
	}

	got.Status = wasmbedv1.ApplicationStatus{
		Phase:              wasmbedv1.ApplicationPhaseStopped,
		TargetCount:        2,
		UpdatedCount:       1,
		FailedCount:        1,
		ObservedGeneration: got.Generation,
		FailingDevices: []wasmbedv1.FailingDevice{
			{Device: "d2", Phase: wasmbedv1.DeviceApplicationPhaseRefused, Reason: "DoesNotFit", Message: "module budget exceeded"},
		},
		Conditions: []metav1.Condition{{
			Type: wasmbedv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "DeviceNotFound",
			Message: "1 of 2 targets missing", LastTransitionTime: metav1.Now(), ObservedGeneration: got.Generation,
		}},
	}
	if err := env.Client.Status().Update(ctx, got); err != nil {
		t.Fatalf("status update: %v", err)
	}

	list := &wasmbedv1.ApplicationList{}
	if err := env.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("list: got %d applications, want 1", len(list.Items))
	}
	st := list.Items[0].Status
	if st.Phase != wasmbedv1.ApplicationPhaseStopped || st.UpdatedCount != 1 || len(st.FailingDevices) != 1 || st.FailingDevices[0].Reason != "DoesNotFit" {
		t.Errorf("status after list: got %+v", st)
	}

	if err := env.Client.Delete(ctx, got); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(app), &wasmbedv1.Application{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get after delete: got %v, want NotFound", err)
	}
}

func TestApplicationSelectorInsteadOfTargets(t *testing.T) {
	ns := env.Namespace(t)
	app := fixture.Application("fleet", fixture.InNamespace(ns), fixture.Targeting())
	app.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"site": "plant-1"}}
	if err := env.Client.Create(t.Context(), app); err != nil {
		t.Fatalf("create with selector only: %v", err)
	}
}

func TestApplicationValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*wasmbedv1.Application)
		wantMsg string
	}{
		{
			name:    "negative memory limit",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Config.MemoryLimit = -1 },
			wantMsg: "spec.config.memoryLimit: Invalid value: -1: spec.config.memoryLimit in body should be greater than or equal to 0",
		},
		{
			name:    "negative stack size",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Config.MaxStackSize = -4096 },
			wantMsg: "spec.config.maxStackSize",
		},
		{
			name:    "malformed execution timeout",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Config.ExecutionTimeout = "thirty seconds" },
			wantMsg: `spec.config.executionTimeout: Invalid value: "thirty seconds"`,
		},
		{
			name:    "zero execution timeout",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Config.ExecutionTimeout = "0s" },
			wantMsg: "executionTimeout must be more than 0s and at most 1h",
		},
		{
			name:    "execution timeout over an hour",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Config.ExecutionTimeout = "2h" },
			wantMsg: "executionTimeout must be more than 0s and at most 1h",
		},
		{
			name: "sealed module not marked confidential",
			mutate: func(a *wasmbedv1.Application) {
				a.Spec.WasmBinary = nil
				a.Spec.SealedModule = validSealedModule()
			},
			wantMsg: "confidential applications carry a sealedModule and no wasmBinary",
		},
		{
			name:    "confidential with a plaintext module",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Confidential = true },
			wantMsg: "confidential applications carry a sealedModule and no wasmBinary",
		},
		{
			name: "sealed module with a short wrapped key",
			mutate: func(a *wasmbedv1.Application) {
				a.Spec.WasmBinary = nil
				a.Spec.Confidential = true
				a.Spec.SealedModule = validSealedModule()
				a.Spec.SealedModule.WrappedKey = a.Spec.SealedModule.WrappedKey[:40]
			},
			wantMsg: "spec.sealedModule.wrappedKey",
		},
		{
			name: "max updating zero",
			mutate: func(a *wasmbedv1.Application) {
				v := intstr.FromInt32(0)
				a.Spec.Strategy.MaxUpdating = &v
			},
			wantMsg: "maxUpdating must be a count of at least 1 or a percentage from 1% to 100%",
		},
		{
			name: "max updating not a percentage",
			mutate: func(a *wasmbedv1.Application) {
				v := intstr.FromString("half")
				a.Spec.Strategy.MaxUpdating = &v
			},
			wantMsg: "maxUpdating must be a count of at least 1 or a percentage from 1% to 100%",
		},
		{
			name: "max updating above 100%",
			mutate: func(a *wasmbedv1.Application) {
				v := intstr.FromString("101%")
				a.Spec.Strategy.MaxUpdating = &v
			},
			wantMsg: "maxUpdating must be a count of at least 1 or a percentage from 1% to 100%",
		},
		{
			name: "failure threshold above 100",
			mutate: func(a *wasmbedv1.Application) {
				v := int32(101)
				a.Spec.Strategy.FailureThreshold = &v
			},
			wantMsg: "spec.strategy.failureThreshold",
		},
		{
			name:    "unknown device type",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.DeviceTypes = []wasmbedv1.DeviceType{"arduino"} },
			wantMsg: `Unsupported value: "arduino"`,
		},
		{
			name:    "wasm binary without magic bytes",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.WasmBinary = []byte("#!/bin/sh\necho hello\n") },
			wantMsg: "spec.wasmBinary in body should match '^AGFzbQEAAAA'",
		},
		{
			name:    "wasm binary of another binary version",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.WasmBinary = []byte{0, 'a', 's', 'm', 2, 0, 0, 0, 0} },
			wantMsg: "spec.wasmBinary in body should match",
		},
		{
			name: "no targets and no selector",
			mutate: func(a *wasmbedv1.Application) {
				a.Spec.TargetDevices = nil
			},
			wantMsg: "one of targetDevices or selector is required",
		},
		{
			name:    "unknown run state",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.State = "paused" },
			wantMsg: `spec.state: Unsupported value: "paused"`,
		},
		{
			name:    "application name not a DNS label",
			mutate:  func(a *wasmbedv1.Application) { a.Spec.Name = "Blinky_App" },
			wantMsg: "spec.name",
		},
	}
	ns := env.Namespace(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := fixture.Application("invalid-"+string(rune('a'+i)), fixture.InNamespace(ns))
			tt.mutate(app)
			err := env.Client.Create(t.Context(), app)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: got %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("create: got %q, want it to mention %q", err.Error(), tt.wantMsg)
			}
		})
	}
}

// validSealedModule returns a SealedModule of the right shape; its bytes are
// not a real encryption.
func validSealedModule() *wasmbedv1.SealedModule {
	return &wasmbedv1.SealedModule{
		IssuerKeyID: "0123456789abcdef",
		WrappedKey:  make([]byte, 82),
		Ciphertext:  make([]byte, 64),
	}
}

func TestApplicationConfidentialAndStrategy(t *testing.T) {
	ns := env.Namespace(t)
	app := fixture.Application("sealed", fixture.InNamespace(ns))
	app.Spec.WasmBinary = nil
	app.Spec.Confidential = true
	app.Spec.SealedModule = validSealedModule()
	count := intstr.FromInt32(3)
	app.Spec.Strategy.MaxUpdating = &count
	if err := env.Client.Create(t.Context(), app); err != nil {
		t.Fatalf("create confidential application: %v", err)
	}
	got := &wasmbedv1.Application{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(app), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Strategy.MaxUpdating.IntValue() != 3 || *got.Spec.Strategy.FailureThreshold != wasmbedv1.DefaultFailureThreshold {
		t.Errorf("strategy: got %+v, want maxUpdating 3 and the default threshold", got.Spec.Strategy)
	}
	if len(got.Spec.SealedModule.WrappedKey) != 82 {
		t.Errorf("wrapped key round trip: got %d bytes, want 82", len(got.Spec.SealedModule.WrappedKey))
	}
}
