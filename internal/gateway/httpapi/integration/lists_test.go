package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fixture"
	"github.com/wasmbed/wasmbed/internal/gateway/httpapi"
)

// createDevices creates n devices in ns, every third Connected, with a few
// workers, and waits until the cache holds them all.
func createDevices(t *testing.T, s *suite, ns string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				d := fixture.Device(fmt.Sprintf("dev-%04d", i), fixture.InNamespace(ns),
					fixture.WithLabels(map[string]string{"rack": fmt.Sprintf("r%d", i%4)}))
				if err := env.Client.Create(t.Context(), d); err != nil {
					errs <- err
					continue
				}
				if i%3 == 0 {
					d.Status.Phase, d.Status.Gateway = wasmbedv1.DevicePhaseConnected, "gw-0"
					if err := env.Client.Status().Update(t.Context(), d); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, "the cache holds every device", func() bool {
		var l wasmbedv1.DeviceList
		if err := s.cache.List(t.Context(), &l, client.InNamespace(ns)); err != nil {
			return false
		}
		connected := 0
		for _, d := range l.Items {
			if d.Status.Phase == wasmbedv1.DevicePhaseConnected {
				connected++
			}
		}
		return len(l.Items) == n && connected == (n+2)/3
	})
}

// TestPagination pages through a few hundred devices served from the real
// cache, with and without filters.
func TestPagination(t *testing.T) {
	s := setup(t)
	ns := env.Namespace(t)
	const n = 300
	createDevices(t, s, ns, n)
	token := s.tokens[saViewer]
	tests := []struct {
		query url.Values
		want  func(i int) bool
	}{
		{url.Values{"limit": {"50"}}, func(int) bool { return true }},
		{url.Values{"limit": {"33"}, "phase": {"Connected"}}, func(i int) bool { return i%3 == 0 }},
		{url.Values{"limit": {"40"}, "labelSelector": {"rack=r1"}, "phase": {"Pending"}}, func(i int) bool { return i%4 == 1 && i%3 != 0 }},
		{url.Values{"search": {"dev-01"}}, func(i int) bool { return i >= 100 && i < 200 }},
	}
	for _, tt := range tests {
		t.Run(tt.query.Encode(), func(t *testing.T) {
			var want []string
			for i := range n {
				if tt.want(i) {
					want = append(want, fmt.Sprintf("dev-%04d", i))
				}
			}
			var got []string
			q := tt.query
			for pages := 0; ; pages++ {
				if pages > n {
					t.Fatal("too many pages")
				}
				var page httpapi.Page[wasmbedv1.Device]
				s.call(t, "GET", "/api/v1/namespaces/"+ns+"/devices?"+q.Encode(), token, nil, "").decode(t, 200, &page)
				if page.Total != len(want) {
					t.Fatalf("total %d, want %d", page.Total, len(want))
				}
				for _, d := range page.Items {
					got = append(got, d.Name)
				}
				if page.Continue == "" {
					break
				}
				q.Set("continue", page.Continue)
			}
			if !slices.Equal(got, want) {
				t.Errorf("listed %d devices, want %d", len(got), len(want))
			}
		})
	}
	var sum httpapi.Summary
	s.call(t, "GET", "/api/v1/namespaces/"+ns+"/summary", token, nil, "").decode(t, 200, &sum)
	if sum.Devices.Total != n || sum.Devices.ByPhase["Connected"] != n/3 || sum.Devices.Gateways["gw-0"] != n/3 || sum.Devices.ByType["esp32"] != n {
		t.Errorf("summary %+v", sum.Devices)
	}
}

// TestRejectedByKubernetes checks that a deploy Kubernetes refuses (here an
// admission policy) is a 422 with Kubernetes' message, and a duplicate a
// 409.
func TestRejectedByKubernetes(t *testing.T) {
	s := setup(t)
	ns := env.Namespace(t)
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "test-no-forbidden-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{APIGroups: []string{wasmbedv1.GroupVersion.Group},
						APIVersions: []string{"v1"}, Resources: []string{"applications"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.metadata.name != 'forbidden'",
				Message:    "applications named forbidden are refused by policy",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: policy.Name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, o := range []client.Object{policy, binding} {
		if err := env.Client.Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
	token := s.tokens[saOperator]
	body := jsonBody(t, httpapi.DeployRequest{Name: "forbidden", Module: fixture.MinimalModule, TargetDevices: []string{"d1"}})
	path := "/api/v1/namespaces/" + ns + "/applications"
	var res result
	eventually(t, "the policy takes effect", func() bool {
		res = s.call(t, "POST", path, token, body, "application/json")
		if res.status == 201 {
			_ = env.Client.Delete(t.Context(), fixture.Application("forbidden", fixture.InNamespace(ns)))
			eventually(t, "deleted", func() bool {
				err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "forbidden"}, &wasmbedv1.Application{})
				return apierrors.IsNotFound(err)
			})
		}
		return res.status != 201
	})
	p := res.problem(t)
	if res.status != 422 || p.Kind() != httpapi.ProblemRejected || !strings.Contains(p.Detail, "refused by policy") {
		t.Errorf("got %d %s %q, want 422 rejected with the policy's message", res.status, p.Kind(), p.Detail)
	}
	ok := jsonBody(t, httpapi.DeployRequest{Name: "allowed", Module: fixture.MinimalModule, TargetDevices: []string{"d1"}})
	if res := s.call(t, "POST", path, token, ok, "application/json"); res.status != 201 {
		t.Fatalf("allowed: %d %s", res.status, res.body)
	}
	res = s.call(t, "POST", path, token, ok, "application/json")
	if p := res.problem(t); res.status != 409 || p.Kind() != httpapi.ProblemConflict {
		t.Errorf("duplicate: %d %s", res.status, p.Kind())
	}
	// Kubernetes applied the CRD's defaults to what the API created.
	var app wasmbedv1.Application
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "allowed"}, &app); err != nil {
		t.Fatal(err)
	}
	if app.Spec.State != wasmbedv1.RunStateRunning || app.Spec.Config.ExecutionTimeout != "30s" ||
		!strings.HasPrefix(app.Annotations[httpapi.AnnotationCreatedBy], "system:serviceaccount:") {
		t.Errorf("created %+v %v", app.Spec, app.Annotations)
	}
}

// TestBodies checks oversized and malformed bodies over a real connection.
func TestBodies(t *testing.T) {
	s := setup(t)
	ns := env.Namespace(t)
	token := s.tokens[saAdmin]
	path := "/api/v1/namespaces/" + ns + "/applications"
	huge := make([]byte, httpapi.MaxModuleSize+1)
	copy(huge, fixture.MinimalModule)
	tests := []struct {
		name, contentType string
		body              []byte
		status            int
		kind              httpapi.ProblemType
	}{
		{"module over 768 KiB", "application/json",
			jsonBody(t, httpapi.DeployRequest{Name: "huge", Module: huge, TargetDevices: []string{"d1"}}), 413, httpapi.ProblemTooLarge},
		{"body over the limit", "application/json",
			[]byte(`{"name":"x","version":"` + strings.Repeat("v", 2<<20) + `"}`), 413, httpapi.ProblemTooLarge},
		{"truncated JSON", "application/json", []byte(`{"name":"x","module":"AGFz`), 400, httpapi.ProblemInvalid},
		{"not JSON", "application/json", []byte(`<xml/>`), 400, httpapi.ProblemInvalid},
		{"wrong media type", "text/plain", []byte(`hello`), 415, httpapi.ProblemUnsupportedMediaType},
		{"module as text", "application/json", []byte(`{"name":"x","targetDevices":["d1"],"module":"` +
			base64.StdEncoding.EncodeToString([]byte("#!/bin/sh\necho hi")) + `"}`), 400, httpapi.ProblemInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.call(t, "POST", path, token, tt.body, tt.contentType)
			if p := res.problem(t); res.status != tt.status || p.Kind() != tt.kind {
				t.Errorf("got %d %s (%s), want %d %s", res.status, p.Kind(), p.Detail, tt.status, tt.kind)
			}
		})
	}
	var apps wasmbedv1.ApplicationList
	if err := env.Client.List(t.Context(), &apps, client.InNamespace(ns)); err != nil || len(apps.Items) != 0 {
		t.Errorf("applications created: %d, %v", len(apps.Items), err)
	}
}

// TestReadyz checks readiness with the gateway's fleet ready and not.
func TestReadyz(t *testing.T) {
	s := setup(t)
	defer s.fleet.setReady(nil)
	token := s.tokens[saViewer]
	if res := s.call(t, "GET", "/readyz", "", nil, ""); res.status != 200 || string(res.body) != "ok\n" {
		t.Errorf("ready: %d %q", res.status, res.body)
	}
	s.fleet.setReady(errors.New("device listener not up"))
	res := s.call(t, "GET", "/readyz", "", nil, "")
	if p := res.problem(t); res.status != 503 || p.Kind() != httpapi.ProblemNotReady || strings.Contains(string(res.body), "listener") {
		t.Errorf("not ready: %d %s %s", res.status, p.Kind(), res.body)
	}
	if res := s.call(t, "GET", "/api/v1/devices", token, nil, ""); res.status != 503 {
		t.Errorf("API while not ready: %d", res.status)
	}
	if res := s.call(t, "GET", "/healthz", "", nil, ""); res.status != 200 {
		t.Errorf("healthz while not ready: %d", res.status)
	}
	s.fleet.setReady(nil)
	if res := s.call(t, "GET", "/api/v1/devices", token, nil, ""); res.status != 200 {
		t.Errorf("API when ready again: %d", res.status)
	}
}

// TestWatchDevices streams the changes of devices from the real informer.
func TestWatchDevices(t *testing.T) {
	s := setup(t)
	ns := env.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.server.URL+"/api/v1/namespaces/"+ns+"/devices?watch=true&phase=Connected", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.tokens[saViewer])
	resp, err := s.server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				obj := ""
				if i := strings.Index(v, `"name":"`); i >= 0 {
					obj = strings.SplitN(v[i+8:], `"`, 2)[0]
				}
				events <- strings.TrimSpace(name + " " + obj)
			}
		}
	}()
	next := func() string {
		select {
		case e := <-events:
			return e
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return ""
	}
	if e := next(); e != "READY" {
		t.Fatalf("first event %q", e)
	}
	d := fixture.Device("w1", fixture.InNamespace(ns))
	other := fixture.Device("w2", fixture.InNamespace(ns))
	for _, x := range []*wasmbedv1.Device{d, other} {
		if err := env.Client.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	d.Status.Phase = wasmbedv1.DevicePhaseConnected
	if err := env.Client.Status().Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	if e := next(); e != "ADDED w1" {
		t.Errorf("after connecting: %q, want ADDED w1", e)
	}
	if err := env.Client.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if e := next(); e != "DELETED w1" {
		t.Errorf("after deleting: %q, want DELETED w1", e)
	}
}
