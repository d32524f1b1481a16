package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/kube-openapi/pkg/spec3"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
	Comps   struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

func fetchOpenAPI(t *testing.T, e *testEnv) (openAPIDoc, []byte) {
	t.Helper()
	res := e.do(t, http.MethodGet, "/api/v1/openapi.json", viewerToken, nil, "")
	var doc openAPIDoc
	res.decode(t, http.StatusOK, &doc)
	return doc, res.Body.Bytes()
}

// TestOpenAPICoversRoutes checks the document against the server: every
// registered route is documented, and every documented operation is routed
// by the handler (it does not answer no-route or method-not-allowed).
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newTestEnv(t)
	doc, _ := fetchOpenAPI(t, e)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi %q, want 3.0.3", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(documented)
	registered := slices.Sorted(slices.Values(e.api.patterns))
	if !slices.Equal(documented, registered) {
		t.Errorf("documented operations differ from the registered ones:\ndocumented %q\nregistered %q", documented, registered)
	}
	params := strings.NewReplacer("{namespace}", "fleet", "{name}", "thing")
	for _, op := range documented {
		method, path, _ := strings.Cut(op, " ")
		t.Run(op, func(t *testing.T) {
			res := e.do(t, method, params.Replace(path), adminToken, nil, "")
			if strings.HasPrefix(res.Header().Get("Content-Type"), "application/problem+json") {
				if p := res.problem(t); p.Kind() == ProblemNoRoute || p.Kind() == ProblemMethodNotAllowed {
					t.Errorf("documented %s is not routed: %s", op, p.Detail)
				}
			}
		})
	}
	for _, op := range []string{"GET /api/v1/nothing", "GET /api/v1/namespaces/fleet/devices/d1/nothing", "PUT /api/v1/devices"} {
		method, path, _ := strings.Cut(op, " ")
		want := ProblemNoRoute
		if method == http.MethodPut {
			want = ProblemMethodNotAllowed
		}
		if p := e.do(t, method, path, adminToken, nil, "").problem(t); p.Kind() != want {
			t.Errorf("%s: problem %s, want %s", op, p.Kind(), want)
		}
	}
}

// TestOpenAPIWellFormed checks that every $ref resolves, every path
// parameter is declared, and every operation documents its responses.
func TestOpenAPIWellFormed(t *testing.T) {
	e := newTestEnv(t)
	doc, raw := fetchOpenAPI(t, e)
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				refs = append(refs, r)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var whole any
	if err := json.Unmarshal(raw, &whole); err != nil {
		t.Fatal(err)
	}
	walk(whole)
	// Kubernetes' own OpenAPI 3 types read it.
	var typed spec3.OpenAPI
	if err := json.Unmarshal(raw, &typed); err != nil {
		t.Fatalf("spec3: %v", err)
	}
	if typed.Paths == nil || len(typed.Paths.Paths) != len(doc.Paths) || typed.Components == nil || len(typed.Components.Schemas) != len(doc.Comps.Schemas) {
		t.Errorf("spec3 read %v paths and %v schemas", typed.Paths != nil, typed.Components != nil)
	}
	for name, s := range typed.Components.Schemas {
		if len(s.Type) == 0 && s.Ref.String() == "" {
			t.Errorf("schema %s has no type", name)
		}
	}
	if len(refs) == 0 {
		t.Fatal("no $ref in the document")
	}
	for _, r := range refs {
		name, ok := strings.CutPrefix(r, "#/components/schemas/")
		if _, exists := doc.Comps.Schemas[name]; !ok || !exists {
			t.Errorf("$ref %q does not resolve", r)
		}
	}
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			var op struct {
				OperationID string                      `json:"operationId"`
				Summary     string                      `json:"summary"`
				Parameters  []struct{ Name, In string } `json:"parameters"`
				Responses   map[string]json.RawMessage  `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if op.OperationID == "" || op.Summary == "" || len(op.Responses) == 0 {
				t.Errorf("%s %s: operation id %q, summary %q, %d responses", method, path, op.OperationID, op.Summary, len(op.Responses))
			}
			for _, p := range []string{"namespace", "name"} {
				inPath := strings.Contains(path, "{"+p+"}")
				declared := slices.ContainsFunc(op.Parameters, func(q struct{ Name, In string }) bool { return q.Name == p && q.In == "path" })
				if inPath != declared {
					t.Errorf("%s %s: path parameter %s in path %v, declared %v", method, path, p, inPath, declared)
				}
			}
		}
	}
}

// TestSchemasMatchTypes checks that the hand-written schemas of the API's
// own types name exactly the JSON fields of the Go types.
func TestSchemasMatchTypes(t *testing.T) {
	schemas := apiSchemas()
	for name, typ := range map[string]reflect.Type{
		"DeployRequest":      reflect.TypeFor[DeployRequest](),
		"DeviceMetrics":      reflect.TypeFor[DeviceMetrics](),
		"AppMetrics":         reflect.TypeFor[AppMetrics](),
		"PairingStatus":      reflect.TypeFor[PairingStatus](),
		"PairingOpenRequest": reflect.TypeFor[PairingOpenRequest](),
		"Summary":            reflect.TypeFor[Summary](),
		"Self":               reflect.TypeFor[Self](),
		"Problem":            reflect.TypeFor[Problem](),
		"ModuleInfo":         reflect.TypeFor[ModuleInfo](),
		"DeviceList":         reflect.TypeFor[Page[wasmbedv1.Device]](),
		"RolloutPage":        reflect.TypeFor[RolloutPage](),
	} {
		s := schemas[name]
		if s == nil {
			t.Errorf("no schema %s", name)
			continue
		}
		got := slices.Sorted(func(yield func(string) bool) {
			for k := range s.Properties {
				if !yield(k) {
					return
				}
			}
		})
		want := jsonFields(typ)
		if !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %q, type %v has JSON fields %q", name, got, typ, want)
		}
	}
	// The nested objects too.
	for path, typ := range map[string]reflect.Type{
		"DeviceMetrics.link":   reflect.TypeFor[LinkMetrics](),
		"Summary.devices":      reflect.TypeFor[DeviceSummary](),
		"Summary.applications": reflect.TypeFor[ApplicationSummary](),
		"Problem.errors":       reflect.TypeFor[FieldError](),
	} {
		top, prop, _ := strings.Cut(path, ".")
		s := schemas[top].Properties[prop]
		if s.Items != nil {
			s = s.Items
		}
		got := slices.Sorted(func(yield func(string) bool) {
			for k := range s.Properties {
				if !yield(k) {
					return
				}
			}
		})
		if want := jsonFields(typ); !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %q, type %v has JSON fields %q", path, got, typ, want)
		}
	}
}

// jsonFields lists the JSON names of a struct's exported fields, embedded
// structs flattened, shallower names winning as in encoding/json.
func jsonFields(t reflect.Type) []string {
	seen := map[string]bool{}
	var walk func(t reflect.Type, depth int, names map[string]int)
	names := map[string]int{}
	walk = func(t reflect.Type, depth int, names map[string]int) {
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, depth+1, names)
				continue
			}
			if name == "" {
				name = f.Name
			}
			if d, ok := names[name]; !ok || depth < d {
				names[name] = depth
			}
		}
	}
	walk(t, 0, names)
	for k := range names {
		seen[k] = true
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}

// TestViewSchemas checks the adjustments of the CRD schemas: an
// Application is documented with its module described, not included, and a
// DeviceApplication without its signed manifest.
func TestViewSchemas(t *testing.T) {
	comps, err := componentSchemas()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(comps)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]struct {
		Properties map[string]struct {
			Properties map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"properties"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	appSpec := s["Application"].Properties["spec"].Properties
	if _, ok := appSpec["wasmBinary"]; ok {
		t.Error("Application schema documents wasmBinary")
	}
	if _, ok := appSpec["module"]; !ok {
		t.Error("Application schema lacks module")
	}
	if _, ok := appSpec["targetDevices"]; !ok {
		t.Error("Application schema lacks the CRD's targetDevices")
	}
	art := s["DeviceApplication"].Properties["spec"].Properties["artifact"].Properties
	for _, f := range []string{"manifest", "signature", "keyMaterial"} {
		if _, ok := art[f]; ok {
			t.Errorf("DeviceApplication schema documents artifact.%s", f)
		}
	}
	if _, ok := art["sequence"]; !ok {
		t.Error("DeviceApplication schema lacks artifact.sequence")
	}
}
