package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// listQuery validates the query of a list route.
func (c *call) listQuery(f filterSpec) (*listQuery, error) {
	q := c.r.URL.Query()
	allowed := f.params()
	if c.route.watchable {
		allowed = append(allowed, qWatch)
	}
	if err := checkParams(q, allowed); err != nil {
		return nil, err
	}
	if c.watch {
		// A watch streams changes; it has no pages.
		for _, p := range []string{qLimit, qContinue} {
			if q.Has(p) {
				return nil, invalidField(p, "not allowed with watch=true")
			}
		}
	}
	return parseList(q, f, c.route.op+"\x00"+c.namespace+"\x00"+c.name)
}

// noQuery refuses query parameters on routes that take none.
func (c *call) noQuery(allowed ...string) error { return checkParams(c.r.URL.Query(), allowed) }

// mediaType returns the body's media type, "" when the request has no
// body.
func (c *call) mediaType() (string, map[string]string, error) {
	ct := c.r.Header.Get("Content-Type")
	if ct == "" {
		return "", nil, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", nil, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
			"the Content-Type header does not parse").withCause(err)
	}
	return mt, params, nil
}

// unsupported is the 415 of a body in a media type the route does not take.
func unsupported(mt string, want ...string) *Problem {
	return newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType,
		fmt.Sprintf("Content-Type %q is not accepted here; send %s", mt, strings.Join(want, " or ")))
}

// readJSON decodes the request body, which must be one JSON value of v's
// shape, with no unknown fields, within the route's body limit.
func (c *call) readJSON(v any) error {
	mt, _, err := c.mediaType()
	if err != nil {
		return err
	}
	if mt != "application/json" {
		if mt == "" {
			mt = "(none)"
		}
		return unsupported(mt, "application/json")
	}
	return decodeJSON(c.r.Body, v)
}

// readOptionalJSON is readJSON for routes whose body may be empty.
func (c *call) readOptionalJSON(v any) error {
	var first [1]byte
	n, err := io.ReadFull(c.r.Body, first[:])
	if n == 0 {
		if err != nil && !errors.Is(err, io.EOF) {
			return bodyError(err)
		}
		return nil
	}
	c.r.Body = readCloser{io.MultiReader(bytes.NewReader(first[:n]), c.r.Body), c.r.Body}
	return c.readJSON(v)
}

type readCloser struct {
	io.Reader
	io.Closer
}

// decodeJSON decodes exactly one JSON value from r into v.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return invalid("the body holds more than one JSON value")
	}
	return nil
}

// bodyError maps a failure to read or decode a body to a problem.
func bodyError(err error) *Problem {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return newProblem(http.StatusRequestEntityTooLarge, ProblemTooLarge,
			fmt.Sprintf("the request body is over its limit of %d bytes", maxErr.Limit)).withCause(err)
	case errors.As(err, &syntaxErr):
		return invalid(fmt.Sprintf("the body is not valid JSON (at byte %d)", syntaxErr.Offset)).withCause(err)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "(body)"
		}
		return invalid("a field has the wrong type", FieldError{Field: field,
			Detail: fmt.Sprintf("expected %s, got JSON %s", jsonKind(typeErr), typeErr.Value)}).withCause(err)
	case errors.Is(err, io.EOF):
		return invalid("the body is empty; a JSON object is required").withCause(err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("the body ends in the middle of a JSON value").withCause(err)
	}
	msg := err.Error()
	if field, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		field = strings.Trim(field, `"`)
		return invalid("unknown field "+field, FieldError{Field: field, Detail: "unknown field"})
	}
	if _, ok := errors.AsType[base64.CorruptInputError](err); ok {
		// The only bytes field of a request body is a deploy's module.
		return invalid("module is not valid base64", FieldError{Field: "module", Detail: "not valid standard base64"}).withCause(err)
	}
	return invalid("the body does not decode").withCause(err)
}

func jsonKind(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "another type"
	}
	switch e.Type.Kind().String() {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "a number"
}

func validNamespace(ns string) error {
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

func validName(name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
