package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Tokens of the fake authenticator: admin may do anything, viewer only
// read, nobody nothing.
const (
	adminToken  = "admin-token"
	viewerToken = "viewer-token"
	nobodyToken = "nobody-token"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

type fakeFleet struct {
	mu      sync.Mutex
	ready   error
	metrics map[string]DeviceMetrics
}

func (f *fakeFleet) DeviceMetrics(ns, name string) (DeviceMetrics, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.metrics[ns+"/"+name]
	return m, ok
}

func (f *fakeFleet) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeFleet) setReady(err error) {
	f.mu.Lock()
	f.ready = err
	f.mu.Unlock()
}

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := wasmbedv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeAuth authenticates the three test tokens and authorises admin for
// everything and viewer for reads; it records every decision asked.
type fakeAuth struct {
	mu    sync.Mutex
	asked []authorizer.AttributesRecord
}

func (f *fakeAuth) authenticator() authenticator.Request {
	return bearertoken.New(authenticator.TokenFunc(func(_ context.Context, token string) (*authenticator.Response, bool, error) {
		switch token {
		case adminToken:
			return &authenticator.Response{User: &user.DefaultInfo{Name: "alice", Groups: []string{"admins"}}}, true, nil
		case viewerToken:
			return &authenticator.Response{User: &user.DefaultInfo{Name: "victor"}}, true, nil
		case nobodyToken:
			return &authenticator.Response{User: &user.DefaultInfo{Name: "nobody"}}, true, nil
		}
		return nil, false, errors.New("token unknown")
	}))
}

func (f *fakeAuth) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	f.mu.Lock()
	f.asked = append(f.asked, a.(authorizer.AttributesRecord))
	f.mu.Unlock()
	switch a.GetUser().GetName() {
	case "alice":
		return authorizer.DecisionAllow, "", nil
	case "victor":
		switch a.GetVerb() {
		case "get", "list", "watch":
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "denied by the test", nil
}

func (f *fakeAuth) lastAsked() []authorizer.AttributesRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.asked
	f.asked = nil
	return out
}

type testEnv struct {
	api    *api
	client client.Client
	fleet  *fakeFleet
	auth   *fakeAuth
	clock  *clocktesting.FakePassiveClock
	reg    *prometheus.Registry
}

func newTestEnv(t testing.TB, objs ...client.Object) *testEnv {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).Build()
	e := &testEnv{client: c, fleet: &fakeFleet{metrics: map[string]DeviceMetrics{}}, auth: &fakeAuth{},
		clock: clocktesting.NewFakePassiveClock(t0), reg: prometheus.NewRegistry()}
	authz := authorizer.AuthorizerFunc(e.auth.Authorize)
	a, err := newAPI(Options{
		Reader: c, Writer: c, Fleet: e.fleet, Events: c,
		Authenticator: e.auth.authenticator(), Authorizer: authz,
		SystemNamespace: "wasmbed-system", DefaultNamespace: "fleet",
		Clock: e.clock, Registerer: e.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.api = a
	return e
}

type response struct {
	*httptest.ResponseRecorder
}

// do sends a request through the API. body may be nil, a string, []byte
// or a value sent as JSON.
func (e *testEnv) do(t testing.TB, method, path, token string, body any, contentType string) response {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
		if contentType == "" {
			contentType = "application/json"
		}
	}
	req := httptest.NewRequestWithContext(t.Context(), method, path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	return response{rec}
}

func (r response) problem(t testing.TB) Problem {
	t.Helper()
	if ct := r.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json; body %s", ct, r.Body.String())
	}
	var p Problem
	if err := json.Unmarshal(r.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	return p
}

// wantProblem checks the status and problem type of a response.
func (r response) wantProblem(t testing.TB, status int, kind ProblemType) Problem {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status %d, want %d; body %s", r.Code, status, r.Body.String())
	}
	p := r.problem(t)
	if p.Kind() != kind || p.Status != status {
		t.Fatalf("problem %s (%d), want %s (%d): %s", p.Kind(), p.Status, kind, status, p.Detail)
	}
	return p
}

func (r response) decode(t testing.TB, status int, v any) {
	t.Helper()
	if r.Code != status {
		t.Fatalf("status %d, want %d; body %s", r.Code, status, r.Body.String())
	}
	if err := json.Unmarshal(r.Body.Bytes(), v); err != nil {
		t.Fatalf("decode %T: %v; body %s", v, err, r.Body.String())
	}
}

func device(ns, name string, mut ...func(*wasmbedv1.Device)) *wasmbedv1.Device {
	d := &wasmbedv1.Device{}
	d.Namespace, d.Name = ns, name
	d.Spec = wasmbedv1.DeviceSpec{DeviceID: name, PublicKey: "MCowBQYDK2VwAyEA" + fmt.Sprintf("%016x", len(name)),
		DeviceType: wasmbedv1.DeviceTypeESP32}
	for _, m := range mut {
		m(d)
	}
	return d
}

func application(ns, name string, mut ...func(*wasmbedv1.Application)) *wasmbedv1.Application {
	a := &wasmbedv1.Application{}
	a.Namespace, a.Name = ns, name
	a.Spec = wasmbedv1.ApplicationSpec{Name: name, WasmBinary: append([]byte(nil), wasmHeader...), TargetDevices: []string{"d1"}}
	for _, m := range mut {
		m(a)
	}
	return a
}

func deviceApplication(ns, app, dev string, phase wasmbedv1.DeviceApplicationPhase) *wasmbedv1.DeviceApplication {
	d := &wasmbedv1.DeviceApplication{}
	d.Namespace, d.Name = ns, wasmbedv1.DeviceApplicationName(app, dev)
	d.Labels = map[string]string{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app), wasmbedv1.LabelDevice: wasmbedv1.LabelValue(dev)}
	d.Spec = wasmbedv1.DeviceApplicationSpec{Device: dev, Application: app, AppName: app, State: wasmbedv1.RunStateRunning,
		Artifact: &wasmbedv1.DeviceArtifact{Manifest: []byte("manifest"), Signature: make([]byte, 64), Sequence: 1,
			ModuleHash: strings.Repeat("ab", 32)}}
	d.Status.Phase = phase
	return d
}

func key(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
