package controller

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Data keys of a payload ConfigMap.
const (
	// PayloadKey holds, in binaryData, the bytes devices receive: the
	// module, or a confidential module's ciphertext.
	PayloadKey = fleetctl.PayloadKey
	// WrappedKeyKey holds, in binaryData, a confidential module's content
	// key wrapped to the issuer key, for a rollback to re-create the
	// Application's sealedModule.
	WrappedKeyKey = fleetctl.WrappedKeyKey
	// IssuerKeyIDKey holds, in data, the id of that issuer key.
	IssuerKeyIDKey = fleetctl.IssuerKeyIDKey
)

// version is an Application version prepared for issuing: the payload hashed
// and checked once, kept for the reconciles that roll it out.
type version struct {
	record  wasmbedv1.RevisionRecord
	label   string // the version devices report
	payload []byte // module or ciphertext
	sha256  string // of payload, hex
	content *artifact.Content
	limits  sandbox.Limits
	verdict modcheck.Verdict
	sealed  *wasmbedv1.SealedModule
}

// refusal is a spec that cannot be rolled out, whatever is retried.
type refusal struct {
	reason, message string
}

func (r *refusal) Error() string { return r.reason + ": " + r.message }

// revisionOf identifies what a version delivers: the payload, the name
// devices know it by, the version label, the limits and the confidentiality.
func revisionOf(payloadSHA [32]byte, spec *wasmbedv1.ApplicationSpec) string {
	h := sha256.New()
	h.Write([]byte("wasmbed/revision/v1\x00"))
	h.Write(payloadSHA[:])
	for _, s := range []string{spec.Name, spec.Version, spec.Config.ExecutionTimeout} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s)))) //nolint:gosec // bounded by the API
		h.Write([]byte(s))
	}
	var b []byte
	b = binary.BigEndian.AppendUint64(b, uint64(spec.Config.MemoryLimit))  //nolint:gosec // validated non-negative
	b = binary.BigEndian.AppendUint64(b, uint64(spec.Config.MaxStackSize)) //nolint:gosec // validated non-negative
	if spec.Confidential {
		b = append(b, 1)
	}
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// limitsOf converts an Application's config to artifact limits.
func limitsOf(cfg wasmbedv1.ApplicationConfig) (sandbox.Limits, error) {
	timeout := 30 * time.Second
	if cfg.ExecutionTimeout != "" {
		d, err := time.ParseDuration(cfg.ExecutionTimeout)
		if err != nil || d < time.Millisecond {
			return sandbox.Limits{}, fmt.Errorf("executionTimeout %q: want a duration of at least 1ms", cfg.ExecutionTimeout)
		}
		timeout = d
	}
	mem, stack := cfg.MemoryLimit, cfg.MaxStackSize
	if mem <= 0 {
		mem = 64 << 10
	}
	if stack <= 0 {
		stack = 4 << 10
	}
	return sandbox.Limits{MemoryLimit: uint64(mem), ExecutionTimeout: timeout, MaxStackSize: uint64(stack)}, nil
}

// prepare builds the version an Application's spec describes: it opens a
// sealed module with the issuer key, hashes the payload and asks admission
// whether the module is valid and which boards it fits. A *refusal error is
// terminal; any other error is worth retrying.
func (r *ApplicationReconciler) prepare(ctx context.Context, app *wasmbedv1.Application) (*version, error) {
	spec := &app.Spec
	switch {
	case len(spec.WasmBinary) > 0 && spec.SealedModule != nil:
		return nil, &refusal{wasmbedv1.ReasonInvalidModule, "the spec has both wasmBinary and sealedModule; set one"}
	case len(spec.WasmBinary) == 0 && spec.SealedModule == nil:
		return nil, &refusal{wasmbedv1.ReasonInvalidModule, "the spec has neither wasmBinary nor sealedModule"}
	}
	limits, err := limitsOf(spec.Config)
	if err != nil {
		return nil, &refusal{wasmbedv1.ReasonInvalidModule, err.Error()}
	}
	v := &version{limits: limits}
	var module []byte
	if spec.SealedModule != nil {
		key, err := r.Keys.IssuerKey(ctx)
		if err != nil {
			return nil, fmt.Errorf("issuer key: %w", err)
		}
		if v.content, module, err = issuer.OpenSealedModule(app, key); err != nil {
			return nil, &refusal{wasmbedv1.ReasonSealedModuleRefused, err.Error()}
		}
		v.payload, v.sealed = spec.SealedModule.Ciphertext, spec.SealedModule
		defer clear(module)
	} else {
		module = spec.WasmBinary
		if v.content, err = artifact.NewContent(module); err != nil {
			return nil, &refusal{wasmbedv1.ReasonInvalidModule, err.Error()}
		}
		v.payload = module
	}
	sum := v.content.PayloadHash()
	v.sha256 = hex.EncodeToString(sum[:])
	rev := revisionOf(sum, spec)
	v.label = spec.Version
	if v.label == "" {
		v.label = "rev-" + rev[:12]
	}
	v.record = wasmbedv1.RevisionRecord{
		Revision: rev, Version: spec.Version, Payload: payloadName(app.Name, v.sha256),
		Config: spec.Config, Confidential: spec.SealedModule != nil,
	}
	v.verdict, err = r.Admission.Check(ctx, modcheck.Request{
		App: spec.Name, Module: module, Profiles: profile.Names(),
		Limits: modcheck.Limits{MemoryLimit: limits.MemoryLimit, ExecutionTimeout: limits.ExecutionTimeout, MaxStackSize: limits.MaxStackSize},
	})
	if err != nil {
		return nil, fmt.Errorf("module check: %w", err)
	}
	if inv := v.verdict.Invalid; inv != nil {
		return nil, &refusal{wasmbedv1.ReasonInvalidModule, inv.Reason + ": " + inv.Message}
	}
	return v, nil
}

// payloadName is the name of a version's payload ConfigMap:
// <application>-module-<first 12 hex digits of the payload's SHA-256>.
func payloadName(app, sha string) string {
	suffix := "-module-" + sha[:12]
	if room := wasmbedv1.MaxObjectNameLength - len(suffix); len(app) > room {
		app = strings.TrimRight(app[:room], "-.")
	}
	return app + suffix
}

// ensurePayload creates the version's immutable payload ConfigMap, owned by
// the Application, unless it exists.
func (r *ApplicationReconciler) ensurePayload(ctx context.Context, app *wasmbedv1.Application, v *version) error {
	key := app.Namespace + "/" + v.record.Payload
	if _, ok := r.payloads.Load(key); ok {
		return nil
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: app.Namespace, Name: v.record.Payload,
			Labels: map[string]string{
				wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app.Name),
				wasmbedv1.LabelComponent:   wasmbedv1.ComponentController,
			},
		},
		Immutable:  ptr.To(true),
		BinaryData: map[string][]byte{PayloadKey: v.payload},
	}
	if v.sealed != nil {
		cm.BinaryData[WrappedKeyKey] = v.sealed.WrappedKey
		cm.Data = map[string]string{IssuerKeyIDKey: v.sealed.IssuerKeyID}
	}
	if err := controllerutil.SetControllerReference(app, cm, r.Scheme); err != nil {
		return err
	}
	if err := r.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create payload configmap %s: %w", key, err)
	}
	r.payloads.Store(key, struct{}{})
	return nil
}

// collectPayloads deletes the payload ConfigMaps of app that neither the
// current nor the previous version uses, nor any DeviceApplication names.
func (r *ApplicationReconciler) collectPayloads(ctx context.Context, app *wasmbedv1.Application, keep map[string]bool) error {
	list := &corev1.ConfigMapList{}
	if err := r.APIReader.List(ctx, list, client.InNamespace(app.Namespace), client.MatchingLabels{
		wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app.Name),
		wasmbedv1.LabelComponent:   wasmbedv1.ComponentController,
	}); err != nil {
		return fmt.Errorf("list payload configmaps: %w", err)
	}
	var errs []error
	for i := range list.Items {
		cm := &list.Items[i]
		if keep[cm.Name] || !metav1.IsControlledBy(cm, app) {
			continue
		}
		if err := r.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		r.payloads.Delete(app.Namespace + "/" + cm.Name)
	}
	return errors.Join(errs...)
}
