package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/pki"
)

func newDeviceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "device",
		Short: "List, describe and revoke devices; run a simulated device",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(newDeviceListCommand(), newDeviceDescribeCommand(), newDeviceRevokeCommand(), newDeviceRunCommand())
	return cmd
}

// deviceRunOptions are the flags of `wasmbed device run`.
type deviceRunOptions struct {
	stateDir          string
	profile           string
	gateways          []string
	enrollGateways    []string
	caFile            string
	serverName        string
	heartbeatInterval time.Duration
	metricsInterval   time.Duration
	pairingToken      string
	wasmMode          string
}

func newDeviceRunCommand() *cobra.Command {
	opts := &deviceRunOptions{}
	cmd := &cobra.Command{
		Use:   "run --state-dir DIR --gateway HOST:PORT --ca FILE",
		Short: "Run one simulated device until interrupted",
		Long: `Run boots one simulated device whose flash lives in DIR/flash.bin: on first
boot it generates its key, enrolls through the gateway's enrollment endpoint
and stores its identity; then it keeps a mutually authenticated session with
the gateways (failing over between them, retrying with backoff) and runs the
applications deployed to it. Interrupt it to shut down in order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDevice(cmd.Context(), opts, slog.Default())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.stateDir, "state-dir", "", "directory of the device's flash (required)")
	f.StringVar(&opts.profile, "profile", "esp32", "hardware profile: esp32 or hifive1")
	f.StringArrayVar(&opts.gateways, "gateway", nil, "gateway session endpoint HOST:PORT, repeatable, in failover order (required)")
	f.StringArrayVar(&opts.enrollGateways, "enroll-gateway", nil, "gateway enrollment endpoint HOST:PORT, repeatable (default: --gateway)")
	f.StringVar(&opts.caFile, "ca", "", "PEM file with the root CA, optionally followed by the gateway CA and device CA to pin (required)")
	f.StringVar(&opts.serverName, "server-name", "", "name in the gateway certificate (default: the endpoint's host)")
	f.DurationVar(&opts.heartbeatInterval, "heartbeat-interval", 30*time.Second, "heartbeat interval (a gateway may change it)")
	f.DurationVar(&opts.metricsInterval, "metrics-interval", 60*time.Second, "metrics report interval")
	f.StringVar(&opts.pairingToken, "pairing-token", "", "pairing token sent at enrollment")
	f.StringVar(&opts.wasmMode, "wasm-mode", "auto", "webassembly engine: auto, compiler or interpreter")
	_ = cmd.MarkFlagRequired("state-dir")
	_ = cmd.MarkFlagRequired("gateway")
	_ = cmd.MarkFlagRequired("ca")
	return cmd
}

func runDevice(ctx context.Context, opts *deviceRunOptions, logger *slog.Logger) error {
	pins, err := loadPins(opts.caFile)
	if err != nil {
		return err
	}
	mode, err := wasm.ParseMode(opts.wasmMode)
	if err != nil {
		return fmt.Errorf("--wasm-mode: %w", err)
	}
	eng, err := wasm.NewEngine(ctx, wasm.Config{Mode: mode, Logger: logger})
	if err != nil {
		return err
	}
	defer eng.Close(context.WithoutCancel(ctx))
	d, err := device.New(device.Config{
		Name: opts.stateDir, Profile: opts.profile, StateDir: opts.stateDir,
		Gateways: opts.gateways, EnrollGateways: opts.enrollGateways,
		Root: pins.Root, GatewayCA: pins.GatewayCA, DeviceCA: pins.DeviceCA, ServerName: opts.serverName, Engine: eng,
		HeartbeatInterval: opts.heartbeatInterval, MetricsInterval: opts.metricsInterval,
		PairingToken: []byte(opts.pairingToken), Logger: logger,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	logger.Info("device starting", "profile", opts.profile, "stateDir", opts.stateDir, "gateways", opts.gateways)
	err = d.Run(ctx)
	st := d.Status()
	logger.Info("device stopped", "device", st.DeviceID, "boots", st.Boots, "reconnects", st.Link.Reconnects)
	return err
}

// loadPins reads a device's trust bundle from a PEM file: the root CA and,
// optionally, the gateway CA and device CA to pin (pki.PinsFromCertificates).
func loadPins(path string) (pki.DevicePins, error) {
	certs, err := pki.LoadCertificates(path)
	if err != nil {
		return pki.DevicePins{}, fmt.Errorf("--ca: %w", err)
	}
	pins, err := pki.PinsFromCertificates(certs)
	if err != nil {
		return pki.DevicePins{}, fmt.Errorf("--ca %s: %w", path, err)
	}
	return pins, nil
}
