package httpapi

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// fleet returns n devices spread over two namespaces, phases, types,
// gateways and labels.
func fleet(n int) []client.Object {
	var objs []client.Object
	phases := []wasmbedv1.DevicePhase{"", wasmbedv1.DevicePhaseConnected, wasmbedv1.DevicePhaseUnreachable}
	for i := range n {
		ns := "fleet"
		if i%5 == 0 {
			ns = "lab"
		}
		objs = append(objs, device(ns, fmt.Sprintf("dev-%04d", i), func(d *wasmbedv1.Device) {
			d.Status.Phase = phases[i%3]
			if i%2 == 0 {
				d.Spec.DeviceType = wasmbedv1.DeviceTypeHiFive1
			}
			if d.Status.Phase == wasmbedv1.DevicePhaseConnected {
				d.Status.Gateway = fmt.Sprintf("gw-%d", i%2)
			}
			d.Labels = map[string]string{"site": fmt.Sprintf("s%d", i%4)}
			d.Spec.DeviceID = fmt.Sprintf("Sensor_%04d", i)
		}))
	}
	return objs
}

// walk lists every page of a query and returns the names in order.
func walk(t *testing.T, e *testEnv, path string, q url.Values) (names []string, total, pages int) {
	t.Helper()
	for {
		var page Page[wasmbedv1.Device]
		e.do(t, "GET", path+"?"+q.Encode(), viewerToken, nil, "").decode(t, 200, &page)
		pages++
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		for _, d := range page.Items {
			names = append(names, d.Namespace+"/"+d.Name)
		}
		if pages == 1 {
			total = page.Total
		} else if page.Total != total {
			t.Errorf("page %d: total %d, was %d", pages, page.Total, total)
		}
		if page.Continue == "" {
			return names, total, pages
		}
		q.Set(qContinue, page.Continue)
	}
}

func TestListPagination(t *testing.T) {
	objs := fleet(250)
	e := newTestEnv(t, objs...)
	var all []string
	for _, o := range objs {
		all = append(all, o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(all)
	tests := []struct {
		name  string
		path  string
		query url.Values
		keep  func(*wasmbedv1.Device) bool
		pages int
	}{
		{"all namespaces, default limit", "/api/v1/devices", url.Values{}, nil, 3},
		{"pages of 7", "/api/v1/devices", url.Values{"limit": {"7"}}, nil, 36},
		{"one namespace", "/api/v1/namespaces/lab/devices", url.Values{"limit": {"20"}}, func(d *wasmbedv1.Device) bool { return d.Namespace == "lab" }, 3},
		{"phase", "/api/v1/devices", url.Values{"phase": {"Connected"}, "limit": {"30"}},
			func(d *wasmbedv1.Device) bool { return d.Status.Phase == wasmbedv1.DevicePhaseConnected }, 3},
		{"pending means no phase", "/api/v1/devices", url.Values{"phase": {"Pending"}},
			func(d *wasmbedv1.Device) bool { return d.Status.Phase == "" }, 1},
		{"two phases, comma", "/api/v1/devices", url.Values{"phase": {"Pending,Unreachable"}},
			func(d *wasmbedv1.Device) bool { return d.Status.Phase != wasmbedv1.DevicePhaseConnected }, 2},
		{"two phases, repeated", "/api/v1/devices", url.Values{"phase": {"Pending", "Unreachable"}},
			func(d *wasmbedv1.Device) bool { return d.Status.Phase != wasmbedv1.DevicePhaseConnected }, 2},
		{"type", "/api/v1/devices", url.Values{"type": {"hifive1"}},
			func(d *wasmbedv1.Device) bool { return d.Spec.DeviceType == wasmbedv1.DeviceTypeHiFive1 }, 2},
		{"gateway", "/api/v1/devices", url.Values{"gateway": {"gw-1"}},
			func(d *wasmbedv1.Device) bool { return d.Status.Gateway == "gw-1" }, 1},
		{"label selector", "/api/v1/devices", url.Values{"labelSelector": {"site in (s1,s2)"}, "limit": {"50"}},
			func(d *wasmbedv1.Device) bool { return d.Labels["site"] == "s1" || d.Labels["site"] == "s2" }, 3},
		{"name prefix", "/api/v1/devices", url.Values{"search": {"dev-01"}},
			func(d *wasmbedv1.Device) bool { return strings.HasPrefix(d.Name, "dev-01") }, 1},
		{"device id prefix, any case", "/api/v1/devices", url.Values{"search": {"sENSOR_02"}},
			func(d *wasmbedv1.Device) bool { return strings.HasPrefix(d.Spec.DeviceID, "Sensor_02") }, 1},
		{"everything", "/api/v1/namespaces/fleet/devices", url.Values{"phase": {"Connected"}, "type": {"esp32"}, "labelSelector": {"site=s1"}, "limit": {"3"}},
			func(d *wasmbedv1.Device) bool {
				return d.Namespace == "fleet" && d.Status.Phase == wasmbedv1.DevicePhaseConnected && d.Spec.DeviceType == wasmbedv1.DeviceTypeESP32 && d.Labels["site"] == "s1"
			}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for _, o := range objs {
				if d := o.(*wasmbedv1.Device); tt.keep == nil || tt.keep(d) {
					want = append(want, d.Namespace+"/"+d.Name)
				}
			}
			slices.Sort(want)
			if len(want) == 0 {
				t.Fatal("the case selects nothing")
			}
			got, total, pages := walk(t, e, tt.path, tt.query)
			if !slices.Equal(got, want) {
				t.Errorf("listed %d devices %v..., want %d", len(got), head(got), len(want))
			}
			if total != len(want) {
				t.Errorf("total %d, want %d", total, len(want))
			}
			if tt.pages != 0 && pages != tt.pages {
				t.Errorf("%d pages, want %d", pages, tt.pages)
			}
		})
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }

// TestContinueBoundToQuery checks that a continue token is refused with
// other filters, and that a page continues after its last key even when
// objects before it were deleted.
func TestContinueBoundToQuery(t *testing.T) {
	objs := fleet(30)
	e := newTestEnv(t, objs...)
	var page Page[wasmbedv1.Device]
	e.do(t, "GET", "/api/v1/devices?limit=10&phase=Connected,Pending", viewerToken, nil, "").decode(t, 200, &page)
	if page.Continue == "" {
		t.Fatal("no continue token")
	}
	// The same filters in another order are the same query.
	var next Page[wasmbedv1.Device]
	e.do(t, "GET", "/api/v1/devices?phase=Pending&phase=Connected&limit=5&continue="+page.Continue, viewerToken, nil, "").decode(t, 200, &next)
	if len(next.Items) == 0 || next.Items[0].Name <= page.Items[9].Name && next.Items[0].Namespace == page.Items[9].Namespace {
		t.Errorf("next page starts at %v after %v", next.Items, page.Items[9].Name)
	}
	for _, q := range []string{
		"/api/v1/devices?limit=10&phase=Connected&continue=",
		"/api/v1/namespaces/fleet/devices?limit=10&phase=Connected,Pending&continue=",
		"/api/v1/applications?limit=10&continue=",
	} {
		p := e.do(t, "GET", q+page.Continue, viewerToken, nil, "").wantProblem(t, 400, ProblemInvalid)
		if !hasField(p, "continue") || !strings.Contains(p.Errors[0].Detail, "another query") {
			t.Errorf("%s: %+v", q, p.Errors)
		}
	}
	// Delete the last device of the first page: the next page still starts after it.
	last := page.Items[len(page.Items)-1]
	if err := e.client.Delete(t.Context(), &last); err != nil {
		t.Fatal(err)
	}
	var after Page[wasmbedv1.Device]
	e.do(t, "GET", "/api/v1/devices?limit=5&phase=Connected,Pending&continue="+page.Continue, viewerToken, nil, "").decode(t, 200, &after)
	if len(after.Items) == 0 || after.Items[0].Name != next.Items[0].Name {
		t.Errorf("after a deletion the page starts at %v, want %s", after.Items, next.Items[0].Name)
	}
}

// TestViewsDropBulk checks that responses hold neither managed fields, nor
// the last applied configuration, nor module bytes or signed manifests.
func TestViewsDropBulk(t *testing.T) {
	meta := metav1.ObjectMeta{
		Annotations:   map[string]string{lastApplied: `{"huge":"x"}`, "keep": "me"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "wasmbed.github.io/v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{}}`)}},
	}
	d := device("fleet", "d1", func(d *wasmbedv1.Device) { d.Annotations, d.ManagedFields = meta.Annotations, meta.ManagedFields })
	app := application("fleet", "blinky", func(a *wasmbedv1.Application) { a.Annotations = meta.Annotations })
	dapp := deviceApplication("fleet", "blinky", "d1", wasmbedv1.DeviceApplicationPhaseRunning)
	dapp.Annotations = meta.Annotations
	e := newTestEnv(t, d, app, dapp)
	for _, path := range []string{
		"/api/v1/namespaces/fleet/devices/d1", "/api/v1/devices",
		"/api/v1/namespaces/fleet/applications/blinky", "/api/v1/applications",
		"/api/v1/namespaces/fleet/applications/blinky/rollout", "/api/v1/namespaces/fleet/devices/d1/applications",
	} {
		body := e.do(t, "GET", path, viewerToken, nil, "").Body.String()
		for _, bad := range []string{"managedFields", "last-applied", "wasmBinary", "manifest", "signature"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s: the response holds %s: %s", path, bad, body)
			}
		}
		if !strings.Contains(body, `"keep":"me"`) {
			t.Errorf("%s: other annotations dropped: %s", path, body)
		}
	}
	// The cached object was not changed by the view.
	var got wasmbedv1.Device
	if err := e.client.Get(t.Context(), key("fleet", "d1"), &got); err != nil || got.Annotations[lastApplied] == "" {
		t.Errorf("the stored device lost its annotation: %v %v", got.Annotations, err)
	}
}

// TestRollout checks an application's rollout and a device's applications.
func TestRollout(t *testing.T) {
	objs := []client.Object{application("fleet", "blinky"), application("fleet", "other"), device("fleet", "d1")}
	phases := []wasmbedv1.DeviceApplicationPhase{wasmbedv1.DeviceApplicationPhaseRunning, wasmbedv1.DeviceApplicationPhaseRefused, ""}
	for i := range 12 {
		objs = append(objs, deviceApplication("fleet", "blinky", fmt.Sprintf("d%d", i+1), phases[i%3]))
	}
	objs = append(objs, deviceApplication("fleet", "other", "d1", wasmbedv1.DeviceApplicationPhaseRunning),
		deviceApplication("lab", "blinky", "d1", wasmbedv1.DeviceApplicationPhaseRunning))
	e := newTestEnv(t, objs...)

	var page RolloutPage
	e.do(t, "GET", "/api/v1/namespaces/fleet/applications/blinky/rollout?limit=5", viewerToken, nil, "").decode(t, 200, &page)
	if page.Total != 12 || len(page.Items) != 5 || page.Continue == "" {
		t.Fatalf("total %d, %d items, continue %q", page.Total, len(page.Items), page.Continue)
	}
	if page.Phases["Running"] != 4 || page.Phases["Refused"] != 4 || page.Phases["Pending"] != 4 || page.Phases["Trapped"] != 0 {
		t.Errorf("phases %v", page.Phases)
	}
	if a := page.Items[0].Spec.Artifact; a == nil || a.Sequence != 1 || a.ModuleHash == "" {
		t.Errorf("artifact %+v", a)
	}
	e.do(t, "GET", "/api/v1/namespaces/fleet/applications/blinky/rollout?phase=Refused", viewerToken, nil, "").decode(t, 200, &page)
	if page.Total != 4 || page.Phases["Running"] != 4 {
		t.Errorf("refused: total %d phases %v", page.Total, page.Phases)
	}
	for _, it := range page.Items {
		if it.Status.Phase != wasmbedv1.DeviceApplicationPhaseRefused || it.Spec.Application != "blinky" {
			t.Errorf("item %s: %s of %s", it.Name, it.Status.Phase, it.Spec.Application)
		}
	}
	e.do(t, "GET", "/api/v1/namespaces/fleet/applications/blinky/rollout?search=d1", viewerToken, nil, "").decode(t, 200, &page)
	if page.Total != 4 { // d1, d10, d11, d12
		t.Errorf("search d1: total %d", page.Total)
	}
	var apps Page[DeviceApplication]
	e.do(t, "GET", "/api/v1/namespaces/fleet/devices/d1/applications", viewerToken, nil, "").decode(t, 200, &apps)
	var names []string
	for _, it := range apps.Items {
		names = append(names, it.Spec.Application)
	}
	if !slices.Equal(names, []string{"blinky", "other"}) {
		t.Errorf("applications of d1: %v", names)
	}
}

// TestPaginateUnordered pages through keys given in random order, as an
// informer's store hands them out.
func TestPaginateUnordered(t *testing.T) {
	const n = 1000
	items := make([]*objKey, n)
	for i := range n {
		items[i] = &objKey{Namespace: fmt.Sprintf("ns-%d", i%3), Name: fmt.Sprintf("o-%04d", i)}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(n, func(i, j int) { items[i], items[j] = items[j], items[i] })
	var got []objKey
	lq := &listQuery{limit: 7, fingerprint: "f"}
	for pages := 0; ; pages++ {
		p := paginate(items, lq, func(k *objKey) objKey { return *k }, func(*objKey) bool { return true }, func(k *objKey) objKey { return *k })
		got = append(got, p.Items...)
		if p.Continue == "" {
			break
		}
		k, err := decodeContinue(p.Continue, "f")
		if err != nil || pages > n {
			t.Fatalf("continue %q: %v", p.Continue, err)
		}
		lq.after = &k
	}
	if len(got) != n || !slices.IsSortedFunc(got, objKey.compare) {
		t.Errorf("%d keys, sorted %v", len(got), slices.IsSortedFunc(got, objKey.compare))
	}
}

// TestMeta checks that a response's metadata drops what only Kubernetes
// needs without changing the cached object.
func TestMeta(t *testing.T) {
	m := metav1.ObjectMeta{
		Name:          "x",
		Annotations:   map[string]string{lastApplied: "{}", "keep": "me"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
	got := meta(m)
	if got.ManagedFields != nil || got.Annotations[lastApplied] != "" || got.Annotations["keep"] != "me" {
		t.Errorf("meta: %+v", got)
	}
	if m.ManagedFields == nil || m.Annotations[lastApplied] == "" {
		t.Error("meta changed the object it was given")
	}
}
