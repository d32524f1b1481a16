package session

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Metrics are the server's Prometheus metrics. Every label takes values
// from a small fixed set, so their cardinality does not grow with the
// fleet. A nil *Metrics counts nothing.
type Metrics struct {
	sessions        prometheus.Gauge
	handshakes      *prometheus.CounterVec
	handshakeTime   *prometheus.HistogramVec
	refusedConns    *prometheus.CounterVec
	sessionsRefused *prometheus.CounterVec
	closedSessions  *prometheus.CounterVec
	frames          *prometheus.CounterVec
	rejectedFrames  *prometheus.CounterVec
	heartbeats      prometheus.Counter
	enrollments     *prometheus.CounterVec
	enrollWaiting   prometheus.Gauge
	renewals        *prometheus.CounterVec
}

// NewMetrics creates the server's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "wasmbed", "gateway"
	m := &Metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "sessions", Help: "Live device sessions."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "handshakes_total", Help: "TLS handshakes by listener, result (ok, failed, timeout, throttled) and resumption."},
			[]string{"listener", "result", "resumed"}),
		handshakeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "handshake_duration_seconds", Help: "Duration of successful TLS handshakes, from accept to finished.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, 1, 5}},
			[]string{"listener", "resumed"}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_refused_total", Help: "Connections refused before or during their handshake by an admission limit."},
			[]string{"listener", "limit"}),
		sessionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sessions_refused_total", Help: "Verified devices refused a session, by reason."},
			[]string{"reason"}),
		closedSessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "sessions_closed_total", Help: "Sessions ended, by reason."},
			[]string{"reason"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "frames_received_total", Help: "Frames received from devices, by message type."},
			[]string{"type"}),
		rejectedFrames: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "frames_rejected_total", Help: "Frames from devices rejected, by reason."},
			[]string{"reason"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "heartbeats_total", Help: "Heartbeats answered."}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enrollments_total", Help: "Enrollment exchanges by result (ok, or the refusal reason)."},
			[]string{"result"}),
		enrollWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "enrollments_waiting", Help: "Enrollment requests waiting for one of the MaxEnrollments slots."}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "renewals_total", Help: "Certificate renewals by result (ok, refused, unanswered)."},
			[]string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.sessions, m.handshakes, m.handshakeTime, m.refusedConns, m.sessionsRefused,
		m.closedSessions, m.frames, m.rejectedFrames, m.heartbeats, m.enrollments, m.enrollWaiting, m.renewals} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) opened() {
	if m != nil {
		m.sessions.Inc()
	}
}

func (m *Metrics) closed(r CloseReason) {
	if m != nil {
		m.sessions.Dec()
		m.closedSessions.WithLabelValues(string(r)).Inc()
	}
}

func (m *Metrics) handshake(l listenerKind, result string, resumed bool, d time.Duration) {
	if m == nil {
		return
	}
	res := "false"
	if resumed {
		res = "true"
	}
	m.handshakes.WithLabelValues(string(l), result, res).Inc()
	if result == "ok" {
		m.handshakeTime.WithLabelValues(string(l), res).Observe(d.Seconds())
	}
}

func (m *Metrics) refused(l listenerKind, limit string) {
	if m != nil {
		m.refusedConns.WithLabelValues(string(l), limit).Inc()
	}
}

func (m *Metrics) sessionRefused(reason string) {
	if m != nil {
		m.sessionsRefused.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) received(t protocol.Type) {
	if m == nil {
		return
	}
	name := "unknown"
	if t.Known() {
		name = t.String()
	}
	m.frames.WithLabelValues(name).Inc()
}

// rejected counts a decode error by its class.
func (m *Metrics) rejected(err error) {
	if m == nil {
		return
	}
	reason := "malformed"
	switch {
	case errors.Is(err, protocol.ErrFrameTooLarge), errors.Is(err, protocol.ErrLimitExceeded):
		reason = "too_large"
	case errors.Is(err, protocol.ErrUnsupported):
		reason = "unsupported"
	case errors.Is(err, protocol.ErrUnsupportedVersion):
		reason = "version"
	case errors.Is(err, protocol.ErrWrongDirection):
		reason = "direction"
	}
	m.rejectedFrames.WithLabelValues(reason).Inc()
}

func (m *Metrics) rejectedReason(reason string) {
	if m != nil {
		m.rejectedFrames.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) heartbeat() {
	if m != nil {
		m.heartbeats.Inc()
	}
}

func (m *Metrics) enrollment(result string) {
	if m != nil {
		m.enrollments.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) waitingEnrollments(delta float64) {
	if m != nil {
		m.enrollWaiting.Add(delta)
	}
}

func (m *Metrics) renewal(result string) {
	if m != nil {
		m.renewals.WithLabelValues(result).Inc()
	}
}
