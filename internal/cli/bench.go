package cli

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/intstr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/wasmbed/wasmbed/internal/bench"
)

func newBenchCommand() *cobra.Command {
	opts := bench.Options{}
	var output, cpuProfile, maxUpdating string
	cmd := &cobra.Command{
		Use:   "bench [--devices N]",
		Short: "Measure the platform with a simulated fleet",
		Long: `Bench starts the whole platform on this machine (the embedded control plane
and the controller in this process, each gateway in a child process of its
own), enrolls N simulated devices through the pairing window, rolls an
application out to all of them, holds the steady state for a while, and
prints:

  - the time to enroll and connect every device;
  - the rollout's time to Running per device (p50, p99, last);
  - the gateways' resident and private memory per session (smaps_rollup);
  - the API server's writes per device per hour at steady state, with the
    lastSeen refreshes scaled to the product's 1-hour period;
  - the gateways' CPU per 1,000 devices, and heartbeats answered per second.

The devices run in this process; a process may hold a limited number of
file descriptors, so N is at most 15,000.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			logger := slog.Default()
			components := logger
			if !logger.Enabled(cmd.Context(), slog.LevelDebug) {
				components = slog.New(minLevel{min: slog.LevelWarn, next: logger.Handler()})
			}
			opts.Logger = components
			ctrllog.SetLogger(logr.FromSlogHandler(components.Handler()))
			errOut := cmd.ErrOrStderr()
			begin := time.Now()
			opts.Progress = func(s string) {
				fmt.Fprintf(errOut, "[%6s] %s\n", time.Since(begin).Round(time.Second), s)
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			if maxUpdating != "" {
				v := intstr.Parse(maxUpdating)
				if n, err := intstr.GetScaledValueFromIntOrPercent(&v, 100, true); err != nil || n <= 0 {
					return usagef("--max-updating %q: want a positive count or percentage, e.g. 100 or 25%%", maxUpdating)
				}
				opts.MaxUpdating = &v
			}
			r, err := bench.Run(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return r.WriteText(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Devices, "devices", 1000, "simulated devices")
	f.IntVar(&opts.Gateways, "gateways", 1, "gateway replicas, each a child process")
	f.StringVar(&opts.Mix, "mix", "", "board mix, e.g. esp32=1,hifive1=1 (default both boards alike)")
	f.StringVar(&opts.DataDir, "data-dir", "", "data directory (default a temporary one, removed afterwards)")
	f.DurationVar(&opts.Steady, "steady", 2*time.Minute, "steady-state window over which writes and CPU are counted")
	f.DurationVar(&opts.LastSeenPeriod, "last-seen-period", time.Minute, "gateways' lastSeen period during the bench; writes are also projected to the product's 1h")
	f.DurationVar(&opts.HeartbeatInterval, "heartbeat-interval", 30*time.Second, "heartbeat interval of gateways and devices")
	f.Float64Var(&opts.StartRate, "start-rate", 0, "devices switched on per second (default 0: all at once)")
	f.StringVar(&maxUpdating, "max-updating", "", "the rollout's maxUpdating, a count or a percentage (default the product's 25%)")
	f.DurationVar(&opts.RolloutTimeout, "rollout-timeout", 0, "bound of the wait for the rollout (default 2m + 60ms per device)")
	f.StringVarP(&output, "output", "o", "text", "output: text or json")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write this process's CPU profile (control plane, controller and devices) to the file, for go tool pprof")
	return cmd
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path) //nolint:gosec // G304: the operator names the profile file.
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}
