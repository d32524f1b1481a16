package httpapi

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

func TestApplicationActions(t *testing.T) {
	e := newTestEnv(t, application("fleet", "blinky"))
	var app Application
	e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/stop", adminToken, nil, "").decode(t, 200, &app)
	if app.Spec.State != wasmbedv1.RunStateStopped {
		t.Errorf("after stop: state %q", app.Spec.State)
	}
	var stored wasmbedv1.Application
	if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); err != nil || stored.Spec.State != wasmbedv1.RunStateStopped {
		t.Errorf("stored state %q, %v", stored.Spec.State, err)
	}
	// An empty JSON object is an empty body.
	e.do(t, "POST", "/api/v1/namespaces/fleet/applications/blinky/start", adminToken, "{}", "application/json").decode(t, 200, &app)
	if app.Spec.State != wasmbedv1.RunStateRunning || app.Spec.Module.Size != len(wasmHeader) {
		t.Errorf("after start: state %q module %+v", app.Spec.State, app.Spec.Module)
	}
	res := e.do(t, "DELETE", "/api/v1/namespaces/fleet/applications/blinky", adminToken, nil, "")
	if res.Code != 204 || res.Body.Len() != 0 {
		t.Fatalf("delete: %d %s", res.Code, res.Body)
	}
	if err := e.client.Get(t.Context(), key("fleet", "blinky"), &stored); !apierrors.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
	e.do(t, "DELETE", "/api/v1/namespaces/fleet/applications/blinky", adminToken, nil, "").wantProblem(t, 404, ProblemNotFound)
}

func TestRevoke(t *testing.T) {
	e := newTestEnv(t, device("fleet", "d1"))
	for range 2 { // idempotent
		var d wasmbedv1.Device
		e.do(t, "POST", "/api/v1/namespaces/fleet/devices/d1/revoke", adminToken, nil, "").decode(t, 200, &d)
		if !d.Spec.Revoked {
			t.Error("the answer is not revoked")
		}
	}
	var d wasmbedv1.Device
	if err := e.client.Get(t.Context(), key("fleet", "d1"), &d); err != nil || !d.Spec.Revoked {
		t.Errorf("stored revoked %v, %v", d.Spec.Revoked, err)
	}
}

func TestDeviceMetrics(t *testing.T) {
	e := newTestEnv(t,
		device("fleet", "here"),
		device("fleet", "there", func(d *wasmbedv1.Device) {
			d.Status.Phase, d.Status.Gateway = wasmbedv1.DevicePhaseConnected, "gw-7"
		}),
		device("fleet", "off"))
	e.fleet.metrics["fleet/here"] = DeviceMetrics{ReceivedAt: t0, UptimeSeconds: 42, FreeMemoryBytes: 1000,
		Link: LinkMetrics{RSSI: -60, LossPermille: 3}, Applications: []AppMetrics{{Name: "blinky", Fuel: 10, Traps: 1}}}
	var m DeviceMetrics
	e.do(t, "GET", "/api/v1/namespaces/fleet/devices/here/metrics", viewerToken, nil, "").decode(t, 200, &m)
	if m.UptimeSeconds != 42 || m.Link.RSSI != -60 || len(m.Applications) != 1 || m.Applications[0].Traps != 1 || !m.ReceivedAt.Equal(t0) {
		t.Errorf("metrics %+v", m)
	}
	p := e.do(t, "GET", "/api/v1/namespaces/fleet/devices/there/metrics", viewerToken, nil, "").wantProblem(t, 404, ProblemMetricsUnavailable)
	if p.Gateway != "gw-7" {
		t.Errorf("gateway %q, want gw-7", p.Gateway)
	}
	p = e.do(t, "GET", "/api/v1/namespaces/fleet/devices/off/metrics", viewerToken, nil, "").wantProblem(t, 404, ProblemMetricsUnavailable)
	if p.Gateway != "" || !strings.Contains(p.Detail, "not connected") {
		t.Errorf("off: gateway %q detail %q", p.Gateway, p.Detail)
	}
	e.do(t, "GET", "/api/v1/namespaces/fleet/devices/gone/metrics", viewerToken, nil, "").wantProblem(t, 404, ProblemNotFound)
}

func TestPairing(t *testing.T) {
	system := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "wasmbed-system"}}
	e := newTestEnv(t, system)
	var s PairingStatus
	e.do(t, "GET", "/api/v1/pairing", viewerToken, nil, "").decode(t, 200, &s)
	if s.Open || s.OpenUntil != nil {
		t.Errorf("no ConfigMap: %+v, want closed", s)
	}
	e.do(t, "POST", "/api/v1/pairing/open", adminToken, PairingOpenRequest{Duration: "10m", GenerateToken: true}, "").decode(t, 200, &s)
	if !s.Open || !s.TokenRequired || len(s.Token) != 2*pairing.TokenSize || s.OpenedBy != "alice" || !s.OpenUntil.Time.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("opened: %+v", s)
	}
	w := e.storedWindow(t)
	if !w.OpenAt(t0) || !w.TokenMatches([]byte(s.Token)) || w.TokenMatches([]byte("guess")) {
		t.Errorf("stored window %+v does not match the answer", w)
	}
	var shown PairingStatus
	e.do(t, "GET", "/api/v1/pairing", viewerToken, nil, "").decode(t, 200, &shown)
	if !shown.Open || !shown.TokenRequired || shown.Token != "" {
		t.Errorf("status shows %+v; the token must not be shown again", shown)
	}
	// Reopening without a token drops the token of the earlier window.
	e.do(t, "POST", "/api/v1/pairing/open", adminToken, nil, "").decode(t, 200, &s)
	if w := e.storedWindow(t); w.TokenRequired() || !w.OpenUntil.Equal(t0.Add(pairing.DefaultDuration)) {
		t.Errorf("reopened: %+v", w)
	}
	// The window closes by itself.
	e.clock.SetTime(t0.Add(pairing.DefaultDuration))
	e.do(t, "GET", "/api/v1/pairing", viewerToken, nil, "").decode(t, 200, &shown)
	if shown.Open {
		t.Errorf("after its duration: %+v", shown)
	}
	e.clock.SetTime(t0)
	e.do(t, "POST", "/api/v1/pairing/close", adminToken, nil, "").decode(t, 200, &s)
	if s.Open || e.storedWindow(t).OpenAt(t0) {
		t.Errorf("closed: %+v", s)
	}
}

func (e *testEnv) storedWindow(t *testing.T) pairing.Window {
	t.Helper()
	var cm corev1.ConfigMap
	if err := e.client.Get(t.Context(), key("wasmbed-system", wasmbedv1.PairingConfigMap), &cm); err != nil {
		t.Fatal(err)
	}
	w, err := pairing.Parse(cm.Data)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestSummary(t *testing.T) {
	objs := fleet(30)
	objs = append(objs,
		application("fleet", "a", func(a *wasmbedv1.Application) {
			a.Status = wasmbedv1.ApplicationStatus{Phase: wasmbedv1.ApplicationPhaseRunning, TargetCount: 10, RunningCount: 10, UpdatedCount: 10}
		}),
		application("fleet", "b", func(a *wasmbedv1.Application) {
			a.Status = wasmbedv1.ApplicationStatus{Phase: wasmbedv1.ApplicationPhasePartiallyRunning, TargetCount: 5, RunningCount: 3, FailedCount: 2, UpdatedCount: 5}
		}),
		application("lab", "c"))
	e := newTestEnv(t, objs...)
	var s Summary
	e.do(t, "GET", "/api/v1/summary", viewerToken, nil, "").decode(t, 200, &s)
	if s.Devices.Total != 30 || s.Devices.ByPhase["Pending"] != 10 || s.Devices.ByPhase["Connected"] != 10 ||
		s.Devices.ByPhase["Unreachable"] != 10 || s.Devices.ByPhase["Error"] != 0 || s.Devices.ByType["hifive1"] != 15 ||
		s.Devices.Gateways["gw-0"] != 5 || s.Devices.Gateways["gw-1"] != 5 {
		t.Errorf("devices %+v", s.Devices)
	}
	if s.Applications.Total != 3 || s.Applications.ByPhase["Pending"] != 1 || s.Applications.ByPhase["Running"] != 1 ||
		s.Applications.Targets != 15 || s.Applications.Running != 13 || s.Applications.Failed != 2 || s.Applications.Updated != 15 {
		t.Errorf("applications %+v", s.Applications)
	}
	if !s.GeneratedAt.Time.Equal(t0) || s.Namespace != "" {
		t.Errorf("generated %v namespace %q", s.GeneratedAt, s.Namespace)
	}
	e.do(t, "GET", "/api/v1/namespaces/lab/summary", viewerToken, nil, "").decode(t, 200, &s)
	if s.Namespace != "lab" || s.Devices.Total != 6 || s.Applications.Total != 1 {
		t.Errorf("lab: %d devices, %d applications", s.Devices.Total, s.Applications.Total)
	}
}

func TestSelf(t *testing.T) {
	e := newTestEnv(t)
	var s Self
	e.do(t, "GET", "/api/v1/self", viewerToken, nil, "").decode(t, 200, &s)
	if s.User != "victor" || s.Namespace != "fleet" || s.DefaultNamespace != "fleet" || s.SystemNamespace != "wasmbed-system" {
		t.Errorf("self %+v", s)
	}
	for op, want := range map[string]bool{"listDevices": true, "getPairing": true, "deployApplication": false,
		"revokeDevice": false, "openPairing": false, "getRollout": true} {
		if got, ok := s.Operations[op]; !ok || got != want {
			t.Errorf("operation %s: %v (present %v), want %v", op, got, ok, want)
		}
	}
	if _, ok := s.Operations["healthz"]; ok {
		t.Error("public routes are listed")
	}
	e.auth.lastAsked()
	e.do(t, "GET", "/api/v1/self?namespace=lab", adminToken, nil, "").decode(t, 200, &s)
	if s.Namespace != "lab" || !s.Operations["deployApplication"] {
		t.Errorf("admin in lab: %+v", s)
	}
	for _, a := range e.auth.lastAsked() {
		defaultDeploy := a.Namespace == "fleet" && a.Verb == "create"
		if a.Namespace != "lab" && a.Namespace != "" && a.Namespace != "wasmbed-system" && !defaultDeploy {
			t.Errorf("asked %s %s in %q", a.Verb, a.Resource, a.Namespace)
		}
	}
	e.do(t, "GET", "/api/v1/self?namespace=No_Such", adminToken, nil, "").wantProblem(t, 400, ProblemInvalid)
}

// TestKubernetesErrors checks how errors of Kubernetes map to problems.
func TestKubernetesErrors(t *testing.T) {
	gr := wasmbedv1.GroupVersion.WithResource("applications").GroupResource()
	invalid := apierrors.NewInvalid(wasmbedv1.GroupVersion.WithKind("Application").GroupKind(), "x", nil)
	invalid.ErrStatus.Details.Causes = []metav1.StatusCause{{Field: "spec.wasmBinary", Message: "should match"}}
	tests := []struct {
		err    error
		status int
		kind   ProblemType
		shown  string
	}{
		{apierrors.NewNotFound(gr, "x"), 404, ProblemNotFound, "application fleet/x not found"},
		{apierrors.NewAlreadyExists(gr, "x"), 409, ProblemConflict, "already exists"},
		{apierrors.NewConflict(gr, "x", errors.New("rv")), 409, ProblemConflict, "changed concurrently"},
		{invalid, 422, ProblemRejected, "is invalid"},
		{apierrors.NewForbidden(gr, "x", errors.New(`admission webhook "v.example" denied the request: no`)), 422, ProblemRejected, "denied the request"},
		{apierrors.NewForbidden(gr, "x", errors.New("User \"system:serviceaccount:gw\" cannot create")), 500, ProblemInternal, "cause is in its log"},
		{apierrors.NewServiceUnavailable("etcd"), 503, ProblemUnavailable, "did not answer"},
		{apierrors.NewTooManyRequests("slow down", 1), 503, ProblemUnavailable, "did not answer"},
		{fmt.Errorf("dial: %w", errors.New("refused")), 500, ProblemInternal, "cause is in its log"},
	}
	for _, tt := range tests {
		p := fromKubernetes(tt.err, "application fleet/x")
		if p.Status != tt.status || p.Kind() != tt.kind || !strings.Contains(p.Detail, tt.shown) {
			t.Errorf("%v: got %d %s %q, want %d %s %q", tt.err, p.Status, p.Kind(), p.Detail, tt.status, tt.kind, tt.shown)
		}
		if tt.status == 500 && strings.Contains(p.Detail, "serviceaccount") {
			t.Errorf("internal detail leaks the cause: %q", p.Detail)
		}
		if !errors.Is(p, tt.err) {
			t.Errorf("%v: the cause is not kept", tt.err)
		}
	}
	if p := fromKubernetes(invalid, "x"); len(p.Errors) != 1 || p.Errors[0].Field != "spec.wasmBinary" {
		t.Errorf("422 causes %+v", p.Errors)
	}
}

func TestMetricsFromReport(t *testing.T) {
	r := &protocol.MetricsReport{UptimeSeconds: 7, FreeMemory: 1024, Link: protocol.Link{RSSI: -70, LossPermille: 12},
		Apps: []protocol.AppMetrics{{App: "blinky", MemoryBytes: 65536, Fuel: 9, CPUMicros: 8, Executions: 7, Traps: 6}}}
	got := MetricsFromReport(r, t0)
	want := DeviceMetrics{ReceivedAt: t0, UptimeSeconds: 7, FreeMemoryBytes: 1024, Link: LinkMetrics{RSSI: -70, LossPermille: 12},
		Applications: []AppMetrics{{Name: "blinky", MemoryBytes: 65536, Fuel: 9, CPUMicros: 8, Executions: 7, Traps: 6}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := MetricsFromReport(&protocol.MetricsReport{}, t0); got.Applications == nil {
		t.Error("no applications is null, want []")
	}
}
