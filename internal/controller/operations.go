package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Errors of the rollout operations.
var (
	// ErrNotPaused reports a resume of a rollout that is not paused.
	ErrNotPaused = errors.New("the rollout is not paused")
	// ErrNoPreviousVersion reports an undo with no version to go back to.
	ErrNoPreviousVersion = errors.New("no previous version to roll back to")
)

// Resume resumes the paused rollout of the Application key: it sets the
// resume annotation to a time after the pause, which the controller honours
// once. The failure threshold then applies to the deliveries after the
// resume.
func Resume(ctx context.Context, c client.Client, key client.ObjectKey, now time.Time) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		app := &wasmbedv1.Application{}
		if err := c.Get(ctx, key, app); err != nil {
			return err
		}
		ro := app.Status.Rollout
		if ro == nil || !ro.Paused {
			return fmt.Errorf("resume %s: %w", key, ErrNotPaused)
		}
		at := now.UTC().Truncate(time.Second)
		// The controller honours a request later than the pause and than
		// the last request it honoured; a client clock behind the
		// controller's must not make the request look older.
		for _, t := range []*metav1.Time{ro.PausedAt, ro.ResumedAt} {
			if t != nil && !at.After(t.Time) {
				at = t.Add(time.Second).UTC().Truncate(time.Second)
			}
		}
		if app.Annotations == nil {
			app.Annotations = map[string]string{}
		}
		app.Annotations[wasmbedv1.AnnotationResume] = at.Format(time.RFC3339)
		return c.Update(ctx, app)
	})
}

// Undo rolls the Application key back to its previous version, as
// `kubectl rollout undo` does for a Deployment: it rewrites the spec's
// module (or sealed module), version and limits from the previous version's
// record and payload ConfigMap. The controller then rolls that version out
// like any other, with new sequences, within the strategy; the targets, run
// state and strategy are kept.
func Undo(ctx context.Context, c client.Client, key client.ObjectKey) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		app := &wasmbedv1.Application{}
		if err := c.Get(ctx, key, app); err != nil {
			return err
		}
		ro := app.Status.Rollout
		if ro == nil || ro.Previous == nil {
			return fmt.Errorf("undo %s: %w", key, ErrNoPreviousVersion)
		}
		prev := ro.Previous
		cm := &corev1.ConfigMap{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: prev.Payload}, cm); err != nil {
			return fmt.Errorf("undo %s: payload of version %q: %w", key, prev.Version, err)
		}
		payload := cm.BinaryData[PayloadKey]
		if len(payload) == 0 {
			return fmt.Errorf("undo %s: payload configmap %s has no %q", key, prev.Payload, PayloadKey)
		}
		if prev.Confidential {
			app.Spec.WasmBinary = nil
			app.Spec.SealedModule = &wasmbedv1.SealedModule{
				IssuerKeyID: cm.Data[IssuerKeyIDKey], WrappedKey: cm.BinaryData[WrappedKeyKey], Ciphertext: payload,
			}
		} else {
			app.Spec.SealedModule = nil
			app.Spec.WasmBinary = payload
		}
		app.Spec.Confidential = prev.Confidential
		app.Spec.Version = prev.Version
		app.Spec.Config = prev.Config
		return c.Update(ctx, app)
	})
}
