package fleetctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Bounds of a deploy, matching what the Application CRD accepts.
const (
	// MaxModuleSize is the largest WebAssembly module a deploy accepts, in
	// bytes: 768 KiB, whose base64 form (1 MiB) is the most an
	// Application's spec.wasmBinary holds.
	MaxModuleSize = 768 << 10
	// MaxMemoryLimit is the largest config.memoryLimit, in bytes.
	MaxMemoryLimit = 256 << 20
	// MaxStackSize is the largest config.maxStackSize, in bytes.
	MaxStackSize = 16 << 20
	// MaxTimeout is the longest config.executionTimeout.
	MaxTimeout = time.Hour
	// MaxVersionLength is the longest version label.
	MaxVersionLength = 64
	// MaxTargets is the most devices a deploy names; larger fleets are
	// selected by label.
	MaxTargets = 1000
)

// AnnotationCreatedBy records, on an Application deployed through the HTTP
// API or the command line, who deployed it when Kubernetes sees another
// identity (the gateway's) create it.
const AnnotationCreatedBy = "wasmbed.github.io/created-by"

// wasmHeader is the WebAssembly magic and binary version 1.
var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// timeoutPattern is the CRD's pattern of an execution timeout.
var timeoutPattern = regexp.MustCompile(`^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$`)

// FieldError is one invalid field of a request.
type FieldError struct {
	// Field is the field's path, e.g. "config.memoryLimit".
	Field string
	// Detail says what is wrong with it.
	Detail string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Detail }

// InvalidError reports a request with invalid fields; nothing was written.
type InvalidError struct {
	// What names the request, e.g. "deploy".
	What string
	// Fields are the invalid fields, at least one.
	Fields []FieldError
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	return "invalid " + e.What + ": " + strings.Join(parts, "; ")
}

// Deploy describes an Application to create from a module.
type Deploy struct {
	// Name names the Application and is the name devices know it by (a
	// DNS label).
	Name string
	// Version labels the module (at most MaxVersionLength characters).
	Version string
	// Module is the WebAssembly module, at most MaxModuleSize bytes.
	Module []byte
	// TargetDevices names Devices in the namespace to run on.
	TargetDevices []string
	// Selector selects Devices by label; at least one of TargetDevices and
	// Selector is required.
	Selector *metav1.LabelSelector
	// Config holds the sandbox limits; omitted fields take the defaults.
	Config *wasmbedv1.ApplicationConfig
	// State is the desired run state, running (default) or stopped.
	State wasmbedv1.RunState
	// Labels are set on the Application.
	Labels map[string]string
	// CreatedBy, when set, is recorded in AnnotationCreatedBy.
	CreatedBy string
}

// Validate checks d against the Application's rules, so that most mistakes
// are reported with their fields before Kubernetes is asked. It returns the
// invalid fields, none when d is valid.
func (d *Deploy) Validate() []FieldError {
	var errs []FieldError
	bad := func(f, format string, args ...any) {
		errs = append(errs, FieldError{Field: f, Detail: fmt.Sprintf(format, args...)})
	}
	if d.Name == "" {
		bad("name", "required")
	} else {
		for _, e := range validation.IsDNS1123Label(d.Name) {
			bad("name", "%s", e)
		}
	}
	if len(d.Version) > MaxVersionLength {
		bad("version", "longer than %d characters", MaxVersionLength)
	}
	switch {
	case len(d.Module) == 0:
		bad("module", "required")
	case len(d.Module) > MaxModuleSize:
		bad("module", "%d bytes, more than %d", len(d.Module), MaxModuleSize)
	case !bytes.HasPrefix(d.Module, wasmHeader):
		bad("module", "not a WebAssembly module: it must start with \\0asm and binary version 1")
	}
	if len(d.TargetDevices) == 0 && d.Selector == nil {
		bad("targetDevices", "one of targetDevices or selector is required")
	}
	if len(d.TargetDevices) > MaxTargets {
		bad("targetDevices", "more than %d devices; use a selector", MaxTargets)
	} else {
		for i, dev := range d.TargetDevices {
			for _, e := range validation.IsDNS1123Subdomain(dev) {
				bad(fmt.Sprintf("targetDevices[%d]", i), "%s", e)
			}
			if slices.Contains(d.TargetDevices[:i], dev) {
				bad(fmt.Sprintf("targetDevices[%d]", i), "duplicate %q", dev)
			}
		}
	}
	if d.Selector != nil {
		for _, e := range metav1validation.ValidateLabelSelector(d.Selector, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("selector")) {
			bad(e.Field, "%s", e.ErrorBody())
		}
	}
	if cfg := d.Config; cfg != nil {
		if cfg.MemoryLimit < 0 || cfg.MemoryLimit > MaxMemoryLimit {
			bad("config.memoryLimit", "must be from 0 to %d bytes", MaxMemoryLimit)
		}
		if cfg.MaxStackSize < 0 || cfg.MaxStackSize > MaxStackSize {
			bad("config.maxStackSize", "must be from 0 to %d bytes", MaxStackSize)
		}
		if t := cfg.ExecutionTimeout; t != "" {
			if err := CheckTimeout(t); err != nil {
				bad("config.executionTimeout", "%v", err)
			}
		}
	}
	switch d.State {
	case "", wasmbedv1.RunStateRunning, wasmbedv1.RunStateStopped:
	default:
		bad("state", "unsupported value %q: supported values: running, stopped", d.State)
	}
	for _, e := range metav1validation.ValidateLabels(d.Labels, field.NewPath("labels")) {
		bad(e.Field, "%s", e.ErrorBody())
	}
	return errs
}

// Check is Validate returning an *InvalidError.
func (d *Deploy) Check() error {
	if errs := d.Validate(); len(errs) > 0 {
		return &InvalidError{What: "deploy", Fields: errs}
	}
	return nil
}

// CheckTimeout checks an execution timeout as the CRD does: a Go duration
// such as 500ms or 30s, more than zero and at most MaxTimeout.
func CheckTimeout(t string) error {
	d, err := time.ParseDuration(t)
	switch {
	case len(t) > 32 || !timeoutPattern.MatchString(t) || err != nil:
		return fmt.Errorf("%q is not a duration such as 500ms or 30s", t)
	case d <= 0 || d > MaxTimeout:
		return errors.New("must be more than 0s and at most 1h")
	}
	return nil
}

// Application returns the Application a valid deploy creates in namespace.
func (d *Deploy) Application(namespace string) *wasmbedv1.Application {
	app := &wasmbedv1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: namespace, Labels: d.Labels},
		Spec: wasmbedv1.ApplicationSpec{
			Name: d.Name, Version: d.Version, WasmBinary: d.Module, TargetDevices: d.TargetDevices,
			Selector: d.Selector, State: d.State,
		},
	}
	if d.CreatedBy != "" {
		app.Annotations = map[string]string{AnnotationCreatedBy: d.CreatedBy}
	}
	if d.Config != nil {
		app.Spec.Config = *d.Config
	}
	return app
}

// Apply creates app, or, when an Application of that name exists, replaces
// what a deploy sets in its spec (module or sealed module, version, limits,
// targets, run state) and keeps the rest (strategy, board and capability
// requirements): the controller then rolls the new version out, and the
// version it replaces becomes the one an Undo goes back to. It reports
// whether app was created, and leaves app as stored.
func Apply(ctx context.Context, c client.Client, app *wasmbedv1.Application) (created bool, err error) {
	err = c.Create(ctx, app)
	if err == nil {
		return true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("create application %s/%s: %w", app.Namespace, app.Name, err)
	}
	want := app.Spec
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(app), app); err != nil {
			return err
		}
		app.Spec.Name = want.Name
		app.Spec.Version = want.Version
		app.Spec.WasmBinary = want.WasmBinary
		app.Spec.SealedModule = want.SealedModule
		app.Spec.Confidential = want.Confidential
		app.Spec.Config = want.Config
		app.Spec.TargetDevices = want.TargetDevices
		app.Spec.Selector = want.Selector
		app.Spec.State = want.State
		return c.Update(ctx, app)
	})
	if err != nil {
		return false, fmt.Errorf("update application %s/%s: %w", app.Namespace, app.Name, err)
	}
	return false, nil
}
