package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fixture"
	"github.com/wasmbed/wasmbed/internal/gateway/httpapi"
)

// TestRoles checks 401, 403 and success for each role on each kind of
// route, with tokens issued by the API server, reviewed with TokenReview and
// authorised with SubjectAccessReview against the shipped ClusterRoles.
func TestRoles(t *testing.T) {
	s := setup(t)
	ns := env.Namespace(t)
	dev := fixture.Device("d1", fixture.InNamespace(ns))
	if err := env.Client.Create(t.Context(), dev); err != nil {
		t.Fatal(err)
	}
	s.cached(t, dev)

	type step struct {
		name, method, path string
		body               func(role string) []byte
		// ok is the success status; allowed lists the roles that get it.
		ok      int
		allowed []string
		// after runs after a successful step.
		after func(t *testing.T, role string)
	}
	deploy := func(role string) []byte {
		return jsonBody(t, httpapi.DeployRequest{Name: "app-" + role, Module: fixture.MinimalModule, TargetDevices: []string{"d1"}})
	}
	readers := []string{saViewer, saOperator, saAdmin}
	writers := []string{saOperator, saAdmin}
	admins := []string{saAdmin}
	everyone := []string{saNobody, saViewer, saOperator, saAdmin}
	steps := []step{
		{"openapi", "GET", "/api/v1/openapi.json", nil, 200, everyone, nil},
		{"self", "GET", "/api/v1/self", nil, 200, everyone, nil},
		{"summary", "GET", "/api/v1/summary", nil, 200, readers, nil},
		{"list all devices", "GET", "/api/v1/devices", nil, 200, readers, nil},
		{"list devices", "GET", "/api/v1/namespaces/" + ns + "/devices", nil, 200, readers, nil},
		{"get device", "GET", "/api/v1/namespaces/" + ns + "/devices/d1", nil, 200, readers, nil},
		{"device applications", "GET", "/api/v1/namespaces/" + ns + "/devices/d1/applications", nil, 200, readers, nil},
		{"list applications", "GET", "/api/v1/namespaces/" + ns + "/applications", nil, 200, readers, nil},
		{"pairing status", "GET", "/api/v1/pairing", nil, 200, readers, nil},
		{"events", "GET", "/api/v1/namespaces/" + ns + "/events", nil, 200, readers, nil},
		{"deploy", "POST", "/api/v1/namespaces/" + ns + "/applications", deploy, 201, writers, func(t *testing.T, role string) {
			var app wasmbedv1.Application
			if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "app-" + role}, &app); err != nil {
				t.Fatal(err)
			}
			s.cached(t, &app)
		}},
		{"rollout", "GET", "/api/v1/namespaces/" + ns + "/applications/app-%s/rollout", nil, 200, writers, nil},
		// Resolved as update applications: a rollout that is not paused is a
		// conflict for the roles that may resume it.
		{"resume", "POST", "/api/v1/namespaces/" + ns + "/applications/app-%s/rollout/resume", nil, 409, writers, nil},
		{"undo", "POST", "/api/v1/namespaces/" + ns + "/applications/app-%s/rollout/undo", nil, 409, writers, nil},
		{"stop", "POST", "/api/v1/namespaces/" + ns + "/applications/app-%s/stop", nil, 200, writers, nil},
		{"start", "POST", "/api/v1/namespaces/" + ns + "/applications/app-%s/start", nil, 200, writers, nil},
		{"delete", "DELETE", "/api/v1/namespaces/" + ns + "/applications/app-%s", nil, 204, writers, nil},
		{"revoke", "POST", "/api/v1/namespaces/" + ns + "/devices/d1/revoke", nil, 200, admins, nil},
		{"open pairing", "POST", "/api/v1/pairing/open", nil, 200, admins, nil},
		{"close pairing", "POST", "/api/v1/pairing/close", nil, 200, admins, nil},
	}
	for _, role := range []string{"anonymous", "forged", saNobody, saViewer, saOperator, saAdmin} {
		t.Run(role, func(t *testing.T) {
			token := s.tokens[role]
			if role == "forged" {
				token = s.tokens[saAdmin][:len(s.tokens[saAdmin])-4] + "AAAA"
			}
			for _, st := range steps {
				path := st.path
				if strings.Contains(path, "%s") {
					path = fmt.Sprintf(path, role)
				}
				var body []byte
				if st.body != nil {
					body = st.body(role)
				}
				ct := ""
				if body != nil {
					ct = "application/json"
				}
				res := s.call(t, st.method, path, token, body, ct)
				allowed := strings.Contains(" "+strings.Join(st.allowed, " ")+" ", " "+role+" ")
				switch {
				case token == "":
					if p := res.problem(t); res.status != 401 || p.Kind() != httpapi.ProblemUnauthenticated {
						t.Errorf("%s: %d %s, want 401", st.name, res.status, p.Kind())
					}
				case role == "forged":
					if p := res.problem(t); res.status != 401 || p.Kind() != httpapi.ProblemUnauthenticated {
						t.Errorf("%s: %d %s, want 401", st.name, res.status, p.Kind())
					}
				case allowed:
					if res.status != st.ok {
						t.Fatalf("%s: %d, want %d: %s", st.name, res.status, st.ok, res.body)
					}
					if st.after != nil {
						st.after(t, role)
					}
				case strings.Contains(path, "app-"+role) && !slicesContains(writers, role):
					// The role could not deploy: its application does not
					// exist, and it may not act on it anyway.
					if res.status != 403 && res.status != 404 {
						t.Errorf("%s: %d, want 403: %s", st.name, res.status, res.body)
					}
				default:
					if p := res.problem(t); res.status != 403 || p.Kind() != httpapi.ProblemForbidden {
						t.Errorf("%s: %d %s, want 403: %s", st.name, res.status, p.Kind(), p.Detail)
					}
				}
			}
		})
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if res := s.call(t, "GET", path, "", nil, ""); res.status != http.StatusOK {
			t.Errorf("%s without a token: %d", path, res.status)
		}
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNamespaceRole checks a role bound in one namespace: allowed there,
// refused in another namespace and across all namespaces.
func TestNamespaceRole(t *testing.T) {
	s := setup(t)
	token := s.tokens[saLabViewer]
	if res := s.call(t, "GET", "/api/v1/namespaces/"+labNamespace+"/devices", token, nil, ""); res.status != 200 {
		t.Errorf("in lab: %d %s", res.status, res.body)
	}
	for _, path := range []string{"/api/v1/namespaces/default/devices", "/api/v1/devices", "/api/v1/summary"} {
		res := s.call(t, "GET", path, token, nil, "")
		if p := res.problem(t); res.status != 403 || !strings.Contains(p.Detail, "devices.wasmbed.github.io") {
			t.Errorf("%s: %d %q", path, res.status, p.Detail)
		}
	}
	var self httpapi.Self
	s.call(t, "GET", "/api/v1/self?namespace="+labNamespace, token, nil, "").decode(t, 200, &self)
	if !self.Operations["listDevices"] || self.Operations["listAllDevices"] || self.Operations["deployApplication"] ||
		!strings.HasPrefix(self.User, "system:serviceaccount:"+usersNamespace+":") {
		t.Errorf("self %+v", self)
	}
}

// TestAudience checks that a gateway configured with an audience refuses
// tokens issued for the API server and accepts tokens issued for it.
func TestAudience(t *testing.T) {
	s := setup(t)
	h, err := newHandler(s, httpapi.DelegatingAuthOptions{Client: s.clientset, Audiences: []string{"wasmbed-gateway"}})
	if err != nil {
		t.Fatal(err)
	}
	scoped := &suite{server: newServer(t, h)}
	if res := scoped.call(t, "GET", "/api/v1/devices", s.tokens[saViewer], nil, ""); res.status != 401 {
		t.Errorf("API server token: %d, want 401", res.status)
	}
	tok, err := issueToken(t.Context(), s.clientset, saViewer, []string{"wasmbed-gateway"})
	if err != nil {
		t.Fatal(err)
	}
	if res := scoped.call(t, "GET", "/api/v1/devices", tok, nil, ""); res.status != 200 {
		t.Errorf("gateway token: %d %s", res.status, res.body)
	}
}
