package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// event builds an events.k8s.io Event about an object of kind in group
// wasmbed.github.io (or core for a Pod), at t0+offset.
func event(ns, name, kind, about, typ, reason string, offset time.Duration) *eventsv1.Event {
	apiVersion := "wasmbed.github.io/v1"
	if kind == "Pod" {
		apiVersion = "v1"
	}
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: ns, Name: name},
		EventTime:           metav1.NewMicroTime(t0.Add(offset)),
		Type:                typ,
		Reason:              reason,
		Note:                reason + " of " + about,
		Action:              "Reconcile",
		ReportingController: "wasmbed-controller",
		ReportingInstance:   "wasmbed-controller-0",
		Regarding:           corev1.ObjectReference{APIVersion: apiVersion, Kind: kind, Namespace: ns, Name: about},
	}
}

func TestEvents(t *testing.T) {
	series := event("fleet", "e4", "Device", "d2", "Warning", "Unreachable", time.Second)
	series.Series = &eventsv1.EventSeries{Count: 5, LastObservedTime: metav1.NewMicroTime(t0.Add(10 * time.Minute))}
	e := newTestEnv(t,
		event("fleet", "e1", "Application", "blinky", "Normal", "RolloutStarted", time.Minute),
		event("fleet", "e2", "Application", "blinky", "Warning", "RolloutPaused", 3*time.Minute),
		event("fleet", "e3", "Pod", "web", "Warning", "BackOff", 4*time.Minute),
		series,
		event("lab", "e5", "Device", "d9", "Normal", "Connected", 2*time.Minute),
	)
	reasons := func(l EventList) []string {
		var out []string
		for _, ev := range l.Items {
			out = append(out, ev.Reason)
		}
		return out
	}
	for _, tc := range []struct {
		name, path string
		want       []string
		total      int
	}{
		{"all namespaces, newest first, no Pods", "/api/v1/events", []string{"Unreachable", "RolloutPaused", "Connected", "RolloutStarted"}, 4},
		{"a namespace", "/api/v1/namespaces/fleet/events", []string{"Unreachable", "RolloutPaused", "RolloutStarted"}, 3},
		{"limit", "/api/v1/events?limit=2", []string{"Unreachable", "RolloutPaused"}, 4},
		{"kind", "/api/v1/events?kind=Device", []string{"Unreachable", "Connected"}, 2},
		{"kind and name", "/api/v1/namespaces/fleet/events?kind=Application&name=blinky", []string{"RolloutPaused", "RolloutStarted"}, 2},
		{"type", "/api/v1/events?type=Warning", []string{"Unreachable", "RolloutPaused"}, 2},
		{"nothing", "/api/v1/events?name=none", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l EventList
			e.do(t, "GET", tc.path, viewerToken, nil, "").decode(t, http.StatusOK, &l)
			if got := reasons(l); !slices.Equal(got, tc.want) || l.Total != tc.total || l.Truncated {
				t.Errorf("got %q total %d truncated %v, want %q total %d", got, l.Total, l.Truncated, tc.want, tc.total)
			}
		})
	}
	var l EventList
	e.do(t, "GET", "/api/v1/namespaces/fleet/events?kind=Device", viewerToken, nil, "").decode(t, http.StatusOK, &l)
	if len(l.Items) != 1 || l.Items[0].Count != 5 || !l.Items[0].Time.Equal(t0.Add(10*time.Minute)) ||
		l.Items[0].Regarding != (EventObject{Kind: "Device", Namespace: "fleet", Name: "d2"}) || l.Items[0].Note != "Unreachable of d2" {
		t.Errorf("series event %+v", l.Items)
	}
	asked := e.auth.lastAsked()
	if n := len(asked); n == 0 || asked[n-1].Verb != "list" || asked[n-1].APIGroup != "events.k8s.io" ||
		asked[n-1].Resource != "events" || asked[n-1].Namespace != "fleet" {
		t.Errorf("authorised %+v, want list events.events.k8s.io in fleet", asked)
	}
}

func TestEventsRefused(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		query string
		field string
	}{
		{"limit=0", "limit"},
		{"limit=101", "limit"},
		{"kind=Pod", "kind"},
		{"name=Not_A_Name", "name"},
		{"type=Error", "type"},
		{"limit=1&limit=2", "limit"},
		{"watch=true", "watch"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			p := e.do(t, "GET", "/api/v1/events?"+tc.query, viewerToken, nil, "").wantProblem(t, http.StatusBadRequest, ProblemInvalid)
			if len(p.Errors) == 0 || p.Errors[0].Field != tc.field {
				t.Errorf("errors %+v, want field %s", p.Errors, tc.field)
			}
		})
	}
	e.do(t, "GET", "/api/v1/events", nobodyToken, nil, "").wantProblem(t, http.StatusForbidden, ProblemForbidden)
	e.do(t, "GET", "/api/v1/events", "", nil, "").wantProblem(t, http.StatusUnauthorized, ProblemUnauthenticated)

	// Without an Events reader the routes are not offered.
	e.api.opts.Events = nil
	e.do(t, "GET", "/api/v1/events", viewerToken, nil, "").wantProblem(t, http.StatusNotImplemented, ProblemNotImplemented)
}

// endlessEvents answers every list with a full page of Events about a
// Device and a continue token, as a cluster with too many Events would.
type endlessEvents struct{ lists int }

func (r *endlessEvents) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return fmt.Errorf("not served")
}

func (r *endlessEvents) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	var lo client.ListOptions
	lo.ApplyOptions(opts)
	r.lists++
	l := list.(*eventsv1.EventList)
	for i := range int(lo.Limit) {
		l.Items = append(l.Items, *event("fleet", fmt.Sprintf("e-%d-%d", r.lists, i), "Device", "d1", "Normal", "Seen", time.Duration(r.lists)*time.Second))
	}
	l.Continue = fmt.Sprintf("page-%d", r.lists+1)
	return nil
}

// TestEventsBounded checks that the route stops reading at its bound and
// says so.
func TestEventsBounded(t *testing.T) {
	e := newTestEnv(t)
	r := &endlessEvents{}
	e.api.opts.Events = r
	var l EventList
	e.do(t, "GET", "/api/v1/events?limit=3", viewerToken, nil, "").decode(t, http.StatusOK, &l)
	if want := maxEventsScanned / eventsPageSize; r.lists != want {
		t.Errorf("listed %d pages, want %d", r.lists, want)
	}
	if !l.Truncated || l.Total != maxEventsScanned || len(l.Items) != 3 {
		t.Errorf("truncated %v total %d items %d, want true %d 3", l.Truncated, l.Total, len(l.Items), maxEventsScanned)
	}
	// The newest come from the last page read.
	if !l.Items[0].Time.Equal(t0.Add(time.Duration(r.lists) * time.Second)) {
		t.Errorf("newest at %v", l.Items[0].Time)
	}
}
