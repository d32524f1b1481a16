package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints the report for people, every figure with the metric it
// is.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
	row("devices", "%d, on %d gateway(s)", r.Devices, r.Gateways)
	row("platform start", "%s (control plane, controller, gateways ready)", round(r.PlatformStart))
	row("enroll and connect all", "%s (%.0f devices/s)", round(r.EnrollConnect), float64(r.Devices)/r.EnrollConnect.Seconds())
	row("rollout to Running", "p50 %s, p99 %s, last %s (maxUpdating %s, %d devices)",
		round(r.Rollout.P50), round(r.Rollout.P99), round(r.Rollout.Max), r.Strategy, r.Rollout.Count)
	row("gateway memory, idle", "resident %s, private %s (%s)", mib(r.GatewayIdle.Resident), mib(r.GatewayIdle.Private), r.GatewayIdle.Source)
	row("gateway memory, all sessions", "resident %s, private %s", mib(r.GatewayLoaded.Resident), mib(r.GatewayLoaded.Private))
	row("gateway memory per session", "resident %.1f KiB, private %.1f KiB", r.SessionResident/1024, r.SessionPrivate/1024)
	row("steady state", "%s window, lastSeen written every %s", round(r.Steady), r.LastSeenPeriod)
	row("API writes per device-hour", "%.2f with lastSeen every 1h (%.2f measured, lastSeen every %s)", r.ProjectedPerDeviceHour, r.WritesPerDeviceHour, r.LastSeenPeriod)
	row("Lease writes per hour", "%.0f for the platform (%.2f per device-hour at this size)", r.LeaseWritesPerHour, r.LeaseWritesPerHour/float64(r.Devices))
	row("API writes in the window", "%s", writesLine(r.Writes))
	row("gateway CPU per 1,000 devices", "%.3f cores (%.0f ms/s); %s over the window", r.CPUPer1000, r.CPUPer1000*1000, round(r.GatewayCPU))
	row("heartbeats answered", "%.0f/s", r.Heartbeats)
	return tw.Flush()
}

func writesLine(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
