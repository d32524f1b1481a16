// Package monitor collects a device's metrics — per application memory,
// fuel, CPU time, executions and traps; device uptime, free memory and link
// quality — into a [Sample] the gateway client turns into a MetricsReport,
// and decides when a report is due: periodically, and early when something
// changed by more than a threshold, so an idle device stays quiet.
//
// A Monitor owns two reusable samples (current and last reported) and
// fills protocol messages in place, so once its slices have grown to the
// number of applications, sampling and reporting allocate nothing.
//
// Change detection compares the current sample with the last reported one:
// a change in the set of applications, any new trap, an application's
// memory moving by at least Thresholds.AppMemoryBytes, free memory by
// Thresholds.FreeMemoryBytes, RSSI by Thresholds.RSSI dB or packet loss by
// Thresholds.LossPermille. Counters that grow while an application simply
// runs (executions, fuel, CPU time) never trigger a report on their own.
// Change-triggered reports are spaced at least Config.MinInterval apart.
package monitor

import (
	"sync"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// AppSample holds the counters of one application.
type AppSample struct {
	App         string
	MemoryBytes uint64 // current linear memory size
	Fuel        uint64 // CPU budget consumed since start
	CPUMicros   uint64 // CPU time used since start
	Executions  uint64 // completed invocations
	Traps       uint64 // traps
}

// Sample is the device's metrics at one instant.
type Sample struct {
	Uptime      time.Duration
	FreeMemory  uint32
	RunningApps uint16
	Link        protocol.Link
	Apps        []AppSample
}

// Sources read the live values. Every field is optional.
type Sources struct {
	// Apps appends the counters of every installed application to dst, in
	// a stable order (the runtime adapter fills it); it should not allocate
	// beyond growing dst.
	Apps func(dst []AppSample) []AppSample
	// Running returns the number of running applications.
	Running func() int
	// FreeMemory returns the free heap in bytes.
	FreeMemory func() uint32
	// Link returns the current link quality.
	Link func() protocol.Link
}

// Thresholds set how large a change must be to trigger an early report.
// Zero fields take the defaults.
type Thresholds struct {
	AppMemoryBytes  uint64 // default 4 KiB
	FreeMemoryBytes uint32 // default 4 KiB
	RSSI            int16  // dB, default 6
	LossPermille    uint16 // default 50 (5%)
}

// Config configures a Monitor.
type Config struct {
	Sources Sources
	// Now is the device clock; nil means time.Now. Uptime counts from the
	// first reading, taken by New.
	Now func() time.Time
	// Interval is the period of regular reports, default 60 s.
	Interval time.Duration
	// MinInterval is the least time between change-triggered reports,
	// default 5 s.
	MinInterval time.Duration
	Thresholds  Thresholds
}

// Trigger says why a report is due.
type Trigger uint8

// Triggers.
const (
	// TriggerNone: no report is due.
	TriggerNone Trigger = iota
	// TriggerFirst: nothing was reported yet.
	TriggerFirst
	// TriggerPeriodic: the regular interval elapsed.
	TriggerPeriodic
	// TriggerChange: a value changed beyond its threshold.
	TriggerChange
)

// String returns the trigger's name.
func (t Trigger) String() string {
	switch t {
	case TriggerFirst:
		return "first"
	case TriggerPeriodic:
		return "periodic"
	case TriggerChange:
		return "change"
	}
	return "none"
}

// Monitor samples one device. It is safe for concurrent use.
type Monitor struct {
	mu         sync.Mutex
	cfg        Config
	boot       time.Time
	cur, last  Sample
	lastReport time.Time
	reported   bool
	reports    uint64
}

// New returns a Monitor; device uptime starts now.
func New(cfg Config) *Monitor {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 60 * time.Second
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 5 * time.Second
	}
	th := &cfg.Thresholds
	if th.AppMemoryBytes == 0 {
		th.AppMemoryBytes = 4 << 10
	}
	if th.FreeMemoryBytes == 0 {
		th.FreeMemoryBytes = 4 << 10
	}
	if th.RSSI == 0 {
		th.RSSI = 6
	}
	if th.LossPermille == 0 {
		th.LossPermille = 50
	}
	return &Monitor{cfg: cfg, boot: cfg.Now()}
}

// sample refreshes m.cur.
func (m *Monitor) sample() time.Time {
	now := m.cfg.Now()
	s := &m.cur
	s.Uptime = now.Sub(m.boot)
	src := &m.cfg.Sources
	if src.FreeMemory != nil {
		s.FreeMemory = src.FreeMemory()
	}
	if src.Link != nil {
		s.Link = src.Link()
	}
	s.Apps = s.Apps[:0]
	if src.Apps != nil {
		s.Apps = src.Apps(s.Apps)
	}
	s.RunningApps = 0
	if src.Running != nil {
		s.RunningApps = uint16(min(src.Running(), 0xFFFF)) //nolint:gosec // clamped to 0xFFFF; a count is never negative
	}
	return now
}

// Sample takes a fresh sample and copies it into dst, reusing dst.Apps.
func (m *Monitor) Sample(dst *Sample) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sample()
	apps := append(dst.Apps[:0], m.cur.Apps...)
	*dst = m.cur
	dst.Apps = apps
}

// Due takes a fresh sample and reports whether a report is due, and why.
func (m *Monitor) Due() Trigger {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.sample()
	switch {
	case !m.reported:
		return TriggerFirst
	case now.Sub(m.lastReport) >= m.cfg.Interval:
		return TriggerPeriodic
	case now.Sub(m.lastReport) >= m.cfg.MinInterval && m.changed():
		return TriggerChange
	}
	return TriggerNone
}

// NextDue returns when the next periodic report falls due.
func (m *Monitor) NextDue() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.reported {
		return m.boot
	}
	return m.lastReport.Add(m.cfg.Interval)
}

func absDiff[T uint64 | uint32 | uint16](a, b T) T {
	if a > b {
		return a - b
	}
	return b - a
}

// changed compares the current sample with the last reported one.
func (m *Monitor) changed() bool {
	c, l, th := &m.cur, &m.last, &m.cfg.Thresholds
	if len(c.Apps) != len(l.Apps) || c.RunningApps != l.RunningApps {
		return true
	}
	if absDiff(c.FreeMemory, l.FreeMemory) >= th.FreeMemoryBytes ||
		absDiff(c.Link.LossPermille, l.Link.LossPermille) >= th.LossPermille {
		return true
	}
	if d := int32(c.Link.RSSI) - int32(l.Link.RSSI); d >= int32(th.RSSI) || -d >= int32(th.RSSI) {
		return true
	}
	for i := range c.Apps {
		a, b := &c.Apps[i], &l.Apps[i]
		if a.App != b.App || a.Traps != b.Traps || absDiff(a.MemoryBytes, b.MemoryBytes) >= th.AppMemoryBytes {
			return true
		}
	}
	return false
}

// report fills dst from m.cur and makes m.cur the new baseline.
func (m *Monitor) report(now time.Time, dst *protocol.MetricsReport) {
	c := &m.cur
	dst.UptimeSeconds = uint32(min(c.Uptime/time.Second, 1<<32-1)) //nolint:gosec // clamped to 2^32-1; uptime is never negative
	dst.FreeMemory = c.FreeMemory
	dst.Link = c.Link
	dst.Apps = dst.Apps[:0]
	for i := range c.Apps {
		a := &c.Apps[i]
		dst.Apps = append(dst.Apps, protocol.AppMetrics{
			App: a.App, MemoryBytes: a.MemoryBytes, Fuel: a.Fuel, CPUMicros: a.CPUMicros,
			Executions: a.Executions, Traps: a.Traps,
		})
	}
	apps := append(m.last.Apps[:0], c.Apps...)
	m.last = *c
	m.last.Apps = apps
	m.lastReport, m.reported = now, true
	m.reports++
}

// Metrics takes a fresh sample, fills dst with it (reusing dst.Apps) and
// records it as reported. It implements the client's Telemetry.
func (m *Monitor) Metrics(dst *protocol.MetricsReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.sample()
	m.report(now, dst)
}

// Heartbeat fills the device part of a heartbeat from a fresh sample. It
// implements the client's Telemetry.
func (m *Monitor) Heartbeat(hb *protocol.Heartbeat) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sample()
	hb.UptimeSeconds = uint32(min(m.cur.Uptime/time.Second, 1<<32-1)) //nolint:gosec // clamped to 2^32-1; uptime is never negative
	hb.FreeMemory = m.cur.FreeMemory
	hb.RunningApps = m.cur.RunningApps
	hb.Link = m.cur.Link
}

// Reports returns how many reports were filled.
func (m *Monitor) Reports() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reports
}
