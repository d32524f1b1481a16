package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Watch event types, the SSE event names of a watch.
const (
	// EventReady is sent once, when the watch is registered: changes from
	// then on are streamed, so a client lists after it has seen it.
	EventReady = "READY"
	// EventAdded is an object that appeared or started matching the filters.
	EventAdded = "ADDED"
	// EventModified is a change of an object that matches the filters.
	EventModified = "MODIFIED"
	// EventDeleted is an object deleted or no longer matching the filters.
	EventDeleted = "DELETED"
	// EventError ends a watch that fell behind; the client lists again.
	EventError = "ERROR"
)

// watchBuffer bounds the changes waiting to be sent to one watcher. A
// watcher that falls further behind is sent an ERROR event and closed, so a
// slow client costs bounded memory and never slows the informers.
const watchBuffer = 256

type watchEvent struct {
	kind string
	obj  any
}

// watchKind says how to stream one kind of object.
type watchKind struct {
	// object is an empty object of the kind, to find its informer.
	object client.Object
	// match reports whether a cached object matches the watch's filters.
	match func(obj any) bool
	// view converts a cached object for the response.
	view func(obj any) any
}

// watch streams the changes of the watched kind as server-sent events until
// the client goes away or falls behind.
func (a *api) watch(c *call, wk watchKind) error {
	if a.opts.Informers == nil {
		return newProblem(http.StatusNotImplemented, ProblemNotImplemented, "this gateway does not serve watches")
	}
	select {
	case a.watchers <- struct{}{}:
		defer func() { <-a.watchers }()
	default:
		return newProblem(http.StatusTooManyRequests, ProblemTooManyWatches,
			fmt.Sprintf("the gateway serves %d watches already; retry later", cap(a.watchers)))
	}
	ctx := c.r.Context()
	inf, err := a.opts.Informers.GetInformer(ctx, wk.object)
	if err != nil {
		return unavailable("the gateway cannot watch this kind now", fmt.Errorf("get informer: %w", err))
	}
	events := make(chan watchEvent, watchBuffer)
	overflow := make(chan struct{})
	var once sync.Once
	send := func(kind string, obj any) {
		select {
		case events <- watchEvent{kind: kind, obj: obj}:
		default:
			once.Do(func() { close(overflow) })
		}
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial && wk.match(obj) {
				send(EventAdded, obj)
			}
		},
		UpdateFunc: func(old, obj any) {
			was, is := wk.match(old), wk.match(obj)
			switch {
			case was && is:
				send(EventModified, obj)
			case is:
				send(EventAdded, obj)
			case was:
				send(EventDeleted, obj)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if wk.match(obj) {
				send(EventDeleted, obj)
			}
		},
	})
	if err != nil {
		return unavailable("the gateway cannot watch this kind now", fmt.Errorf("add event handler: %w", err))
	}
	defer func() { _ = inf.RemoveEventHandler(reg) }()
	a.metrics.watchers.Inc()
	defer a.metrics.watchers.Dec()

	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	sse := &sseWriter{w: c.w, rc: rc}
	if err := sse.event(EventReady, "", struct{}{}); err != nil {
		return nil
	}
	tick := time.NewTicker(a.opts.WatchHeartbeat)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-overflow:
			_ = sse.event(EventError, "", newProblem(http.StatusGone, ProblemWatchBehind,
				"the watch fell behind and was closed; list again, then watch"))
			return nil
		case <-tick.C:
			if err := sse.comment("keep-alive"); err != nil {
				return nil
			}
		case ev := <-events:
			id := ""
			if o, ok := ev.obj.(client.Object); ok {
				id = o.GetResourceVersion()
			}
			if err := sse.event(ev.kind, id, wk.view(ev.obj)); err != nil {
				return nil
			}
		}
	}
}

// sseWriter writes server-sent events and flushes each.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func (s *sseWriter) event(name, id string, v any) error {
	s.buf.Reset()
	s.buf.WriteString("event: " + name + "\n")
	if id != "" {
		s.buf.WriteString("id: " + id + "\n")
	}
	s.buf.WriteString("data: ")
	enc := json.NewEncoder(&s.buf) // ends the data line with a newline
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	s.buf.WriteString("\n")
	return s.flush()
}

func (s *sseWriter) comment(text string) error {
	s.buf.Reset()
	s.buf.WriteString(": " + text + "\n\n")
	return s.flush()
}

func (s *sseWriter) flush() error {
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}
