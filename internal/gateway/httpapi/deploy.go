package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Bounds of a deploy, matching what the Application CRD accepts.
const (
	maxMemoryLimit   = 256 << 20
	maxStackSize     = 16 << 20
	maxTimeout       = time.Hour
	maxVersionLength = 64
	maxTargets       = 1000
	// maxDeployJSON bounds a JSON deploy: the module as base64 and the
	// rest of the request.
	maxDeployJSON = (MaxModuleSize+2)/3*4 + maxDeployMetadata
	// maxDeployMultipart bounds a multipart deploy: the module, the
	// application part and the multipart framing.
	maxDeployMultipart = MaxModuleSize + maxDeployMetadata + 4<<10
	// maxDeployBody is the larger of the two, the route's body limit; a
	// multipart body is held to its own.
	maxDeployBody = max(maxDeployJSON, maxDeployMultipart)
)

// AnnotationCreatedBy records, on an Application deployed through the API,
// the user who deployed it: Kubernetes sees the gateway create it.
const AnnotationCreatedBy = "wasmbed.github.io/created-by"

// Multipart part names of a deploy.
const (
	partApplication = "application"
	partModule      = "module"
)

// wasmHeader is the WebAssembly magic and binary version 1.
var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// timeoutPattern is the CRD's pattern of an execution timeout.
var timeoutPattern = regexp.MustCompile(`^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$`)

// DeployRequest is the body of a deploy: the Application to create. As JSON
// the module is standard base64 in Module; as multipart/form-data the part
// "application" holds this object without Module and the part "module" the
// module's bytes.
//
// A deploy creates plaintext applications only: a confidential module must
// not pass through a gateway in clear, so confidential applications are not
// deployed through this API.
type DeployRequest struct {
	// Name names the Application and is the name devices know it by (a
	// DNS label).
	Name string `json:"name"`
	// Version labels the module (at most 64 characters).
	Version string `json:"version,omitempty"`
	// Module is the WebAssembly module, at most 768 KiB.
	Module []byte `json:"module,omitempty"`
	// TargetDevices names Devices in the namespace to run on.
	TargetDevices []string `json:"targetDevices,omitempty"`
	// Selector selects Devices by label; at least one of TargetDevices and
	// Selector is required.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Config holds the sandbox limits; omitted fields take the defaults.
	Config *wasmbedv1.ApplicationConfig `json:"config,omitempty"`
	// State is the desired run state, running (default) or stopped.
	State wasmbedv1.RunState `json:"state,omitempty"`
	// Labels are set on the Application.
	Labels map[string]string `json:"labels,omitempty"`
}

// deploy creates an Application from a module upload.
func (a *api) deploy(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if c.namespace == "" {
		c.namespace = a.opts.DefaultNamespace
	}
	req, err := c.readDeploy()
	if err != nil {
		return err
	}
	if errs := req.validate(); len(errs) > 0 {
		return invalid("the deploy request is invalid", errs...)
	}
	c.name = req.Name
	app := req.application(c.namespace, userName(c.user))
	if err := a.opts.Writer.Create(c.r.Context(), app); err != nil {
		return fromKubernetes(err, c.applicationName())
	}
	c.w.Header().Set("Location", fmt.Sprintf("/api/v1/namespaces/%s/applications/%s", app.Namespace, app.Name))
	return c.writeJSON(http.StatusCreated, a.applicationView(app))
}

// readDeploy reads a JSON or multipart deploy.
func (c *call) readDeploy() (*DeployRequest, error) {
	mt, params, err := c.mediaType()
	if err != nil {
		return nil, err
	}
	var req DeployRequest
	switch mt {
	case "application/json":
		// The route's limit, maxDeployBody, is maxDeployJSON.
		if err := decodeJSON(c.r.Body, &req); err != nil {
			return nil, err
		}
	case "multipart/form-data":
		c.r.Body = http.MaxBytesReader(c.w, c.r.Body, maxDeployMultipart)
		if err := readDeployMultipart(multipart.NewReader(c.r.Body, params["boundary"]), &req); err != nil {
			return nil, err
		}
	default:
		if mt == "" {
			mt = "(none)"
		}
		return nil, unsupported(mt, "application/json", "multipart/form-data")
	}
	if len(req.Module) > MaxModuleSize {
		return nil, newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
			fmt.Sprintf("the module is %d bytes, more than %d", len(req.Module), MaxModuleSize))
	}
	return &req, nil
}

// readDeployMultipart reads the two parts of a multipart deploy.
func readDeployMultipart(mr *multipart.Reader, req *DeployRequest) error {
	var seen []string
	var module []byte
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return multipartError(err)
		}
		name := part.FormName()
		if slices.Contains(seen, name) {
			return invalid("part " + name + " given twice")
		}
		seen = append(seen, name)
		switch name {
		case partApplication:
			b, err := readPart(part, maxDeployMetadata)
			if err != nil {
				return err
			}
			if err := decodeJSON(bytes.NewReader(b), req); err != nil {
				return err
			}
			if req.Module != nil {
				return invalid("the module goes in the part \"module\", not in \"application\"",
					FieldError{Field: "module", Detail: "not allowed in the application part"})
			}
		case partModule:
			if module, err = readPart(part, MaxModuleSize); err != nil {
				return err
			}
		default:
			return invalid(fmt.Sprintf("unknown part %q; a deploy has the parts %q and %q", name, partApplication, partModule))
		}
	}
	if !slices.Contains(seen, partApplication) {
		return invalid("the part \"application\" is missing", FieldError{Field: partApplication, Detail: "required"})
	}
	req.Module = module
	return nil
}

// readPart reads a part of at most limit bytes.
func readPart(p *multipart.Part, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(p, int64(limit)+1))
	if err != nil {
		return nil, multipartError(err)
	}
	if len(b) > limit {
		return nil, newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
			fmt.Sprintf("the part %q is more than %d bytes", p.FormName(), limit))
	}
	return b, nil
}

func multipartError(err error) *Problem {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return bodyError(err)
	}
	return invalid("the multipart body does not parse").withCause(err)
}

// validate checks a deploy against the Application's rules, so that most
// mistakes are reported with their fields before Kubernetes is asked.
func (r *DeployRequest) validate() []FieldError {
	var errs []FieldError
	bad := func(f, format string, args ...any) {
		errs = append(errs, FieldError{Field: f, Detail: fmt.Sprintf(format, args...)})
	}
	if r.Name == "" {
		bad("name", "required")
	} else {
		for _, e := range validation.IsDNS1123Label(r.Name) {
			bad("name", "%s", e)
		}
	}
	if len(r.Version) > maxVersionLength {
		bad("version", "longer than %d characters", maxVersionLength)
	}
	switch {
	case len(r.Module) == 0:
		bad("module", "required")
	case !bytes.HasPrefix(r.Module, wasmHeader):
		bad("module", "not a WebAssembly module: it must start with \\0asm and binary version 1")
	}
	if len(r.TargetDevices) == 0 && r.Selector == nil {
		bad("targetDevices", "one of targetDevices or selector is required")
	}
	if len(r.TargetDevices) > maxTargets {
		bad("targetDevices", "more than %d devices; use a selector", maxTargets)
	} else {
		for i, d := range r.TargetDevices {
			for _, e := range validation.IsDNS1123Subdomain(d) {
				bad(fmt.Sprintf("targetDevices[%d]", i), "%s", e)
			}
			if slices.Contains(r.TargetDevices[:i], d) {
				bad(fmt.Sprintf("targetDevices[%d]", i), "duplicate %q", d)
			}
		}
	}
	if r.Selector != nil {
		for _, e := range metav1validation.ValidateLabelSelector(r.Selector, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("selector")) {
			bad(e.Field, "%s", e.ErrorBody())
		}
	}
	if cfg := r.Config; cfg != nil {
		if cfg.MemoryLimit < 0 || cfg.MemoryLimit > maxMemoryLimit {
			bad("config.memoryLimit", "must be from 0 to %d bytes", maxMemoryLimit)
		}
		if cfg.MaxStackSize < 0 || cfg.MaxStackSize > maxStackSize {
			bad("config.maxStackSize", "must be from 0 to %d bytes", maxStackSize)
		}
		if t := cfg.ExecutionTimeout; t != "" {
			d, err := time.ParseDuration(t)
			switch {
			case len(t) > 32 || !timeoutPattern.MatchString(t) || err != nil:
				bad("config.executionTimeout", "%q is not a duration such as 500ms or 30s", t)
			case d <= 0 || d > maxTimeout:
				bad("config.executionTimeout", "must be more than 0s and at most 1h")
			}
		}
	}
	switch r.State {
	case "", wasmbedv1.RunStateRunning, wasmbedv1.RunStateStopped:
	default:
		bad("state", "unsupported value %q: supported values: running, stopped", r.State)
	}
	for _, e := range metav1validation.ValidateLabels(r.Labels, field.NewPath("labels")) {
		bad(e.Field, "%s", e.ErrorBody())
	}
	return errs
}

// application returns the Application a valid deploy creates.
func (r *DeployRequest) application(namespace, user string) *wasmbedv1.Application {
	app := &wasmbedv1.Application{
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: namespace, Labels: r.Labels},
		Spec: wasmbedv1.ApplicationSpec{
			Name: r.Name, Version: r.Version, WasmBinary: r.Module, TargetDevices: r.TargetDevices,
			Selector: r.Selector, State: r.State,
		},
	}
	if user != "" {
		app.Annotations = map[string]string{AnnotationCreatedBy: user}
	}
	if r.Config != nil {
		app.Spec.Config = *r.Config
	}
	return app
}
