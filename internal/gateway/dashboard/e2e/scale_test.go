package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/gateway/dashboard"
	"github.com/wasmbed/wasmbed/internal/gateway/httpapi"
)

// deviceReader serves a fixed fleet as the gateway's cache does, without
// the fake client's copies, which at 10,000 objects take seconds a list.
type deviceReader struct{ devices []wasmbedv1.Device }

func (r *deviceReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	if d, ok := obj.(*wasmbedv1.Device); ok {
		for i := range r.devices {
			if r.devices[i].Namespace == key.Namespace && r.devices[i].Name == key.Name {
				r.devices[i].DeepCopyInto(d)
				return nil
			}
		}
	}
	return apierrors.NewNotFound(schema.GroupResource{Resource: "objects"}, key.Name)
}

func (r *deviceReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	if l, ok := list.(*wasmbedv1.DeviceList); ok {
		l.Items = r.devices // read only, as with UnsafeDisableDeepCopy
	}
	return nil // no applications, no rollouts
}

type readyFleet struct{}

func (readyFleet) DeviceMetrics(string, string) (httpapi.DeviceMetrics, bool) {
	return httpapi.DeviceMetrics{}, false
}
func (readyFleet) Ready() error { return nil }

// TestDeviceListAt10000 shows the device list of 10,000 devices: the real
// API pages them from a fake cache, and the page renders only the rows in
// view and fetches the pages it scrolls to, not the whole fleet.
func TestDeviceListAt10000(t *testing.T) {
	exe := chromium(t)
	const n = 10000
	scheme, err := gateway.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	fleet := &deviceReader{}
	for i := range n {
		d := &wasmbedv1.Device{}
		d.Namespace, d.Name = "fleet", fmt.Sprintf("device-%05d", i)
		d.Spec = wasmbedv1.DeviceSpec{DeviceID: d.Name, PublicKey: fmt.Sprintf("key-%05d", i), DeviceType: wasmbedv1.DeviceTypeESP32}
		if i%4 == 0 {
			d.Spec.DeviceType = wasmbedv1.DeviceTypeHiFive1
		}
		d.Status.Phase = wasmbedv1.DevicePhaseConnected
		fleet.devices = append(fleet.devices, *d)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	authn := bearertoken.New(authenticator.TokenFunc(func(_ context.Context, token string) (*authenticator.Response, bool, error) {
		return &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}, token == "alice", nil
	}))
	allow := authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
		return authorizer.DecisionAllow, "", nil
	})
	api, err := httpapi.New(httpapi.Options{Reader: fleet, Writer: c, Fleet: readyFleet{}, Authenticator: authn, Authorizer: allow, DefaultNamespace: "fleet"})
	if err != nil {
		t.Fatal(err)
	}
	var pages atomic.Int32
	srv := httptest.NewServer(dashboard.Mount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/namespaces/fleet/devices" && r.URL.Query().Get("watch") == "" {
			pages.Add(1)
		}
		api.ServeHTTP(w, r)
	})))
	t.Cleanup(srv.Close)

	p := &page{t: t, ctx: browser(t, exe), url: srv.URL}
	p.signIn("alice")
	p.waitJS("the overview", `!!document.querySelector("#dev-h")`)
	p.do("choose the namespace", chromedpSetNamespace("fleet"))
	p.open("#/devices")
	p.waitJS("the list", `document.querySelector("#device-count").textContent === "10,000 devices" && document.querySelectorAll(".vrow").length > 0`)
	rows := p.count(".vrow")
	if rows > 60 {
		t.Errorf("%d rows rendered of %d devices, want only those in view", rows, n)
	}
	if got := pages.Load(); got != 1 {
		t.Errorf("%d pages fetched before scrolling, want 1", got)
	}
	p.do("scroll to the end", chromedpEval(`(() => { const l = document.querySelector(".vlist"); l.scrollTop = l.scrollHeight; })()`))
	p.waitJS("the last device", `(() => { const r = document.querySelector('.vrow[aria-posinset="10000"] a'); return !!r && r.textContent === "device-09999"; })()`)
	if rows := p.count(".vrow"); rows > 60 {
		t.Errorf("%d rows rendered at the end, want only those in view", rows)
	}
	if got := pages.Load(); got != n/500 {
		t.Errorf("%d pages fetched at the end, want %d of 500", got, n/500)
	}
	p.do("filter", chromedpEval(`(() => { const s = document.querySelector("#f-search"); s.value = "device-0999"; s.dispatchEvent(new Event("input", {bubbles: true})); })()`))
	p.waitJS("the filtered list", `document.querySelector("#device-count").textContent === "10 devices" && document.querySelectorAll(".vrow").length === 10`)
}
