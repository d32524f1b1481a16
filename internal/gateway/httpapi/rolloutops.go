package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// The data keys of the controller's payload ConfigMaps, which an undo reads
// the previous version from (internal/controller names them PayloadKey,
// WrappedKeyKey and IssuerKeyIDKey).
const (
	payloadKey     = "payload"
	wrappedKeyKey  = "wrappedKey"
	issuerKeyIDKey = "issuerKeyID"
)

// resumeRollout resumes a paused rollout, as the controller's Resume does:
// it sets the resume annotation to a time after the pause and after the
// last resume honoured, which the controller honours once.
func (a *api) resumeRollout(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	app, err := a.getApplication(c)
	if err != nil {
		return err
	}
	ro := app.Status.Rollout
	if ro == nil || !ro.Paused {
		return newProblem(http.StatusConflict, ProblemConflict, c.applicationName()+": the rollout is not paused")
	}
	at := a.opts.Clock.Now().UTC().Truncate(time.Second)
	for _, t := range []*metav1.Time{ro.PausedAt, ro.ResumedAt} {
		if t != nil && !at.After(t.Time) {
			at = t.Add(time.Second).UTC().Truncate(time.Second)
		}
	}
	patch := map[string]any{"metadata": map[string]any{
		"resourceVersion": app.ResourceVersion,
		"annotations":     map[string]string{wasmbedv1.AnnotationResume: at.Format(time.RFC3339)},
	}}
	return a.patchApplication(c, patch)
}

// undoRollout rolls an application back to the version before the current
// one, as the controller's Undo does: the spec's module (or sealed module),
// version and limits are rewritten from status.rollout.previous and its
// payload ConfigMap. The controller then rolls that version out.
func (a *api) undoRollout(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	app, err := a.getApplication(c)
	if err != nil {
		return err
	}
	ro := app.Status.Rollout
	if ro == nil || ro.Previous == nil {
		return newProblem(http.StatusConflict, ProblemConflict, c.applicationName()+": no previous version to roll back to")
	}
	prev := ro.Previous
	cm := &corev1.ConfigMap{}
	if err := a.opts.Writer.Get(c.r.Context(), types.NamespacedName{Namespace: c.namespace, Name: prev.Payload}, cm); err != nil {
		p := fromKubernetes(err, fmt.Sprintf("the payload of version %q", prev.Version))
		if p.Status == http.StatusNotFound {
			// The application exists; what is missing is the old version.
			p = newProblem(http.StatusConflict, ProblemConflict, p.Detail).withCause(err)
		}
		return p
	}
	payload := cm.BinaryData[payloadKey]
	if len(payload) == 0 {
		return internal(fmt.Errorf("payload configmap %s/%s has no %q", c.namespace, prev.Payload, payloadKey))
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
			IssuerKeyID: cm.Data[issuerKeyIDKey], WrappedKey: cm.BinaryData[wrappedKeyKey], Ciphertext: payload,
		}
	} else {
		spec["sealedModule"] = nil
		spec["wasmBinary"] = payload // []byte marshals as base64, as the CRD stores it
	}
	return a.patchApplication(c, map[string]any{
		"metadata": map[string]any{"resourceVersion": app.ResourceVersion},
		"spec":     spec,
	})
}

// patchApplication merge-patches the call's Application and answers it.
func (a *api) patchApplication(c *call, patch map[string]any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return internal(fmt.Errorf("encode patch: %w", err))
	}
	app := &wasmbedv1.Application{}
	app.Namespace, app.Name = c.namespace, c.name
	if err := a.opts.Writer.Patch(c.r.Context(), app, client.RawPatch(types.MergePatchType, body)); err != nil {
		return fromKubernetes(err, c.applicationName())
	}
	return c.writeJSON(http.StatusOK, a.applicationView(app))
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
