package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// TestAccess checks authentication and authorisation: no token and an
// unknown token are 401 with a challenge, a refused permission is 403
// naming the Kubernetes action, and the health routes need nothing.
func TestAccess(t *testing.T) {
	e := newTestEnv(t, device("fleet", "d1"))
	tests := []struct {
		name, method, path, token string
		status                    int
		kind                      ProblemType
	}{
		{"no token", "GET", "/api/v1/devices", "", 401, ProblemUnauthenticated},
		{"unknown token", "GET", "/api/v1/devices", "forged", 401, ProblemUnauthenticated},
		{"no token, openapi", "GET", "/api/v1/openapi.json", "", 401, ProblemUnauthenticated},
		{"nobody lists", "GET", "/api/v1/devices", nobodyToken, 403, ProblemForbidden},
		{"viewer revokes", "POST", "/api/v1/namespaces/fleet/devices/d1/revoke", viewerToken, 403, ProblemForbidden},
		{"viewer deploys", "POST", "/api/v1/namespaces/fleet/applications", viewerToken, 403, ProblemForbidden},
		{"viewer opens pairing", "POST", "/api/v1/pairing/open", viewerToken, 403, ProblemForbidden},
		{"viewer lists", "GET", "/api/v1/devices", viewerToken, 200, ""},
		{"nobody reads openapi", "GET", "/api/v1/openapi.json", nobodyToken, 200, ""},
		{"nobody asks who", "GET", "/api/v1/self", nobodyToken, 200, ""},
		{"healthz without token", "GET", "/healthz", "", 200, ""},
		{"readyz without token", "GET", "/readyz", "", 200, ""},
		{"metrics without token", "GET", "/metrics", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.do(t, tt.method, tt.path, tt.token, nil, "")
			if tt.kind == "" {
				if res.Code != tt.status {
					t.Fatalf("status %d, want %d: %s", res.Code, tt.status, res.Body)
				}
				return
			}
			p := res.wantProblem(t, tt.status, tt.kind)
			if tt.status == 401 && res.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tt.status == 403 && !strings.Contains(p.Detail, "wasmbed.github.io") && !strings.Contains(p.Detail, "configmaps") {
				t.Errorf("403 detail %q does not name the Kubernetes action", p.Detail)
			}
		})
	}
}

// TestAttributes checks the Kubernetes action each kind of route is
// authorised as.
func TestAttributes(t *testing.T) {
	e := newTestEnv(t, device("fleet", "d1"), application("fleet", "blinky"))
	tests := []struct {
		method, path string
		want         []string // verb resource namespace name
	}{
		{"GET", "/api/v1/devices", []string{"list devices  "}},
		{"GET", "/api/v1/devices?watch=true&phase=Connected", []string{"watch devices  "}},
		{"GET", "/api/v1/namespaces/fleet/devices", []string{"list devices fleet "}},
		{"GET", "/api/v1/namespaces/fleet/devices/d1", []string{"get devices fleet d1"}},
		{"POST", "/api/v1/namespaces/fleet/devices/d1/revoke", []string{"update devices fleet d1"}},
		{"GET", "/api/v1/namespaces/fleet/devices/d1/applications", []string{"get devices fleet d1", "list deviceapplications fleet "}},
		{"POST", "/api/v1/applications", []string{"create applications fleet "}},
		{"POST", "/api/v1/namespaces/other/applications", []string{"create applications other "}},
		{"DELETE", "/api/v1/namespaces/fleet/applications/blinky", []string{"delete applications fleet blinky"}},
		{"POST", "/api/v1/namespaces/fleet/applications/blinky/stop", []string{"update applications fleet blinky"}},
		{"GET", "/api/v1/namespaces/fleet/applications/blinky/rollout", []string{"get applications fleet blinky", "list deviceapplications fleet "}},
		{"GET", "/api/v1/summary", []string{"list devices  ", "list applications  "}},
		{"GET", "/api/v1/pairing", []string{"get configmaps wasmbed-system wasmbed-pairing"}},
		{"POST", "/api/v1/pairing/close", []string{"update configmaps wasmbed-system wasmbed-pairing"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			e.auth.lastAsked()
			if tt.method == "GET" && strings.Contains(tt.path, "watch=true") {
				// Without informers a watch is refused after authorisation.
				e.do(t, tt.method, tt.path, adminToken, nil, "").wantProblem(t, 501, ProblemNotImplemented)
			} else {
				e.do(t, tt.method, tt.path, adminToken, nil, "")
			}
			var got []string
			for _, a := range e.auth.lastAsked() {
				got = append(got, fmt.Sprintf("%s %s %s %s", a.Verb, a.Resource, a.Namespace, a.Name))
				wantGroup := wasmbedv1.GroupVersion.Group
				if a.Resource == "configmaps" {
					wantGroup = ""
				}
				if a.APIGroup != wantGroup || !a.ResourceRequest {
					t.Errorf("group %q resource request %v, want %q true", a.APIGroup, a.ResourceRequest, wantGroup)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("asked %q, want %q", got, tt.want)
			}
		})
	}
}

// TestBadRequests checks that malformed requests are refused with the
// right problem, before anything is changed.
func TestBadRequests(t *testing.T) {
	e := newTestEnv(t, device("fleet", "d1"), application("fleet", "blinky"))
	big := strings.Repeat("x", maxSmallBody+1)
	tests := []struct {
		name, method, path string
		body               any
		contentType        string
		status             int
		kind               ProblemType
		field              string
	}{
		{"bad namespace", "GET", "/api/v1/namespaces/Fleet_1/devices", nil, "", 400, ProblemInvalid, "namespace"},
		{"bad name", "GET", "/api/v1/namespaces/fleet/devices/D_1", nil, "", 400, ProblemInvalid, "name"},
		{"unknown parameter", "GET", "/api/v1/devices?phaze=Connected", nil, "", 400, ProblemInvalid, "phaze"},
		{"limit zero", "GET", "/api/v1/devices?limit=0", nil, "", 400, ProblemInvalid, "limit"},
		{"limit too big", "GET", "/api/v1/devices?limit=501", nil, "", 400, ProblemInvalid, "limit"},
		{"limit twice", "GET", "/api/v1/devices?limit=5&limit=6", nil, "", 400, ProblemInvalid, "limit"},
		{"bad selector", "GET", "/api/v1/devices?labelSelector=a%3D%3D%3Db", nil, "", 400, ProblemInvalid, "labelSelector"},
		{"bad phase", "GET", "/api/v1/devices?phase=Online", nil, "", 400, ProblemInvalid, "phase"},
		{"bad type", "GET", "/api/v1/devices?type=arduino", nil, "", 400, ProblemInvalid, "type"},
		{"bad continue", "GET", "/api/v1/devices?continue=%21%21", nil, "", 400, ProblemInvalid, "continue"},
		{"watch with limit", "GET", "/api/v1/devices?watch=true&limit=3", nil, "", 400, ProblemInvalid, "limit"},
		{"bad watch", "GET", "/api/v1/devices?watch=maybe", nil, "", 400, ProblemInvalid, "watch"},
		{"query on get", "GET", "/api/v1/namespaces/fleet/devices/d1?x=1", nil, "", 400, ProblemInvalid, "x"},
		{"no device", "GET", "/api/v1/namespaces/fleet/devices/d9", nil, "", 404, ProblemNotFound, ""},
		{"no application", "GET", "/api/v1/namespaces/fleet/applications/x", nil, "", 404, ProblemNotFound, ""},
		{"rollout of no application", "GET", "/api/v1/namespaces/fleet/applications/x/rollout", nil, "", 404, ProblemNotFound, ""},
		{"applications of no device", "GET", "/api/v1/namespaces/fleet/devices/d9/applications", nil, "", 404, ProblemNotFound, ""},
		{"revoke no device", "POST", "/api/v1/namespaces/fleet/devices/d9/revoke", nil, "", 404, ProblemNotFound, ""},
		{"stop no application", "POST", "/api/v1/namespaces/fleet/applications/x/stop", nil, "", 404, ProblemNotFound, ""},
		{"delete no application", "DELETE", "/api/v1/namespaces/fleet/applications/x", nil, "", 404, ProblemNotFound, ""},
		{"revoke with text", "POST", "/api/v1/namespaces/fleet/devices/d1/revoke", "yes", "text/plain", 415, ProblemUnsupportedMediaType, ""},
		{"revoke with fields", "POST", "/api/v1/namespaces/fleet/devices/d1/revoke", `{"really":true}`, "application/json", 400, ProblemInvalid, "really"},
		{"revoke with a big body", "POST", "/api/v1/namespaces/fleet/devices/d1/revoke", `{"x":"` + big + `"}`, "application/json", 413, ProblemTooLarge, ""},
		{"pairing malformed", "POST", "/api/v1/pairing/open", `{"duration":`, "application/json", 400, ProblemInvalid, ""},
		{"pairing wrong type", "POST", "/api/v1/pairing/open", `{"duration":15}`, "application/json", 400, ProblemInvalid, "duration"},
		{"pairing too long", "POST", "/api/v1/pairing/open", `{"duration":"25h"}`, "application/json", 400, ProblemInvalid, "duration"},
		{"pairing negative", "POST", "/api/v1/pairing/open", `{"duration":"-1m"}`, "application/json", 400, ProblemInvalid, "duration"},
		{"pairing two values", "POST", "/api/v1/pairing/open", `{} {}`, "application/json", 400, ProblemInvalid, ""},
		{"deploy without body", "POST", "/api/v1/namespaces/fleet/applications", nil, "", 415, ProblemUnsupportedMediaType, ""},
		{"deploy as yaml", "POST", "/api/v1/namespaces/fleet/applications", "name: x", "application/yaml", 415, ProblemUnsupportedMediaType, ""},
		{"deploy bad content type", "POST", "/api/v1/namespaces/fleet/applications", "{}", "application/json; =", 415, ProblemUnsupportedMediaType, ""},
		{"deploy empty", "POST", "/api/v1/namespaces/fleet/applications", "", "application/json", 400, ProblemInvalid, ""},
		{"deploy bad base64", "POST", "/api/v1/namespaces/fleet/applications", `{"name":"a","module":"!!!!"}`, "application/json", 400, ProblemInvalid, "module"},
		{"deploy exists", "POST", "/api/v1/namespaces/fleet/applications",
			DeployRequest{Name: "blinky", Module: wasmHeader, TargetDevices: []string{"d1"}}, "", 409, ProblemConflict, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := e.do(t, tt.method, tt.path, adminToken, tt.body, tt.contentType).wantProblem(t, tt.status, tt.kind)
			if tt.field != "" && !hasField(p, tt.field) {
				t.Errorf("errors %+v do not name %s (detail %q)", p.Errors, tt.field, p.Detail)
			}
			if p.Instance == "" || p.Title != http.StatusText(tt.status) {
				t.Errorf("instance %q title %q", p.Instance, p.Title)
			}
		})
	}
	// Nothing was changed by any of them.
	var d wasmbedv1.Device
	if err := e.client.Get(t.Context(), key("fleet", "d1"), &d); err != nil || d.Spec.Revoked {
		t.Errorf("device d1 changed: revoked %v, %v", d.Spec.Revoked, err)
	}
	var apps wasmbedv1.ApplicationList
	if err := e.client.List(t.Context(), &apps); err != nil || len(apps.Items) != 1 {
		t.Errorf("applications: %d, %v; want only blinky", len(apps.Items), err)
	}
}

func hasField(p Problem, field string) bool {
	for _, e := range p.Errors {
		if e.Field == field {
			return true
		}
	}
	return false
}

// TestReadiness checks /readyz and the API's 503 while the fleet is not
// ready, which says nothing of the cause.
func TestReadiness(t *testing.T) {
	e := newTestEnv(t, device("fleet", "d1"))
	e.fleet.setReady(errors.New("device listener down: secret cause"))
	res := e.do(t, "GET", "/readyz", "", nil, "")
	p := res.wantProblem(t, 503, ProblemNotReady)
	if strings.Contains(res.Body.String(), "secret cause") || res.Header().Get("Retry-After") == "" {
		t.Errorf("readyz reveals the cause or lacks Retry-After: %s", p.Detail)
	}
	e.do(t, "GET", "/healthz", "", nil, "").decodeText(t, 200, "ok\n")
	e.do(t, "GET", "/api/v1/namespaces/fleet/devices/d1", adminToken, nil, "").wantProblem(t, 503, ProblemNotReady)
	// Authentication comes first: an anonymous caller learns nothing more.
	e.do(t, "GET", "/api/v1/namespaces/fleet/devices/d1", "", nil, "").wantProblem(t, 401, ProblemUnauthenticated)
	// The document and the caller's identity do not need the fleet.
	e.do(t, "GET", "/api/v1/openapi.json", adminToken, nil, "").decode(t, 200, &map[string]any{})
	e.fleet.setReady(nil)
	e.do(t, "GET", "/readyz", "", nil, "").decodeText(t, 200, "ok\n")
	e.do(t, "GET", "/api/v1/namespaces/fleet/devices/d1", adminToken, nil, "").decode(t, 200, &wasmbedv1.Device{})
}

func (r response) decodeText(t testing.TB, status int, want string) {
	t.Helper()
	if r.Code != status || r.Body.String() != want {
		t.Fatalf("got %d %q, want %d %q", r.Code, r.Body.String(), status, want)
	}
}

// TestProblemMetrics checks that refusals are counted by operation and
// problem type, and requests by status.
func TestProblemMetrics(t *testing.T) {
	e := newTestEnv(t)
	for range 3 {
		e.do(t, "GET", "/api/v1/devices", "", nil, "")
	}
	e.do(t, "GET", "/api/v1/devices", viewerToken, nil, "")
	e.do(t, "GET", "/nowhere", "", nil, "")
	if got := testutil.ToFloat64(e.api.metrics.problems.WithLabelValues("listAllDevices", string(ProblemUnauthenticated))); got != 3 {
		t.Errorf("unauthenticated problems %v, want 3", got)
	}
	if got := testutil.ToFloat64(e.api.metrics.requests.WithLabelValues("listAllDevices", "200")); got != 1 {
		t.Errorf("200 requests %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.api.metrics.problems.WithLabelValues(noOperation, string(ProblemNoRoute))); got != 1 {
		t.Errorf("no-route problems %v, want 1", got)
	}
	body := e.do(t, "GET", "/metrics", "", nil, "").Body.String()
	if !strings.Contains(body, `wasmbed_http_api_requests_total{code="401",operation="listAllDevices"} 3`) {
		t.Errorf("/metrics lacks the request counter:\n%s", body)
	}
}

// TestDeploy checks both forms of a deploy and what it creates.
func TestDeploy(t *testing.T) {
	e := newTestEnv(t)
	module := append(append([]byte(nil), wasmHeader...), 0x01, 0x04, 0x01, 0x60, 0x00, 0x00)
	t.Run("json", func(t *testing.T) {
		req := DeployRequest{Name: "blinky", Version: "1.2", Module: module, TargetDevices: []string{"d1", "d2"},
			Config: &wasmbedv1.ApplicationConfig{MemoryLimit: 131072, ExecutionTimeout: "500ms"}, State: wasmbedv1.RunStateStopped,
			Labels: map[string]string{"team": "a"}}
		res := e.do(t, "POST", "/api/v1/namespaces/fleet/applications", adminToken, req, "")
		var got Application
		res.decode(t, 201, &got)
		if loc := res.Header().Get("Location"); loc != "/api/v1/namespaces/fleet/applications/blinky" {
			t.Errorf("Location %q", loc)
		}
		if got.Spec.Module.Size != len(module) || len(got.Spec.Module.SHA256) != 64 || got.Spec.WasmBinary != nil {
			t.Errorf("module %+v", got.Spec.Module)
		}
		if strings.Contains(res.Body.String(), "wasmBinary") {
			t.Error("the response holds the module bytes")
		}
		var app wasmbedv1.Application
		if err := e.client.Get(t.Context(), key("fleet", "blinky"), &app); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(app.Spec.WasmBinary, module) || app.Spec.Name != "blinky" || app.Spec.Version != "1.2" ||
			app.Spec.State != wasmbedv1.RunStateStopped || app.Spec.Config.MemoryLimit != 131072 ||
			len(app.Spec.TargetDevices) != 2 || app.Labels["team"] != "a" || app.Annotations[AnnotationCreatedBy] != "alice" {
			t.Errorf("created %+v %+v", app.ObjectMeta, app.Spec)
		}
	})
	t.Run("multipart to the default namespace", func(t *testing.T) {
		body, ct := multipartDeploy(t, `{"name":"sensor","selector":{"matchLabels":{"site":"a"}}}`, module)
		var got Application
		e.do(t, "POST", "/api/v1/applications", adminToken, body, ct).decode(t, 201, &got)
		if got.Namespace != "fleet" || got.Spec.Selector == nil {
			t.Errorf("created %s/%s selector %v", got.Namespace, got.Name, got.Spec.Selector)
		}
		var app wasmbedv1.Application
		if err := e.client.Get(t.Context(), key("fleet", "sensor"), &app); err != nil || !bytes.Equal(app.Spec.WasmBinary, module) {
			t.Errorf("stored module %x, %v", app.Spec.WasmBinary, err)
		}
	})
}

func multipartDeploy(t testing.TB, application string, module []byte) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if application != "" {
		w, _ := mw.CreateFormField(partApplication)
		w.Write([]byte(application))
	}
	if module != nil {
		w, _ := mw.CreateFormFile(partModule, "app.wasm")
		w.Write(module)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// TestDeployLimits checks the size limits and validation of a deploy; each
// case names the mechanism that refuses it.
func TestDeployLimits(t *testing.T) {
	e := newTestEnv(t)
	module := func(n int) []byte {
		b := make([]byte, n)
		copy(b, wasmHeader)
		return b
	}
	asJSON := func(body string) func() ([]byte, string) {
		return func() ([]byte, string) { return []byte(body), "application/json" }
	}
	jsonDeploy := func(name string, m []byte, extra string) func() ([]byte, string) {
		return asJSON(fmt.Sprintf(`{"name":%q,"targetDevices":["d1"],"module":%q%s}`, name, base64.StdEncoding.EncodeToString(m), extra))
	}
	asMultipart := func(application string, m []byte) func() ([]byte, string) {
		return func() ([]byte, string) { return multipartDeploy(t, application, m) }
	}
	tests := []struct {
		name   string
		body   func() ([]byte, string)
		status int
		kind   ProblemType
		detail string // a substring naming the limit or rule that fired
	}{
		{"json module at the limit", jsonDeploy("at", module(MaxModuleSize), ""), 201, "", ""},
		{"json module over the limit", jsonDeploy("over", module(MaxModuleSize+1), ""), 413, ProblemTooLarge, "the module is 786433 bytes"},
		{"json body over the limit", jsonDeploy("body", module(MaxModuleSize), `,"version":"`+strings.Repeat("v", maxDeployMetadata)+`"`),
			413, ProblemTooLarge, fmt.Sprintf("limit of %d bytes", maxDeployJSON)},
		{"multipart module at the limit", asMultipart(`{"name":"mat","targetDevices":["d1"]}`, module(MaxModuleSize)), 201, "", ""},
		{"multipart module over the limit", asMultipart(`{"name":"mover","targetDevices":["d1"]}`, module(MaxModuleSize+1)), 413, ProblemTooLarge, `part "module" is more than`},
		{"multipart body over the limit", func() ([]byte, string) {
			b, ct := multipartDeploy(t, `{"name":"pre","targetDevices":["d1"]}`, module(16))
			return append(bytes.Repeat([]byte("preamble\r\n"), maxDeployMultipart/10+1), b...), ct
		}, 413, ProblemTooLarge, fmt.Sprintf("limit of %d bytes", maxDeployMultipart)},
		{"multipart application part too big", asMultipart(`{"name":"x","version":"`+strings.Repeat("v", maxDeployMetadata)+`"}`, module(16)), 413, ProblemTooLarge, `part "application" is more than`},
		{"multipart without application", asMultipart("", module(16)), 400, ProblemInvalid, "application"},
		{"multipart module twice", asMultipart(`{"name":"x","module":"AGFzbQEAAAA=","targetDevices":["d"]}`, module(16)), 400, ProblemInvalid, `not in "application"`},
		{"multipart truncated", func() ([]byte, string) {
			return []byte("--xyz\r\nContent-Disposition: form-data; name=\"application\"\r\n\r\n{\"name\""), "multipart/form-data; boundary=xyz"
		}, 400, ProblemInvalid, "multipart body does not parse"},
		{"not wasm", asJSON(`{"name":"x","targetDevices":["d1"],"module":"aGVsbG8gd29ybGQ="}`), 400, ProblemInvalid, "not a WebAssembly module"},
		{"no module", asJSON(`{"name":"x","targetDevices":["d1"]}`), 400, ProblemInvalid, "module"},
		{"no targets", asJSON(`{"name":"x","module":"AGFzbQEAAAA="}`), 400, ProblemInvalid, "one of targetDevices or selector"},
		{"bad name", jsonDeploy("Blinky_1", module(16), ""), 400, ProblemInvalid, "name"},
		{"bad limits", jsonDeploy("x", module(16), `,"config":{"memoryLimit":-1,"maxStackSize":99999999,"executionTimeout":"2h"}`),
			400, ProblemInvalid, "config.executionTimeout"},
		{"bad timeout", jsonDeploy("x", module(16), `,"config":{"executionTimeout":"thirty seconds"}`), 400, ProblemInvalid, "not a duration"},
		{"bad state", jsonDeploy("x", module(16), `,"state":"paused"`), 400, ProblemInvalid, "paused"},
		{"bad selector", asJSON(`{"name":"x","module":"AGFzbQEAAAA=","selector":{"matchLabels":{"a b":"c"}}}`), 400, ProblemInvalid, "selector"},
		{"bad labels", jsonDeploy("x", module(16), `,"labels":{"-x":"y"}`), 400, ProblemInvalid, "labels"},
		{"duplicate target", asJSON(`{"name":"x","module":"AGFzbQEAAAA=","targetDevices":["d1","d1"]}`), 400, ProblemInvalid, "duplicate"},
		{"unknown field", jsonDeploy("x", module(16), `,"confidential":true`), 400, ProblemInvalid, "confidential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, ct := tt.body()
			res := e.do(t, "POST", "/api/v1/namespaces/fleet/applications", adminToken, body, ct)
			if tt.status == 201 {
				if res.Code != 201 {
					t.Fatalf("status %d: %s", res.Code, res.Body)
				}
				return
			}
			p := res.wantProblem(t, tt.status, tt.kind)
			if !strings.Contains(p.Detail+fmt.Sprint(p.Errors), tt.detail) {
				t.Errorf("problem %q %+v does not say %q", p.Detail, p.Errors, tt.detail)
			}
		})
	}
}
