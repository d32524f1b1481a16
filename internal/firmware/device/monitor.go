package device

import (
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// monitor is the device's monitoring system: it fills heartbeats and
// metrics reports from the boot time, the profile's RAM, the application
// manager and the runtime's per-app accounting, and counts what
// applications publish.
type monitor struct {
	clock   link.Clock
	booted  time.Time
	profile profile.Profile
	mgr     *appmgr.Manager
	runner  *runner

	published atomic.Uint64
}

func (m *monitor) uptime() uint32 {
	return uint32(min(max(m.clock.Now().Sub(m.booted)/time.Second, 0), 1<<32-1))
}

func (m *monitor) freeMemory() uint32 {
	used := m.runner.memory()
	ram := m.profile.RAMBytes
	if used >= ram {
		return 0
	}
	return uint32(min(ram-used, 1<<32-1))
}

// Heartbeat implements client.Telemetry.
func (m *monitor) Heartbeat(hb *protocol.Heartbeat) {
	hb.UptimeSeconds = m.uptime()
	hb.FreeMemory = m.freeMemory()
	hb.RunningApps = uint16(min(m.mgr.Running(), 1<<16-1))
}

// Metrics implements client.Telemetry.
func (m *monitor) Metrics(r *protocol.MetricsReport) {
	r.UptimeSeconds = m.uptime()
	r.FreeMemory = m.freeMemory()
	r.Apps = m.runner.metrics(r.Apps)
}

// PublishMetric implements wasm.Publisher.
func (m *monitor) PublishMetric(_, _ string, _ float64) error {
	m.published.Add(1)
	return nil
}

// PublishMessage implements wasm.Publisher.
func (m *monitor) PublishMessage(_, _ string, _ []byte) error {
	m.published.Add(1)
	return nil
}
