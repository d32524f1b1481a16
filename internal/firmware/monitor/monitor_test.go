package monitor

import (
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// fakeDevice holds the values the sources read.
type fakeDevice struct {
	now     time.Time
	free    uint32
	link    protocol.Link
	apps    []AppSample
	running int
}

func (d *fakeDevice) monitor() *Monitor {
	return New(Config{
		Now:         func() time.Time { return d.now },
		Interval:    time.Minute,
		MinInterval: 5 * time.Second,
		Sources: Sources{
			Apps:       func(dst []AppSample) []AppSample { return append(dst, d.apps...) },
			Running:    func() int { return d.running },
			FreeMemory: func() uint32 { return d.free },
			Link:       func() protocol.Link { return d.link },
		},
	})
}

func newFake() *fakeDevice {
	return &fakeDevice{
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), free: 200 << 10,
		link:    protocol.Link{RSSI: -60, LossPermille: 10},
		apps:    []AppSample{{App: "a", MemoryBytes: 64 << 10}, {App: "b", MemoryBytes: 64 << 10}},
		running: 2,
	}
}

func TestDue(t *testing.T) {
	tests := []struct {
		name   string
		change func(d *fakeDevice)
		want   Trigger
	}{
		{"idle", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second) }, TriggerNone},
		{"busy but unchanged", func(d *fakeDevice) {
			d.now = d.now.Add(10 * time.Second)
			d.apps[0].Executions += 1000
			d.apps[0].Fuel += 1 << 20
			d.apps[0].CPUMicros += 5000
		}, TriggerNone},
		{"small memory drift", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.apps[1].MemoryBytes += 100; d.free -= 100 }, TriggerNone},
		{"app memory grew", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.apps[1].MemoryBytes += 64 << 10 }, TriggerChange},
		{"trap", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.apps[0].Traps++ }, TriggerChange},
		{"trap too soon", func(d *fakeDevice) { d.now = d.now.Add(time.Second); d.apps[0].Traps++ }, TriggerNone},
		{"app removed", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.apps = d.apps[:1] }, TriggerChange},
		{"app stopped", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.running-- }, TriggerChange},
		{"free memory dropped", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.free -= 8 << 10 }, TriggerChange},
		{"rssi small", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.link.RSSI -= 3 }, TriggerNone},
		{"rssi dropped", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.link.RSSI -= 10 }, TriggerChange},
		{"rssi rose", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.link.RSSI += 10 }, TriggerChange},
		{"loss", func(d *fakeDevice) { d.now = d.now.Add(10 * time.Second); d.link.LossPermille = 200 }, TriggerChange},
		{"period elapsed", func(d *fakeDevice) { d.now = d.now.Add(time.Minute) }, TriggerPeriodic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFake()
			m := d.monitor()
			if got := m.Due(); got != TriggerFirst {
				t.Fatalf("before any report: got %s, want first", got)
			}
			var r protocol.MetricsReport
			m.Metrics(&r)
			tt.change(d)
			if got := m.Due(); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestReportContents(t *testing.T) {
	d := newFake()
	d.apps[0] = AppSample{App: "a", MemoryBytes: 1, Fuel: 2, CPUMicros: 3, Executions: 4, Traps: 5}
	m := d.monitor()
	d.now = d.now.Add(90 * time.Second)
	var r protocol.MetricsReport
	m.Metrics(&r)
	want := protocol.AppMetrics{App: "a", MemoryBytes: 1, Fuel: 2, CPUMicros: 3, Executions: 4, Traps: 5}
	if r.UptimeSeconds != 90 || r.FreeMemory != d.free || r.Link != d.link || len(r.Apps) != 2 || r.Apps[0] != want {
		t.Fatalf("got %+v", r)
	}
	var hb protocol.Heartbeat
	m.Heartbeat(&hb)
	if hb.UptimeSeconds != 90 || hb.RunningApps != 2 || hb.FreeMemory != d.free || hb.Link != d.link {
		t.Fatalf("heartbeat %+v", hb)
	}
	var s Sample
	m.Sample(&s)
	d.apps[0].App = "changed"
	if s.Apps[0].App != "a" || len(s.Apps) != 2 {
		t.Fatalf("sample aliases the source: %+v", s.Apps)
	}
	if next := m.NextDue(); !next.Equal(d.now.Add(time.Minute)) {
		t.Fatalf("next due %s, want %s", next, d.now.Add(time.Minute))
	}
	if m.Reports() != 1 {
		t.Fatalf("reports %d, want 1", m.Reports())
	}
}

func TestNoSources(t *testing.T) {
	m := New(Config{})
	var r protocol.MetricsReport
	m.Metrics(&r)
	if len(r.Apps) != 0 || m.Due() != TriggerNone {
		t.Fatalf("got %+v", r)
	}
}

func TestSteadyStateAllocatesNothing(t *testing.T) {
	d := newFake()
	m := d.monitor()
	var r protocol.MetricsReport
	m.Metrics(&r)
	allocs := testing.AllocsPerRun(100, func() {
		d.now = d.now.Add(time.Second)
		d.apps[0].Executions++
		if m.Due() != TriggerNone {
			m.Metrics(&r)
		}
		m.Metrics(&r)
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per sample and report, want 0", allocs)
	}
}

func BenchmarkDueIdle(b *testing.B) {
	d := newFake()
	m := d.monitor()
	var r protocol.MetricsReport
	m.Metrics(&r)
	b.ReportAllocs()
	for b.Loop() {
		d.now = d.now.Add(time.Second)
		_ = m.Due()
	}
}

func BenchmarkMetricsReport(b *testing.B) {
	d := newFake()
	for i := range 6 {
		d.apps = append(d.apps, AppSample{App: string(rune('c' + i))})
	}
	m := d.monitor()
	var r protocol.MetricsReport
	b.ReportAllocs()
	for b.Loop() {
		m.Metrics(&r)
	}
}
