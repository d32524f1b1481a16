package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// fakeInformer hands the events a test fires to the registered handlers,
// as a shared informer does, and is safe for concurrent use.
type fakeInformer struct {
	cache.Informer
	mu       sync.Mutex
	handlers map[*fakeRegistration]toolscache.ResourceEventHandler
}

type fakeRegistration struct {
	toolscache.ResourceEventHandlerRegistration
}

func newFakeInformer() *fakeInformer {
	return &fakeInformer{handlers: map[*fakeRegistration]toolscache.ResourceEventHandler{}}
}

func (f *fakeInformer) GetInformer(context.Context, client.Object, ...cache.InformerGetOption) (cache.Informer, error) {
	return f, nil
}

func (f *fakeInformer) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeRegistration{}
	f.handlers[r] = h
	return r, nil
}

func (f *fakeInformer) RemoveEventHandler(r toolscache.ResourceEventHandlerRegistration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.handlers, r.(*fakeRegistration))
	return nil
}

func (f *fakeInformer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.handlers)
}

func (f *fakeInformer) each(fn func(toolscache.ResourceEventHandler)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range f.handlers {
		fn(h)
	}
}

// streamWriter is a ResponseWriter whose writes a test reads from a
// channel; a test that stops reading blocks the handler's writes.
type streamWriter struct {
	header http.Header
	code   int
	chunks chan []byte
}

func newStreamWriter() *streamWriter {
	return &streamWriter{header: http.Header{}, chunks: make(chan []byte)}
}

func (s *streamWriter) Header() http.Header  { return s.header }
func (s *streamWriter) WriteHeader(code int) { s.code = code }
func (s *streamWriter) Write(b []byte) (int, error) {
	s.chunks <- bytes.Clone(b)
	return len(b), nil
}
func (s *streamWriter) Flush() {}

type sse struct {
	name string
	data map[string]any
}

// readEvent reads the next event from a stream of chunks (each flush
// carries whole events).
func readEvent(t *testing.T, chunks <-chan []byte) sse {
	t.Helper()
	select {
	case b := <-chunks:
		sc := bufio.NewScanner(bytes.NewReader(b))
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev.name = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(v), &ev.data); err != nil {
					t.Fatalf("event data %q: %v", v, err)
				}
			}
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sse{}
}

func nameOf(ev sse) string {
	m, _ := ev.data["metadata"].(map[string]any)
	n, _ := m["name"].(string)
	return n
}

func startWatch(t *testing.T, e *testEnv, path string) (*streamWriter, context.CancelFunc, chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req := httptest.NewRequestWithContext(ctx, "GET", path, nil)
	req.Header.Set("Authorization", "Bearer "+viewerToken)
	w := newStreamWriter()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.api.ServeHTTP(w, req)
	}()
	return w, cancel, done
}

func TestWatch(t *testing.T) {
	inf := newFakeInformer()
	e := newTestEnv(t)
	e.api.opts.Informers = inf
	w, cancel, done := startWatch(t, e, "/api/v1/namespaces/fleet/devices?watch=true&phase=Connected")
	if ev := readEvent(t, w.chunks); ev.name != EventReady {
		t.Fatalf("first event %q, want READY", ev.name)
	}
	if w.header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("Content-Type %q", w.header.Get("Content-Type"))
	}
	connected := func(name, ns string) *wasmbedv1.Device {
		return device(ns, name, func(d *wasmbedv1.Device) { d.Status.Phase = wasmbedv1.DevicePhaseConnected })
	}
	pending := device("fleet", "p1")
	fire := func(fn func(h toolscache.ResourceEventHandler)) { inf.each(fn) }
	fire(func(h toolscache.ResourceEventHandler) { h.OnAdd(connected("initial", "fleet"), true) }) // the informer's initial list: not sent
	fire(func(h toolscache.ResourceEventHandler) { h.OnAdd(connected("elsewhere", "lab"), false) })
	fire(func(h toolscache.ResourceEventHandler) { h.OnAdd(pending, false) })
	fire(func(h toolscache.ResourceEventHandler) { h.OnAdd(connected("a1", "fleet"), false) })
	fire(func(h toolscache.ResourceEventHandler) { h.OnUpdate(pending, connected("p1", "fleet")) })
	fire(func(h toolscache.ResourceEventHandler) {
		h.OnUpdate(connected("a1", "fleet"), connected("a1", "fleet"))
	})
	fire(func(h toolscache.ResourceEventHandler) { h.OnUpdate(connected("p1", "fleet"), device("fleet", "p1")) })
	fire(func(h toolscache.ResourceEventHandler) {
		h.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "fleet/a1", Obj: connected("a1", "fleet")})
	})
	want := []string{"ADDED a1", "ADDED p1", "MODIFIED a1", "DELETED p1", "DELETED a1"}
	for _, w0 := range want {
		ev := readEvent(t, w.chunks)
		if got := ev.name + " " + nameOf(ev); got != w0 {
			t.Errorf("event %q, want %q", got, w0)
		}
	}
	cancel()
	<-done
	if n := inf.count(); n != 0 {
		t.Errorf("%d handlers left after the watch ended", n)
	}
}

// TestWatchFallsBehind checks that a watcher that does not read is closed
// with an ERROR event once its buffer is full, rather than buffering
// without bound.
func TestWatchFallsBehind(t *testing.T) {
	inf := newFakeInformer()
	e := newTestEnv(t)
	e.api.opts.Informers = inf
	w, cancel, done := startWatch(t, e, "/api/v1/devices?watch=true")
	defer cancel()
	if ev := readEvent(t, w.chunks); ev.name != EventReady {
		t.Fatalf("first event %q", ev.name)
	}
	// The handler blocks writing the first change; the next watchBuffer
	// fill the buffer and the one after overflows it. The informer is
	// never blocked: firing returns at once.
	fired := make(chan struct{})
	go func() {
		defer close(fired)
		for i := range watchBuffer + 2 {
			inf.each(func(h toolscache.ResourceEventHandler) {
				h.OnAdd(device("fleet", "d"+strings.Repeat("x", i%10)), false)
			})
		}
	}()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("firing changes blocked the informer")
	}
	var last sse
	deadline := time.After(10 * time.Second)
	for ended := false; !ended; {
		select {
		case b := <-w.chunks:
			if bytes.HasPrefix(b, []byte("event: ERROR")) {
				last.name = EventError
			}
		case <-done:
			ended = true
		case <-deadline:
			t.Fatal("the watch did not end")
		}
	}
	if last.name != EventError {
		t.Error("the watch ended without an ERROR event")
	}
	if inf.count() != 0 {
		t.Error("the handler was not removed")
	}
}

// TestWatchLimit checks the bound on concurrent watches.
func TestWatchLimit(t *testing.T) {
	inf := newFakeInformer()
	e := newTestEnv(t)
	e.api.opts.Informers = inf
	e.api.watchers = make(chan struct{}, 1)
	w, cancel, done := startWatch(t, e, "/api/v1/devices?watch=true")
	readEvent(t, w.chunks)
	refused := make(chan response, 1)
	go func() { refused <- e.do(t, "GET", "/api/v1/applications?watch=true", viewerToken, nil, "") }()
	select {
	case res := <-refused:
		res.wantProblem(t, 429, ProblemTooManyWatches)
	case <-time.After(10 * time.Second):
		t.Fatal("a watch over the limit was not refused")
	}
	cancel()
	<-done
	w2, cancel2, done2 := startWatch(t, e, "/api/v1/applications?watch=true")
	if ev := readEvent(t, w2.chunks); ev.name != EventReady {
		t.Errorf("after the first watch ended: %q", ev.name)
	}
	cancel2()
	<-done2
}
