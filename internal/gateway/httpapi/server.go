package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/authentication/user"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Body limits of requests other than deploys, which have their own.
const (
	// maxSmallBody bounds the JSON body of every route but deploy.
	maxSmallBody = 16 << 10
	// maxDeployMetadata bounds the JSON of a deploy without its module.
	maxDeployMetadata = 64 << 10
)

// noOperation is the operation label of requests no route serves.
const noOperation = "none"

// api serves the routes. It holds no per-request state.
type api struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux
	routes  []*route
	// patterns lists what was registered on mux, for the OpenAPI check.
	patterns []string
	openapi  []byte
	modules  *moduleInfoCache
	watchers chan struct{}
	gather   http.Handler
}

// New returns the HTTP API's handler: the REST API under /api/v1 (with its
// OpenAPI document at /api/v1/openapi.json), /healthz, /readyz and /metrics.
// The gateway serves it on a listener of its own.
func New(opts Options) (http.Handler, error) {
	a, err := newAPI(opts)
	if err != nil {
		return nil, err
	}
	return a, nil
}

func newAPI(opts Options) (*api, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	a := &api{
		opts:     opts,
		log:      opts.Logger,
		metrics:  m,
		mux:      http.NewServeMux(),
		modules:  newModuleInfoCache(1024),
		watchers: make(chan struct{}, opts.MaxWatchers),
		gather:   promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}),
	}
	a.routes = a.routeTable()
	byPath := map[string][]*route{}
	var paths []string
	for _, rt := range a.routes {
		if _, ok := byPath[rt.path]; !ok {
			paths = append(paths, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	for _, p := range paths {
		rts := byPath[p]
		a.mux.Handle(p, a.pathHandler(rts))
		for _, rt := range rts {
			a.patterns = append(a.patterns, rt.method+" "+rt.path)
		}
	}
	a.mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.metrics.observe(noOperation, http.StatusNotFound, 0)
		a.fail(w, r, nil, newProblem(http.StatusNotFound, ProblemNoRoute, "no route serves "+r.Method+" "+r.URL.Path))
	}))
	if a.openapi, err = a.openAPIDocument(); err != nil {
		return nil, fmt.Errorf("httpapi: openapi document: %w", err)
	}
	return a, nil
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// pathHandler dispatches one path's routes by method and answers other
// methods with 405.
func (a *api) pathHandler(rts []*route) http.Handler {
	allow := make([]string, 0, len(rts))
	for _, rt := range rts {
		allow = append(allow, rt.method)
	}
	slices.Sort(allow)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, rt := range rts {
			if rt.method == r.Method {
				a.serve(w, r, rt)
				return
			}
		}
		a.metrics.observe(noOperation, http.StatusMethodNotAllowed, 0)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		a.fail(w, r, nil, newProblem(http.StatusMethodNotAllowed, ProblemMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))))
	})
}

// call is one request on its way through a route.
type call struct {
	api   *api
	w     http.ResponseWriter
	r     *http.Request
	route *route
	user  user.Info
	// namespace and name are the validated path values; namespace is empty
	// on routes that span all namespaces.
	namespace string
	name      string
	// watch is true for a list answered as a stream of changes.
	watch bool
}

// serve runs a route: authentication, validation of the path, authorisation,
// readiness, the body limit, then the handler.
func (a *api) serve(w http.ResponseWriter, r *http.Request, rt *route) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	c := &call{api: a, w: sw, r: r, route: rt}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // a sentinel value, compared as net/http does
				panic(v)
			}
			a.fail(sw, r, c, internal(fmt.Errorf("panic: %v", v)))
		}
		a.metrics.observe(rt.op, sw.status(), time.Since(start))
	}()
	if err := a.prepare(c); err != nil {
		a.fail(sw, r, c, err)
		return
	}
	if err := rt.handle(c); err != nil {
		a.fail(sw, r, c, err)
		return
	}
	if rt.method != http.MethodGet && sw.status() < 300 {
		a.log.LogAttrs(r.Context(), slog.LevelInfo, "api change", slog.String("operation", rt.op),
			slog.String("user", userName(c.user)), slog.String("namespace", c.namespace),
			slog.String("name", c.name), slog.Int("status", sw.status()))
	}
}

func (a *api) prepare(c *call) error {
	rt, r := c.route, c.r
	if rt.access.kind == accessPublic {
		return nil
	}
	u, err := a.authenticate(r)
	if err != nil {
		return err
	}
	c.user = u
	if err := c.readPath(); err != nil {
		return err
	}
	if rt.watchable {
		w, err := parseBool(r.URL.Query(), "watch")
		if err != nil {
			return err
		}
		c.watch = w
	}
	if err := a.authorize(c); err != nil {
		return err
	}
	if !rt.noReady {
		if err := a.opts.Fleet.Ready(); err != nil {
			p := newProblem(http.StatusServiceUnavailable, ProblemNotReady, "the gateway is not ready; retry later").withCause(err)
			p.retryAfter = 5
			return p
		}
	}
	limit := rt.maxBody
	if limit == 0 {
		limit = maxSmallBody
	}
	r.Body = http.MaxBytesReader(c.w, r.Body, limit)
	return nil
}

// readPath validates the namespace and name path values.
func (c *call) readPath() error {
	if ns := c.r.PathValue("namespace"); strings.Contains(c.route.path, "{namespace}") {
		if err := validNamespace(ns); err != nil {
			return invalidField("namespace", "%v", err)
		}
		c.namespace = ns
	}
	if name := c.r.PathValue("name"); strings.Contains(c.route.path, "{name}") {
		if err := validName(name); err != nil {
			return invalidField("name", "%v", err)
		}
		c.name = name
	}
	return nil
}

// fail sends err as a problem document, logs it with its cause and counts
// it.
func (a *api) fail(w http.ResponseWriter, r *http.Request, c *call, err error) {
	p, ok := errors.AsType[*Problem](err)
	if !ok {
		p = internal(err)
	}
	op, who := noOperation, ""
	if c != nil {
		op, who = c.route.op, userName(c.user)
	}
	a.metrics.problem(op, p.Kind())
	level := slog.LevelDebug
	switch {
	case p.Status >= 500:
		level = slog.LevelError
	case p.Status == http.StatusUnauthorized || p.Status == http.StatusForbidden:
		level = slog.LevelInfo
	}
	attrs := []slog.Attr{slog.String("operation", op), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", p.Status), slog.String("problem", string(p.Kind())),
		slog.String("detail", p.Detail)}
	if who != "" {
		attrs = append(attrs, slog.String("user", who))
	}
	if p.cause != nil {
		attrs = append(attrs, slog.String("cause", p.cause.Error()))
	}
	a.log.LogAttrs(r.Context(), level, "api request failed", attrs...)
	if sw, ok := w.(*statusWriter); ok && sw.code != 0 {
		return // the response has started (a watch): nothing more can be sent
	}
	writeProblem(w, r, p)
}

func userName(u user.Info) string {
	if u == nil {
		return ""
	}
	return u.GetName()
}

// writeJSON sends v as JSON with status.
func (c *call) writeJSON(status int, v any) error {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.Header().Set("X-Content-Type-Options", "nosniff")
	writeJSONBody(c.w, status, v)
	return nil
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Every value sent is a plain struct of the API: this is a bug.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintln(w, "response encoding failed")
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// statusWriter records the status code sent.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes of a
// watch).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// Health endpoints.

func (a *api) healthz(c *call) error {
	c.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write([]byte("ok\n"))
	return nil
}

func (a *api) readyz(c *call) error {
	if err := a.opts.Fleet.Ready(); err != nil {
		p := newProblem(http.StatusServiceUnavailable, ProblemNotReady, "not ready").withCause(err)
		p.retryAfter = 5
		return p
	}
	return a.healthz(c)
}

func (a *api) serveMetrics(c *call) error {
	a.gather.ServeHTTP(c.w, c.r)
	return nil
}

// sharedIndex is what client-go's shared informers offer beyond
// controller-runtime's Informer interface: their store.
type sharedIndex interface {
	GetIndexer() toolscache.Indexer
}

// listShared returns the cached objects of T's kind in the call's namespace
// (all namespaces when it has none) whose labels match sel (nil: all), as
// pointers to the cache's own objects: every handler only reads what it
// lists and copies what it returns. With Informers whose informers expose
// their store, nothing is copied; otherwise the Reader lists with
// UnsafeDisableDeepCopy, which copies each object shallowly.
func listShared[T any, PT interface {
	*T
	client.Object
}](a *api, c *call, list client.ObjectList, items func() []T, sel labels.Selector) ([]*T, error) {
	ctx := c.r.Context()
	if a.opts.Informers != nil {
		if inf, err := a.opts.Informers.GetInformer(ctx, PT(new(T))); err == nil {
			if si, ok := inf.(sharedIndex); ok {
				var objs []any
				if c.namespace != "" {
					objs, err = si.GetIndexer().ByIndex(toolscache.NamespaceIndex, c.namespace)
				} else {
					objs = si.GetIndexer().List()
				}
				if err == nil {
					out := make([]*T, 0, len(objs))
					for _, o := range objs {
						if t, ok := o.(PT); ok && (sel == nil || sel.Matches(labels.Set(t.GetLabels()))) {
							out = append(out, (*T)(t))
						}
					}
					return out, nil
				}
			}
		}
	}
	opts := []client.ListOption{client.UnsafeDisableDeepCopy}
	if c.namespace != "" {
		opts = append(opts, client.InNamespace(c.namespace))
	}
	if sel != nil {
		opts = append(opts, client.MatchingLabelsSelector{Selector: sel})
	}
	if err := a.opts.Reader.List(ctx, list, opts...); err != nil {
		return nil, fromKubernetes(err, "the list")
	}
	its := items()
	out := make([]*T, len(its))
	for i := range its {
		out[i] = &its[i]
	}
	return out, nil
}
