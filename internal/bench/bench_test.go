package bench

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/procmem"
)

func TestPercentiles(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: percentiles sorts
	}
	tests := []struct {
		name          string
		in            []time.Duration
		p50, p99, max time.Duration
	}{
		{"empty", nil, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"hundred", ms(hundred...), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
		{"two", ms(30, 10), 10 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := percentiles(tt.in)
			if got.P50 != tt.p50 || got.P99 != tt.p99 || got.Max != tt.max || got.Count != len(tt.in) {
				t.Errorf("percentiles = %+v, want p50 %v p99 %v max %v count %d", got, tt.p50, tt.p99, tt.max, len(tt.in))
			}
		})
	}
}

func TestSourceAddrs(t *testing.T) {
	for _, n := range []int{1, devicesPerSource, devicesPerSource + 1, 10000, maxDevices} {
		addrs := sourceAddrs(n)
		if want := (n + devicesPerSource - 1) / devicesPerSource; len(addrs) != want {
			t.Errorf("sourceAddrs(%d): %d addresses, want %d", n, len(addrs), want)
		}
		seen := map[string]bool{}
		for _, a := range addrs {
			if !strings.HasPrefix(a, "127.") || seen[a] || strings.HasSuffix(a, ".0") {
				t.Fatalf("sourceAddrs(%d): bad or repeated address %q", n, a)
			}
			seen[a] = true
		}
	}
}

// TestProcessCPU reads this process's CPU time after burning some: it is
// positive and does not go down.
func TestProcessCPU(t *testing.T) {
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	x := 0
	for i := range 50_000_000 {
		x += i % 7
	}
	after, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= 0 || after < before {
		t.Errorf("CPU time went from %v to %v (x=%d)", before, after, x)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []Options{
		{Devices: -1}, {Devices: maxDevices + 1}, {Gateways: 17}, {Steady: time.Second},
		{LastSeenPeriod: time.Millisecond}, {StartRate: -1}, {StartRate: math.NaN()},
	} {
		if err := o.setDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// TestWriteText: the text report names every figure with its metric.
func TestWriteText(t *testing.T) {
	r := &Report{
		Devices: 1000, Gateways: 1, PlatformStart: 8 * time.Second, EnrollConnect: 100 * time.Second,
		Rollout:         Percentiles{P50: 30 * time.Second, P99: 45 * time.Second, Max: 46 * time.Second, Count: 1000},
		Strategy:        "25%",
		GatewayIdle:     procmem.Usage{Resident: 150 << 20, Private: 18 << 20, Source: procmem.SourceSmapsRollup},
		GatewayLoaded:   procmem.Usage{Resident: 200 << 20, Private: 70 << 20, Source: procmem.SourceSmapsRollup},
		SessionResident: 51200, SessionPrivate: 53248, Steady: 2 * time.Minute, LastSeenPeriod: time.Minute,
		Writes:              map[string]float64{"devices/status": 2000, "leases": 96},
		WritesPerDeviceHour: 60, ProjectedPerDeviceHour: 1, LeaseWritesPerHour: 2880,
		GatewayCPU: 3 * time.Second, CPUPer1000: 0.025, Heartbeats: 33,
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"1000, on 1 gateway(s)",
		"p50 30s, p99 45s, last 46s (maxUpdating 25%, 1000 devices)",
		"resident 50.0 KiB, private 52.0 KiB",
		"resident 150.0 MiB, private 18.0 MiB (smaps_rollup)",
		"1.00 with lastSeen every 1h (60.00 measured, lastSeen every 1m0s)",
		"2880 for the platform (2.88 per device-hour at this size)",
		"devices/status 2000, leases 96",
		"0.025 cores (25 ms/s)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
