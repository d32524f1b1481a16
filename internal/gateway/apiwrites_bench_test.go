package gateway_test

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/gateway"
)

// requestCounter counts a client's API requests by kind.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

// requestKind classifies a request: writes of Device status, writes of the
// gateway's Lease (one per replica, not per device), other writes, reads
// (get and list) and watches.
func requestKind(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && q.Get("watch") == "true":
		return "watch"
	case r.Method == http.MethodGet:
		return "read"
	case strings.Contains(r.URL.Path, "/devices/") && strings.HasSuffix(r.URL.Path, "/status"):
		return "device-status-write"
	case strings.Contains(r.URL.Path, "/leases/"):
		return "lease-write"
	}
	return "other-write"
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		kind := requestKind(r)
		resp, err := rt.RoundTrip(r)
		c.mu.Lock()
		c.counts[kind]++
		if err == nil && resp.StatusCode == http.StatusConflict {
			c.counts[kind+"-conflict"]++
		}
		c.mu.Unlock()
		return resp, err
	})
}

func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// BenchmarkAPIWrites counts the gateway's API-server requests at steady
// state: WASMBED_BENCH_DEVICES simulated devices (default 6) enrol and
// connect to a real gateway against the embedded control plane, with
// lastSeen refreshed every WASMBED_BENCH_LASTSEEN (default 3s instead of
// the product's hour) and heartbeats every second; once every device is
// Connected and one period has passed, the gateway's requests are counted
// over WASMBED_BENCH_WINDOW (default 3 periods), through a counting
// round-tripper on the gateway's own client configuration.
//
// lastseen-writes/device/hour scales the Device status writes to the
// product's period: writes per device per period, which is per hour with
// the one-hour default. other-writes/device/hour (writes of anything else
// but the gateway's Lease), lease-writes/gateway/hour and reads/gateway/hour
// (gets and lists; the informers' watches are not counted) are per hour of
// wall-clock time, unscaled. A short
// period refreshes a little less often than its scaled equivalent (the
// refresh loop ticks every second at most), so the large run in
// docs/benchmarks.md uses a period of 20 s.
func BenchmarkAPIWrites(b *testing.B) {
	n := 6
	if v, err := strconv.Atoi(os.Getenv("WASMBED_BENCH_DEVICES")); err == nil && v > 0 {
		n = v
	}
	period := envDuration("WASMBED_BENCH_LASTSEEN", 3*time.Second)
	window := envDuration("WASMBED_BENCH_WINDOW", 3*period)
	for b.Loop() {
		p := newPlatform(b)
		counter := &requestCounter{counts: map[string]int{}}
		gw := p.startGateway("gw-0", func(o *gateway.Options) {
			cfg := rest.CopyConfig(o.Config)
			cfg.Wrap(counter.wrap)
			o.Config = cfg
			o.LastSeenPeriod = period
		})
		p.openPairing(10*time.Minute, nil)
		p.runFleet(n, "esp32=1,hifive1=1", gw)
		p.waitDevices("every device connected", n, func(d *wasmbedv1.Device) bool {
			return d.Status.Phase == wasmbedv1.DevicePhaseConnected
		})
		time.Sleep(period)
		before := counter.snapshot()
		time.Sleep(window)
		after := counter.snapshot()
		if got := len(p.devices()); got != n {
			b.Fatalf("got %d devices, want %d", got, n)
		}
		delta := func(k string) float64 { return float64(after[k] - before[k]) }
		perDevice := func(v float64) float64 { return v / float64(n) }
		b.ReportMetric(perDevice(delta("device-status-write"))*period.Seconds()/window.Seconds(), "lastseen-writes/device/hour")
		b.ReportMetric(perDevice(delta("other-write"))*3600/window.Seconds(), "other-writes/device/hour")
		b.ReportMetric(delta("lease-write")*3600/window.Seconds(), "lease-writes/gateway/hour")
		b.ReportMetric(delta("read")*3600/window.Seconds(), "reads/gateway/hour")
		b.ReportMetric(0, "ns/op")
		b.Logf("%d devices, lastSeen period %v, window %v: %v requests in the window (before: %v)", n, period, window, after, before)
	}
}
