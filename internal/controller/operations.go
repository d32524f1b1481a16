package controller

import (
	"context"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

// Errors of the rollout operations.
var (
	// ErrNotPaused reports a resume of a rollout that is not paused.
	ErrNotPaused = fleetctl.ErrNotPaused
	// ErrNoPreviousVersion reports an undo with no version to go back to.
	ErrNoPreviousVersion = fleetctl.ErrNoPreviousVersion
)

// Resume resumes the paused rollout of the Application key: it sets the
// resume annotation to a time after the pause, which the controller honours
// once. The failure threshold then applies to the deliveries after the
// resume. See fleetctl.Resume.
func Resume(ctx context.Context, c client.Client, key client.ObjectKey, now time.Time) error {
	_, err := fleetctl.Resume(ctx, c, key, now)
	return err
}

// Undo rolls the Application key back to its previous version, as
// `kubectl rollout undo` does for a Deployment: it rewrites the spec's
// module (or sealed module), version and limits from the previous version's
// record and payload ConfigMap. The controller then rolls that version out
// like any other, with new sequences, within the strategy; the targets, run
// state and strategy are kept. See fleetctl.Undo.
func Undo(ctx context.Context, c client.Client, key client.ObjectKey) error {
	_, err := fleetctl.Undo(ctx, c, key)
	return err
}
