package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// maxAppLabels bounds the distinct application names used as label values;
// reports of further applications are counted under "other".
const maxAppLabels = 100

// metrics are the gateway's Prometheus metrics beyond the session server's.
// Devices are never a label: per-device figures are served by the HTTP API.
type metrics struct {
	statusWrites *prometheus.CounterVec
	deliveries   *prometheus.CounterVec
	freeMemory   prometheus.Histogram
	rssi         prometheus.Histogram
	appMemory    *prometheus.HistogramVec
	appExecs     *prometheus.CounterVec
	appTraps     *prometheus.CounterVec
	appCPU       *prometheus.CounterVec
	appFuel      *prometheus.CounterVec

	certificatesExpiring prometheus.Gauge

	mu   sync.Mutex
	apps map[string]bool
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "wasmbed"
	m := &metrics{
		statusWrites: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "gateway",
			Name: "status_writes_total", Help: "Status writes to the Kubernetes API server, by kind."}, []string{"kind"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "gateway",
			Name: "deliveries_total", Help: "Artifacts delivered to devices, by result (ok, refused, failed)."}, []string{"result"}),
		freeMemory: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: "device",
			Name: "free_memory_bytes", Help: "Free device memory reported in heartbeats.",
			Buckets: prometheus.ExponentialBuckets(1024, 2, 12)}),
		rssi: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: "device",
			Name: "link_rssi_dbm", Help: "Link signal strength reported in heartbeats.",
			Buckets: prometheus.LinearBuckets(-100, 10, 10)}),
		appMemory: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: "app",
			Name: "memory_bytes", Help: "Linear memory of application instances, from device reports.",
			Buckets: prometheus.ExponentialBuckets(64<<10, 2, 10)}, []string{"app"}),
		appExecs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "app",
			Name: "executions_total", Help: "Completed application invocations across devices."}, []string{"app"}),
		appTraps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "app",
			Name: "traps_total", Help: "Application traps across devices."}, []string{"app"}),
		appCPU: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "app",
			Name: "cpu_seconds_total", Help: "Application CPU time across devices."}, []string{"app"}),
		appFuel: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "app",
			Name: "fuel_total", Help: "Application fuel consumed across devices."}, []string{"app"}),
		certificatesExpiring: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: "gateway",
			Name: "certificates_expiring", Help: "Sessions held whose device certificate is in the last sixth of its lifetime, not renewed."}),
		apps: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{m.statusWrites, m.deliveries, m.freeMemory, m.rssi, m.appMemory,
		m.appExecs, m.appTraps, m.appCPU, m.appFuel, m.certificatesExpiring} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// appLabel bounds the application label's values.
func (m *metrics) appLabel(app string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.apps[app] {
		return app
	}
	if len(m.apps) >= maxAppLabels {
		return "other"
	}
	m.apps[app] = true
	return app
}

func (m *metrics) observeHeartbeat(hb *protocol.Heartbeat) {
	m.freeMemory.Observe(float64(hb.FreeMemory))
	if hb.Link.RSSI != 0 {
		m.rssi.Observe(float64(hb.Link.RSSI))
	}
}

// observeReport adds what a metrics report says grew since the last one.
func (m *metrics) observeReport(r *protocol.MetricsReport, deltas []protocol.AppMetrics) {
	for _, a := range r.Apps {
		m.appMemory.WithLabelValues(m.appLabel(a.App)).Observe(float64(a.MemoryBytes))
	}
	for _, d := range deltas {
		app := m.appLabel(d.App)
		m.appExecs.WithLabelValues(app).Add(float64(d.Executions))
		m.appTraps.WithLabelValues(app).Add(float64(d.Traps))
		m.appCPU.WithLabelValues(app).Add(float64(d.CPUMicros) / 1e6)
		m.appFuel.WithLabelValues(app).Add(float64(d.Fuel))
	}
}
