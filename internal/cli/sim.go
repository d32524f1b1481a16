package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/sim"
)

// simOptions are the flags of `wasmbed sim`.
type simOptions struct {
	devices           int
	gateways          []string
	enrollGateways    []string
	caFile            string
	serverName        string
	dataDir           string
	profileMix        string
	seed              uint64
	startRate         float64
	powerLossRate     float64
	flapRate          float64
	flapDuration      time.Duration
	powerOffTime      time.Duration
	clockSkew         time.Duration
	heartbeatInterval time.Duration
	metricsInterval   time.Duration
	summaryInterval   time.Duration
	backoffBase       time.Duration
	backoffMax        time.Duration
	sourceAddrs       []string
	latency           time.Duration
	jitter            time.Duration
	dropProbability   float64
	duration          time.Duration
	wasmMode          string
}

func newSimCommand() *cobra.Command {
	opts := &simOptions{}
	cmd := &cobra.Command{
		Use:   "sim --devices N --gateway HOST:PORT --ca FILE",
		Short: "Run a fleet of simulated devices in one process",
		Long: `Sim runs N simulated devices in this process, sharing one WebAssembly engine
and its compiled-module cache. Devices start at --start-rate per second, enroll,
keep their sessions (retrying with backoff while no gateway answers), and run
what is deployed to them. Faults are injected at a rate per device-hour:
--power-loss-rate cuts power (torn flash writes, reboot from flash),
--flap-rate takes the link down for --flap-duration; --clock-skew offsets each
device's clock. A summary line (devices per state, applications, reconnects,
errors) is printed every --summary-interval and once more at the end.

Device keys come from the system's random source unless --seed is given: a
seed makes the whole fleet reproducible, keys included, so anyone who knows it
can impersonate the devices; use one only against test gateways. See
docs/simulator.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSim(cmd, opts, slog.Default())
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.devices, "devices", 10, "number of devices")
	f.StringArrayVar(&opts.gateways, "gateway", nil, "gateway session endpoint HOST:PORT, repeatable (required)")
	f.StringArrayVar(&opts.enrollGateways, "enroll-gateway", nil, "gateway enrollment endpoint HOST:PORT, repeatable (default: --gateway)")
	f.StringVar(&opts.caFile, "ca", "", "PEM file with the root CA, optionally followed by the gateway CA and device CA to pin (required)")
	f.StringVar(&opts.serverName, "server-name", "", "name in the gateway certificate (default: the endpoint's host)")
	f.StringVar(&opts.dataDir, "data-dir", "", "directory for the devices' flash, one subdirectory each (default: in memory)")
	f.StringVar(&opts.profileMix, "profile-mix", "esp32=100", "profile mix, e.g. esp32=80,hifive1=20")
	f.Uint64Var(&opts.seed, "seed", 0, "make the fleet reproducible, device keys included: anyone who knows the seed can impersonate the devices (0: keys from the system's random source)")
	f.Float64Var(&opts.startRate, "start-rate", 200, "devices started per second (0: all at once)")
	f.Float64Var(&opts.powerLossRate, "power-loss-rate", 0, "power losses per device per hour")
	f.Float64Var(&opts.flapRate, "flap-rate", 0, "link flaps per device per hour")
	f.DurationVar(&opts.flapDuration, "flap-duration", 5*time.Second, "how long a flap keeps the link down")
	f.DurationVar(&opts.powerOffTime, "power-off-time", time.Second, "how long a device stays off after a power loss")
	f.DurationVar(&opts.clockSkew, "clock-skew", 0, "each device's clock is offset uniformly within ± this")
	f.DurationVar(&opts.heartbeatInterval, "heartbeat-interval", 30*time.Second, "heartbeat interval")
	f.DurationVar(&opts.metricsInterval, "metrics-interval", 60*time.Second, "metrics report interval")
	f.DurationVar(&opts.summaryInterval, "summary-interval", 10*time.Second, "interval between summary lines")
	f.DurationVar(&opts.backoffBase, "backoff-base", link.DefaultBackoff.Base, "first reconnection backoff ceiling")
	f.DurationVar(&opts.backoffMax, "backoff-max", link.DefaultBackoff.Max, "largest reconnection backoff ceiling")
	f.DurationVar(&opts.latency, "link-latency", 0, "latency the simulated medium adds to every write")
	f.DurationVar(&opts.jitter, "link-jitter", 0, "uniform extra latency up to this much")
	f.Float64Var(&opts.dropProbability, "link-drop-probability", 0, "probability that a read or write finds the link gone")
	f.StringArrayVar(&opts.sourceAddrs, "source-addr", nil, "local address to dial from, repeatable, round robin (e.g. 127.0.0.2)")
	f.DurationVar(&opts.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	f.StringVar(&opts.wasmMode, "wasm-mode", "auto", "webassembly engine: auto, compiler or interpreter")
	_ = cmd.MarkFlagRequired("gateway")
	_ = cmd.MarkFlagRequired("ca")
	return cmd
}

func runSim(cmd *cobra.Command, opts *simOptions, logger *slog.Logger) error {
	ctx := cmd.Context()
	pins, err := loadPins(opts.caFile)
	if err != nil {
		return err
	}
	mix, err := sim.ParseMix(opts.profileMix)
	if err != nil {
		return err
	}
	mode, err := wasm.ParseMode(opts.wasmMode)
	if err != nil {
		return err
	}
	eng, err := wasm.NewEngine(ctx, wasm.Config{Mode: mode, Logger: logger})
	if err != nil {
		return err
	}
	defer eng.Close(context.WithoutCancel(ctx))
	fleet, err := sim.New(ctx, sim.Options{
		Devices: opts.devices, Gateways: opts.gateways, EnrollGateways: opts.enrollGateways,
		Root: pins.Root, GatewayCA: pins.GatewayCA, DeviceCA: pins.DeviceCA, ServerName: opts.serverName, DataDir: opts.dataDir, Mix: mix, Seed: opts.seed,
		StartRate: opts.startRate, PowerLossRate: opts.powerLossRate, FlapRate: opts.flapRate,
		FlapDuration: opts.flapDuration, PowerOffTime: opts.powerOffTime, ClockSkew: opts.clockSkew,
		HeartbeatInterval: opts.heartbeatInterval, MetricsInterval: opts.metricsInterval,
		Backoff:     link.Backoff{Base: opts.backoffBase, Max: opts.backoffMax},
		Conditions:  link.Conditions{Latency: opts.latency, Jitter: opts.jitter, DropProbability: opts.dropProbability},
		SourceAddrs: opts.sourceAddrs, Engine: eng,
		SummaryInterval: opts.summaryInterval, Out: cmd.OutOrStdout(), Logger: logger,
	})
	if err != nil {
		return err
	}
	if opts.seed != 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "wasmbed: warning: --seed %d makes every device key predictable to anyone who knows the seed; use it only against test gateways\n", opts.seed)
	}
	if opts.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.duration)
		defer cancel()
	}
	logger.Info("fleet starting", "devices", opts.devices, "gateways", opts.gateways, "mix", opts.profileMix)
	fleet.Run(ctx)
	return nil
}
