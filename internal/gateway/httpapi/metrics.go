package httpapi

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the API's Prometheus metrics. Operations are the route
// table's operation ids (and "none" for requests no route serves), problem
// types the ProblemType constants: no label grows with the fleet or with
// what callers send.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	problems *prometheus.CounterVec
	watchers prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "wasmbed", "http_api"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "Requests served, by operation and status code."},
			[]string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "request_duration_seconds", Help: "Time to serve a request (a watch: its whole life), by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}},
			[]string{"operation"}),
		problems: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "problems_total", Help: "Requests answered with a problem document, by operation and problem type."},
			[]string{"operation", "type"}),
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "watches", Help: "Watches being served."}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.problems, err = register(reg, m.problems); err != nil {
		return nil, err
	}
	if m.watchers, err = register(reg, m.watchers); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector registered before it when
// a second API is built on the same registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, fmt.Errorf("httpapi: register metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) observe(op string, code int, d time.Duration) {
	m.requests.WithLabelValues(op, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(op).Observe(d.Seconds())
}

func (m *metrics) problem(op string, t ProblemType) { m.problems.WithLabelValues(op, string(t)).Inc() }
