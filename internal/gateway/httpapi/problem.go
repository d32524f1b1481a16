package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProblemTypeBase prefixes every problem type URI the API returns; the
// suffix is one of the ProblemType constants.
const ProblemTypeBase = "https://wasmbed.github.io/problems/"

// ProblemType names a kind of failure. Clients branch on it rather than on
// the human-readable title and detail.
type ProblemType string

// Problem types, each with the status code it is returned with.
const (
	// ProblemInvalid (400): the request is malformed or fails validation;
	// Errors lists the offending fields.
	ProblemInvalid ProblemType = "invalid-request"
	// ProblemUnauthenticated (401): no credentials, or credentials that
	// Kubernetes did not accept.
	ProblemUnauthenticated ProblemType = "unauthenticated"
	// ProblemForbidden (403): Kubernetes RBAC does not allow the caller the
	// action the route maps to.
	ProblemForbidden ProblemType = "forbidden"
	// ProblemNotFound (404): the object named in the path does not exist.
	ProblemNotFound ProblemType = "not-found"
	// ProblemNoRoute (404): no route serves the path.
	ProblemNoRoute ProblemType = "no-route"
	// ProblemMetricsUnavailable (404): this gateway replica holds no
	// metrics report for the device; the problem's gateway member names
	// the replica holding its session, when known.
	ProblemMetricsUnavailable ProblemType = "metrics-unavailable"
	// ProblemMethodNotAllowed (405): the path exists but not with this
	// method; the Allow header lists the methods it has.
	ProblemMethodNotAllowed ProblemType = "method-not-allowed"
	// ProblemConflict (409): the object exists already, or changed
	// concurrently.
	ProblemConflict ProblemType = "conflict"
	// ProblemTooLarge (413): the request body, or the module in it, is over
	// its limit.
	ProblemTooLarge ProblemType = "too-large"
	// ProblemUnsupportedMediaType (415): the body's Content-Type is not one
	// the route accepts.
	ProblemUnsupportedMediaType ProblemType = "unsupported-media-type"
	// ProblemRejected (422): Kubernetes refused the change (schema
	// validation or an admission policy); Errors carries its causes.
	ProblemRejected ProblemType = "rejected"
	// ProblemWatchBehind (410): sent as the ERROR event of a watch that fell
	// too far behind the changes and was closed; list again, then watch.
	ProblemWatchBehind ProblemType = "watch-behind"
	// ProblemTooManyWatches (429): the gateway serves as many watches as
	// it allows.
	ProblemTooManyWatches ProblemType = "too-many-watches"
	// ProblemInternal (500): a failure inside the gateway; the cause is
	// logged, not shown.
	ProblemInternal ProblemType = "internal"
	// ProblemNotImplemented (501): this gateway does not offer the feature
	// (watching, without informers).
	ProblemNotImplemented ProblemType = "not-implemented"
	// ProblemNotReady (503): the gateway is starting or has lost its
	// caches or device listener; retry later.
	ProblemNotReady ProblemType = "not-ready"
	// ProblemUnavailable (503): Kubernetes did not answer in time
	// (reviews, writes); retry later.
	ProblemUnavailable ProblemType = "unavailable"
)

// FieldError is one invalid field of a request.
type FieldError struct {
	// Field is the field's path: a JSON path into the body ("config.memoryLimit"),
	// a query parameter ("limit") or a path parameter ("name").
	Field string `json:"field"`
	// Detail says what is wrong with it.
	Detail string `json:"detail"`
}

// Problem is an RFC 9457 problem document, as the API returns it for every
// failure with Content-Type application/problem+json. As an error it carries
// an internal cause that is logged but never sent.
type Problem struct {
	// Type identifies the kind of problem: ProblemTypeBase + a ProblemType.
	Type string `json:"type"`
	// Title is the HTTP status text.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence to the caller.
	Detail string `json:"detail,omitempty"`
	// Instance is the request path.
	Instance string `json:"instance,omitempty"`
	// Errors lists invalid fields (400) or Kubernetes' causes (422).
	Errors []FieldError `json:"errors,omitempty"`
	// Gateway names the gateway replica holding a device's session, with
	// metrics-unavailable.
	Gateway string `json:"gateway,omitempty"`

	cause      error
	retryAfter int
}

// Error returns the problem's type and detail.
func (p *Problem) Error() string {
	s := fmt.Sprintf("%d %s: %s", p.Status, p.Kind(), p.Detail)
	if p.cause != nil {
		s += ": " + p.cause.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (p *Problem) Unwrap() error { return p.cause }

// Kind returns the ProblemType of p.
func (p *Problem) Kind() ProblemType { return ProblemType(strings.TrimPrefix(p.Type, ProblemTypeBase)) }

func newProblem(status int, kind ProblemType, detail string) *Problem {
	return &Problem{Type: ProblemTypeBase + string(kind), Title: http.StatusText(status), Status: status, Detail: detail}
}

func (p *Problem) withCause(err error) *Problem { p.cause = err; return p }

func invalid(detail string, errs ...FieldError) *Problem {
	p := newProblem(http.StatusBadRequest, ProblemInvalid, detail)
	p.Errors = errs
	return p
}

func invalidField(field, format string, args ...any) *Problem {
	detail := fmt.Sprintf(format, args...)
	return invalid(field+": "+detail, FieldError{Field: field, Detail: detail})
}

func internal(err error) *Problem {
	return newProblem(http.StatusInternalServerError, ProblemInternal, "the gateway failed to handle the request; the cause is in its log").withCause(err)
}

func unavailable(detail string, err error) *Problem {
	p := newProblem(http.StatusServiceUnavailable, ProblemUnavailable, detail).withCause(err)
	p.retryAfter = 1
	return p
}

// fromKubernetes maps an error of a Kubernetes request made on the caller's
// behalf to a problem. what names the object for the caller ("application
// fleet/blinky"). Kubernetes' own message is shown only where it is about the
// caller's input (validation and admission); anything else is logged.
func fromKubernetes(err error, what string) *Problem {
	if p, ok := errors.AsType[*Problem](err); ok {
		return p
	}
	var status apierrors.APIStatus
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return unavailable("Kubernetes did not answer in time", err)
	case apierrors.IsNotFound(err):
		return newProblem(http.StatusNotFound, ProblemNotFound, what+" not found").withCause(err)
	case apierrors.IsAlreadyExists(err):
		return newProblem(http.StatusConflict, ProblemConflict, what+" already exists").withCause(err)
	case apierrors.IsConflict(err):
		return newProblem(http.StatusConflict, ProblemConflict, what+" was changed concurrently; retry").withCause(err)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), isAdmissionDenial(err):
		p := newProblem(http.StatusUnprocessableEntity, ProblemRejected, "Kubernetes rejected "+what).withCause(err)
		if errors.As(err, &status) {
			st := status.Status()
			p.Detail = st.Message
			p.Errors = causes(st.Details)
		}
		return p
	case apierrors.IsRequestEntityTooLargeError(err):
		return newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge, what+" is too large for Kubernetes").withCause(err)
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err),
		apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err):
		return unavailable("Kubernetes did not answer in time", err)
	}
	return internal(err)
}

// isAdmissionDenial reports whether err is an admission webhook's or
// policy's refusal, which Kubernetes returns with the webhook's status code
// (403 by default) rather than 422.
func isAdmissionDenial(err error) bool {
	if !apierrors.IsForbidden(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "admission webhook") || strings.Contains(msg, "ValidatingAdmissionPolicy")
}

func causes(d *metav1.StatusDetails) []FieldError {
	if d == nil {
		return nil
	}
	out := make([]FieldError, 0, len(d.Causes))
	for _, c := range d.Causes {
		out = append(out, FieldError{Field: c.Field, Detail: c.Message})
	}
	return out
}

// writeProblem sends p. Headers already set by the handler are kept.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	out := *p
	out.Instance = r.URL.Path
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="wasmbed"`)
	}
	writeJSONBody(w, p.Status, &out)
}
