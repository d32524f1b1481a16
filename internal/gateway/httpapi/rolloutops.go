package httpapi

import (
	"errors"
	"net/http"

	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

// The data keys of the controller's payload ConfigMaps, which an undo reads
// the previous version from.
const (
	payloadKey     = fleetctl.PayloadKey
	wrappedKeyKey  = fleetctl.WrappedKeyKey
	issuerKeyIDKey = fleetctl.IssuerKeyIDKey
)

// resumeRollout resumes a paused rollout (fleetctl.Resume): it sets the
// resume annotation to a time after the pause and after the last resume
// honoured, which the controller honours once.
func (a *api) resumeRollout(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	app, err := fleetctl.Resume(c.r.Context(), a.opts.Writer, c.key(), a.opts.Clock.Now())
	if errors.Is(err, fleetctl.ErrNotPaused) {
		return newProblem(http.StatusConflict, ProblemConflict, c.applicationName()+": the rollout is not paused")
	}
	if err != nil {
		return fromKubernetes(err, c.applicationName())
	}
	return c.writeJSON(http.StatusOK, a.applicationView(app))
}

// undoRollout rolls an application back to the version before the current
// one (fleetctl.Undo): the spec's module (or sealed module), version and
// limits are rewritten from status.rollout.previous and its payload
// ConfigMap. The controller then rolls that version out.
func (a *api) undoRollout(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	app, err := fleetctl.Undo(c.r.Context(), a.opts.Writer, c.key())
	switch {
	case errors.Is(err, fleetctl.ErrNoPreviousVersion):
		return newProblem(http.StatusConflict, ProblemConflict, c.applicationName()+": no previous version to roll back to")
	case errors.Is(err, fleetctl.ErrPreviousVersionGone):
		// The application exists; what is missing is the old version.
		return newProblem(http.StatusConflict, ProblemConflict, c.applicationName()+": the previous version's module is gone").withCause(err)
	case err != nil:
		return fromKubernetes(err, c.applicationName())
	}
	return c.writeJSON(http.StatusOK, a.applicationView(app))
}
