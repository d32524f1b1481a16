package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

// Bounds of a deploy: fleetctl's, the Application CRD's.
const (
	maxMemoryLimit   = fleetctl.MaxMemoryLimit
	maxStackSize     = fleetctl.MaxStackSize
	maxVersionLength = fleetctl.MaxVersionLength
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
const AnnotationCreatedBy = fleetctl.AnnotationCreatedBy

// Multipart part names of a deploy.
const (
	partApplication = "application"
	partModule      = "module"
)

// wasmHeader is the WebAssembly magic and binary version 1.
var wasmHeader = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

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

// deploy returns r as fleetctl's deploy.
func (r *DeployRequest) deploy(user string) *fleetctl.Deploy {
	return &fleetctl.Deploy{
		Name: r.Name, Version: r.Version, Module: r.Module, TargetDevices: r.TargetDevices,
		Selector: r.Selector, Config: r.Config, State: r.State, Labels: r.Labels, CreatedBy: user,
	}
}

// validate checks a deploy against the Application's rules
// (fleetctl.Deploy.Validate), so that most mistakes are reported with their
// fields before Kubernetes is asked.
func (r *DeployRequest) validate() []FieldError {
	var errs []FieldError
	for _, e := range r.deploy("").Validate() {
		errs = append(errs, FieldError{Field: e.Field, Detail: e.Detail})
	}
	return errs
}

// application returns the Application a valid deploy creates.
func (r *DeployRequest) application(namespace, user string) *wasmbedv1.Application {
	return r.deploy(user).Application(namespace)
}
