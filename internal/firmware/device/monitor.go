package device

import (
	"math"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/monitor"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
)

// newMonitor returns the device's monitoring system, the client's
// telemetry source: it samples the applications from the runner and counts
// free memory as the profile's RAM less their linear memory. The client
// adds the link quality to what it fills.
//
// The client sends the regular reports (every metricsInterval: the same
// default, negative for none) and one after every application status.
// Early reports come from application events (a trap, a limit hit, a
// fallback: see Firmware.observe) and from the monitor's change detection,
// asked after every tick (see Firmware.afterTick).
func newMonitor(clock hal.Clock, prof profile.Profile, run *runner, metricsInterval time.Duration) *monitor.Monitor {
	switch {
	case metricsInterval == 0:
		metricsInterval = defaultMetricsInterval
	case metricsInterval < 0:
		metricsInterval = math.MaxInt64 // never periodic: only changes
	}
	return monitor.New(monitor.Config{
		Sources: monitor.Sources{
			Apps:    run.samples,
			Running: run.running,
			FreeMemory: func() uint32 {
				used := run.memory()
				if used >= prof.RAMBytes {
					return 0
				}
				return uint32(min(prof.RAMBytes-used, 1<<32-1))
			},
		},
		Now:      clock.Now,
		Interval: metricsInterval,
	})
}

// defaultMetricsInterval is the client's default metrics interval.
const defaultMetricsInterval = 60 * time.Second

// discard accepts what applications publish (publish_metric, publish) and
// drops it: protocol version 1 has no message that carries application
// data to the gateway.
type discard struct{}

var _ wasm.Publisher = discard{}

// PublishMetric implements wasm.Publisher.
func (discard) PublishMetric(_, _ string, _ float64) error { return nil }

// PublishMessage implements wasm.Publisher.
func (discard) PublishMessage(_, _ string, _ []byte) error { return nil }
