package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Bounds of the events route.
const (
	// eventsPageSize is the page size of each list of Events the route
	// makes.
	eventsPageSize = 500
	// maxEventsScanned bounds the Events read for one request: the route
	// reads Kubernetes, not the gateway's cache, and Events of a busy
	// cluster are many.
	maxEventsScanned = 5000
	// defaultEventsLimit and maxEventsLimit bound the Events returned.
	defaultEventsLimit = 20
	maxEventsLimit     = 100
)

// eventKinds are the kinds an Event's regarding object may be filtered on.
var eventKinds = []string{"Device", "Application", "DeviceApplication"}

// Event is a Kubernetes Event about a Wasmbed object, as the API returns it.
type Event struct {
	// Time is when it last happened: the Event's series' last observation,
	// its event time, or its creation.
	Time time.Time `json:"time"`
	// Type is Normal or Warning.
	Type string `json:"type"`
	// Reason is the Event's machine-readable reason (RolloutPaused, ...).
	Reason string `json:"reason"`
	// Note is the human-readable message.
	Note string `json:"note,omitempty"`
	// Count is how many times it happened (1 without a series).
	Count int32 `json:"count"`
	// Regarding is the object it is about.
	Regarding EventObject `json:"regarding"`
	// ReportingController is the component that reported it.
	ReportingController string `json:"reportingController,omitempty"`
}

// EventObject names the object an Event is about.
type EventObject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// EventList is the newest Events about Wasmbed objects.
type EventList struct {
	// Items are the Events, newest first.
	Items []Event `json:"items"`
	// Total counts the Events that matched the filters among those read.
	Total int `json:"total"`
	// Truncated reports that the route stopped reading at its bound
	// (5,000 Events), so older Events may be missing.
	Truncated bool `json:"truncated,omitempty"`
}

func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func eventView(e *eventsv1.Event) Event {
	count := int32(1)
	switch {
	case e.Series != nil && e.Series.Count > 0:
		count = e.Series.Count
	case e.DeprecatedCount > 0:
		count = e.DeprecatedCount
	}
	return Event{
		Time: eventTime(e).UTC(), Type: e.Type, Reason: e.Reason, Note: e.Note, Count: count,
		Regarding:           EventObject{Kind: e.Regarding.Kind, Namespace: e.Regarding.Namespace, Name: e.Regarding.Name},
		ReportingController: e.ReportingController,
	}
}

// events answers the newest Events about Devices, Applications and
// DeviceApplications. Events are not in the gateway's cache: the route lists
// them from Kubernetes (Options.Events), in pages, reading at most
// maxEventsScanned.
func (a *api) events(c *call) error {
	const qKind, qName, qType = "kind", "name", "type"
	if err := c.noQuery(qLimit, qKind, qName, qType); err != nil {
		return err
	}
	q := c.r.URL.Query()
	var errs []FieldError
	single := func(name string) string {
		if len(q[name]) > 1 {
			errs = append(errs, FieldError{Field: name, Detail: "given more than once"})
		}
		return q.Get(name)
	}
	limit := defaultEventsLimit
	if s := single(qLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxEventsLimit {
			errs = append(errs, FieldError{Field: qLimit, Detail: "must be an integer from 1 to " + strconv.Itoa(maxEventsLimit)})
		}
		limit = n
	}
	kind := single(qKind)
	if kind != "" && !slices.Contains(eventKinds, kind) {
		errs = append(errs, FieldError{Field: qKind, Detail: "unsupported value " + strconv.Quote(kind) +
			": supported values: " + strings.Join(eventKinds, ", ")})
	}
	name := single(qName)
	if name != "" {
		if err := validName(name); err != nil {
			errs = append(errs, FieldError{Field: qName, Detail: err.Error()})
		}
	}
	typ := single(qType)
	if typ != "" && typ != "Normal" && typ != "Warning" {
		errs = append(errs, FieldError{Field: qType, Detail: "unsupported value " + strconv.Quote(typ) + ": supported values: Normal, Warning"})
	}
	if len(errs) > 0 {
		return invalid("invalid events query", errs...)
	}
	if a.opts.Events == nil {
		return newProblem(http.StatusNotImplemented, ProblemNotImplemented, "this gateway does not serve Events")
	}
	group := wasmbedv1.GroupVersion.Group + "/"
	match := func(e *eventsv1.Event) bool {
		r := e.Regarding
		return strings.HasPrefix(r.APIVersion, group) &&
			(kind == "" || r.Kind == kind) && (name == "" || r.Name == name) && (typ == "" || e.Type == typ)
	}
	var (
		out       []*eventsv1.Event
		scanned   int
		truncated bool
		cont      string
	)
	for {
		list := &eventsv1.EventList{}
		opts := []client.ListOption{client.Limit(eventsPageSize)}
		if c.namespace != "" {
			opts = append(opts, client.InNamespace(c.namespace))
		}
		if cont != "" {
			opts = append(opts, client.Continue(cont))
		}
		if err := a.opts.Events.List(c.r.Context(), list, opts...); err != nil {
			return fromKubernetes(err, "the Events")
		}
		for i := range list.Items {
			if match(&list.Items[i]) {
				out = append(out, &list.Items[i])
			}
		}
		scanned += len(list.Items)
		cont = list.Continue
		if cont == "" {
			break
		}
		if scanned >= maxEventsScanned {
			truncated = true
			break
		}
	}
	slices.SortStableFunc(out, func(x, y *eventsv1.Event) int { return eventTime(y).Compare(eventTime(x)) })
	res := EventList{Items: make([]Event, 0, min(limit, len(out))), Total: len(out), Truncated: truncated}
	for _, e := range out[:min(limit, len(out))] {
		res.Items = append(res.Items, eventView(e))
	}
	return c.writeJSON(http.StatusOK, res)
}
