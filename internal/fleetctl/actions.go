package fleetctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Errors callers branch on: each is a state the object is in, not a fault.
var (
	// ErrNotPaused reports a resume of a rollout that is not paused.
	ErrNotPaused = errors.New("the rollout is not paused")
	// ErrNoPreviousVersion reports an undo with no version to go back to.
	ErrNoPreviousVersion = errors.New("no previous version to roll back to")
	// ErrPreviousVersionGone reports an undo whose previous version's
	// payload ConfigMap no longer exists.
	ErrPreviousVersionGone = errors.New("the previous version's module is gone")
)

// The data keys of the controller's payload ConfigMaps, which an undo reads
// the previous version from; internal/controller writes them under the same
// names.
const (
	// PayloadKey holds the module, or a confidential module's ciphertext.
	PayloadKey = "payload"
	// WrappedKeyKey holds a confidential module's wrapped content key.
	WrappedKeyKey = "wrappedKey"
	// IssuerKeyIDKey holds the id of the issuer key it is wrapped to.
	IssuerKeyIDKey = "issuerKeyID"
)

// SetRunState starts (running) or stops (stopped) the Application key on
// all its targets. It returns the Application as stored.
func SetRunState(ctx context.Context, c client.Client, key types.NamespacedName, state wasmbedv1.RunState) (*wasmbedv1.Application, error) {
	if state != wasmbedv1.RunStateRunning && state != wasmbedv1.RunStateStopped {
		return nil, &InvalidError{What: "run state", Fields: []FieldError{{Field: "state", Detail: fmt.Sprintf("unsupported value %q", state)}}}
	}
	app := &wasmbedv1.Application{}
	app.Namespace, app.Name = key.Namespace, key.Name
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"state":%q}}`, state))
	if err := c.Patch(ctx, app, patch); err != nil {
		return nil, fmt.Errorf("set application %s to %s: %w", key, state, err)
	}
	return app, nil
}

// DeleteApplication deletes the Application key; Kubernetes then deletes
// its DeviceApplications, and each device removes it.
func DeleteApplication(ctx context.Context, c client.Client, key types.NamespacedName) error {
	app := &wasmbedv1.Application{}
	app.Namespace, app.Name = key.Namespace, key.Name
	if err := c.Delete(ctx, app, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		return fmt.Errorf("delete application %s: %w", key, err)
	}
	return nil
}

// RevokeDevice sets the Device key's spec.revoked: the gateway holding its
// session closes it, and its certificates are refused from then on. It
// returns the Device as stored.
func RevokeDevice(ctx context.Context, c client.Client, key types.NamespacedName) (*wasmbedv1.Device, error) {
	d := &wasmbedv1.Device{}
	d.Namespace, d.Name = key.Namespace, key.Name
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"revoked":true}}`))
	if err := c.Patch(ctx, d, patch); err != nil {
		return nil, fmt.Errorf("revoke device %s: %w", key, err)
	}
	return d, nil
}

// Resume resumes the paused rollout of the Application key: it sets the
// resume annotation to a time after the pause and after the last resume
// honoured (now, unless a clock behind the controller's makes that look
// older), which the controller honours once. The failure threshold then
// applies to the deliveries after the resume. It returns ErrNotPaused when
// the rollout is not paused, and the Application as stored.
func Resume(ctx context.Context, c client.Client, key types.NamespacedName, now time.Time) (*wasmbedv1.Application, error) {
	var app *wasmbedv1.Application
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		app = &wasmbedv1.Application{}
		if err := c.Get(ctx, key, app); err != nil {
			return err
		}
		ro := app.Status.Rollout
		if ro == nil || !ro.Paused {
			return ErrNotPaused
		}
		at := now.UTC().Truncate(time.Second)
		for _, t := range []*metav1.Time{ro.PausedAt, ro.ResumedAt} {
			if t != nil && !at.After(t.Time) {
				at = t.Add(time.Second).UTC().Truncate(time.Second)
			}
		}
		return patchApplication(ctx, c, app, map[string]any{"metadata": map[string]any{
			"resourceVersion": app.ResourceVersion,
			"annotations":     map[string]string{wasmbedv1.AnnotationResume: at.Format(time.RFC3339)},
		}})
	})
	if err != nil {
		return nil, fmt.Errorf("resume application %s: %w", key, err)
	}
	return app, nil
}

// Undo rolls the Application key back to the version before the current
// one, as `kubectl rollout undo` does for a Deployment: the spec's module
// (or sealed module), version and limits are rewritten from
// status.rollout.previous and its payload ConfigMap; targets, run state and
// strategy are kept. The controller then rolls that version out like any
// other. It returns ErrNoPreviousVersion or ErrPreviousVersionGone when there
// is nothing to go back to, and the Application as stored.
func Undo(ctx context.Context, c client.Client, key types.NamespacedName) (*wasmbedv1.Application, error) {
	var app *wasmbedv1.Application
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		app = &wasmbedv1.Application{}
		if err := c.Get(ctx, key, app); err != nil {
			return err
		}
		ro := app.Status.Rollout
		if ro == nil || ro.Previous == nil {
			return ErrNoPreviousVersion
		}
		prev := ro.Previous
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: prev.Payload}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("%w: version %q: %w", ErrPreviousVersionGone, prev.Version, err)
			}
			return fmt.Errorf("payload of version %q: %w", prev.Version, err)
		}
		payload := cm.BinaryData[PayloadKey]
		if len(payload) == 0 {
			return fmt.Errorf("payload configmap %s/%s has no %q", key.Namespace, prev.Payload, PayloadKey)
		}
		spec := map[string]any{
			"confidential": prev.Confidential,
			"version":      nilIfEmpty(prev.Version),
			"config": map[string]any{
				"memoryLimit":      nilIfZero(prev.Config.MemoryLimit),
				"executionTimeout": nilIfEmpty(prev.Config.ExecutionTimeout),
				"maxStackSize":     nilIfZero(prev.Config.MaxStackSize),
			},
		}
		if prev.Confidential {
			spec["wasmBinary"] = nil
			spec["sealedModule"] = wasmbedv1.SealedModule{
				IssuerKeyID: cm.Data[IssuerKeyIDKey], WrappedKey: cm.BinaryData[WrappedKeyKey], Ciphertext: payload,
			}
		} else {
			spec["sealedModule"] = nil
			spec["wasmBinary"] = payload // []byte marshals as base64, as the CRD stores it
		}
		return patchApplication(ctx, c, app, map[string]any{
			"metadata": map[string]any{"resourceVersion": app.ResourceVersion},
			"spec":     spec,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("undo application %s: %w", key, err)
	}
	return app, nil
}

// patchApplication merge-patches app; the patch names the resourceVersion
// it was computed from, so a concurrent change is a conflict.
func patchApplication(ctx context.Context, c client.Client, app *wasmbedv1.Application, patch map[string]any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("encode patch: %w", err)
	}
	return c.Patch(ctx, app, client.RawPatch(types.MergePatchType, body))
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nilIfZero(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}
