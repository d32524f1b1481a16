package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/wasmbed/wasmbed/internal/controlplane"
	"github.com/wasmbed/wasmbed/internal/platform"
)

// dataDirEnv overrides the default data directory for every subcommand.
const dataDirEnv = "WASMBED_DATA_DIR"

// defaultDataDir is $WASMBED_DATA_DIR, else $XDG_DATA_HOME/wasmbed, else
// ~/.local/share/wasmbed.
func defaultDataDir() string {
	if dir := os.Getenv(dataDirEnv); dir != "" {
		return dir
	}
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "wasmbed")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "wasmbed")
	}
	return ".wasmbed"
}

func newUpCommand() *cobra.Command {
	opts := platform.Options{}
	noSample := false
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole platform in one process on an embedded control plane",
		Long: `Up runs the whole platform in one process: an embedded etcd and kube-apiserver
on loopback with their state in the data directory, the platform's CAs and
roles, the controller, one gateway (--gateways N for more replicas) and a
simulated fleet of both board types (--devices N, 0 for real hardware only),
enrolled through the real pairing flow; then it deploys the blinky sample
application to every device (--no-sample to skip).

It prints one line per stage while starting, then the kubeconfig, the
gateways' device, enrollment and HTTP addresses, an admin token for the HTTP
API and what to try next; it writes the same facts to endpoints.json beside
the kubeconfig. Ctrl-C stops everything. Running it again on the same data
directory resumes: devices keep their identities and flash, applications are
still there and still run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Sample = !noSample
			return runUp(cmd, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", defaultDataDir(), "directory for the platform's state (env "+dataDirEnv+")")
	f.IntVar(&opts.APIPort, "api-port", controlplane.DefaultAPIPort, "API server port on 127.0.0.1 (0 picks a free port)")
	f.IntVar(&opts.Gateways, "gateways", 1, "gateway replicas")
	f.IntVar(&opts.Devices, "devices", 4, "simulated devices of both board types (0 for real hardware only)")
	f.StringVar(&opts.Mix, "mix", "esp32=1,hifive1=1", "board mix of the simulated devices")
	f.BoolVar(&noSample, "no-sample", false, "do not deploy the sample application")
	f.IntVar(&opts.SessionPort, "session-port", platform.DefaultSessionPort, "first gateway's device session port (replica i adds i)")
	f.IntVar(&opts.EnrollPort, "enroll-port", platform.DefaultEnrollPort, "first gateway's enrollment port (replica i adds i)")
	f.IntVar(&opts.HTTPPort, "http-port", platform.DefaultHTTPPort, "first gateway's HTTP API port (replica i adds i)")
	f.DurationVar(&opts.HeartbeatInterval, "heartbeat-interval", 30*time.Second, "devices' heartbeat interval")
	return cmd
}

func runUp(cmd *cobra.Command, opts platform.Options) error {
	ctx := cmd.Context()
	logger := slog.Default()
	out := cmd.OutOrStdout()
	// The components' own logs (controller-runtime's among them) are
	// warnings and errors only, unless --log-level debug asks for all.
	components := logger
	if !logger.Enabled(ctx, slog.LevelDebug) {
		components = slog.New(minLevel{min: slog.LevelWarn, next: logger.Handler()})
	}
	opts.Logger = components
	ctrllog.SetLogger(logr.FromSlogHandler(components.Handler()))
	opts.Progress = func(s platform.Stage) {
		detail := ""
		if s.Detail != "" {
			detail = "  " + s.Detail
		}
		fmt.Fprintf(out, "  ✓ %-22s %6s%s\n", s.Name, s.Took.Round(10*time.Millisecond), detail)
	}
	fmt.Fprintf(out, "Starting Wasmbed in %s\n", opts.DataDir)
	begin := time.Now()
	p, err := platform.Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted while starting: Start stopped what it started,
			// which is the shutdown that was asked for.
			logger.Info("interrupted while starting; stopped")
			return nil
		}
		return upError(err)
	}
	printEndpoints(out, p.Endpoints(), time.Since(begin))
	werr := p.Wait()
	logger.Info("shutting down")
	if err := p.Stop(); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	logger.Info("stopped")
	return werr
}

// minLevel drops records below a level.
type minLevel struct {
	min  slog.Level
	next slog.Handler
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.next.Enabled(ctx, l)
}
func (h minLevel) Handle(ctx context.Context, r slog.Record) error { return h.next.Handle(ctx, r) }
func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{min: h.min, next: h.next.WithAttrs(a)}
}
func (h minLevel) WithGroup(n string) slog.Handler {
	return minLevel{min: h.min, next: h.next.WithGroup(n)}
}

// upError turns a start failure into one clear line.
func upError(err error) error {
	var port *controlplane.PortInUseError
	switch {
	case errors.As(err, &port):
		return fmt.Errorf("address %s is in use: stop what listens there or choose other ports (--api-port, --session-port, --enroll-port, --http-port)", port.Address)
	case errors.Is(err, controlplane.ErrDataDirLocked):
		return errors.New("the data directory is in use by another wasmbed up: stop it, or use --data-dir")
	}
	return err
}

func printEndpoints(out io.Writer, e platform.Endpoints, took time.Duration) {
	fmt.Fprintf(out, "\nWasmbed is up (%s).\n\n", took.Round(100*time.Millisecond))
	fmt.Fprintf(out, "  kubeconfig:   %s\n", e.Kubeconfig)
	for _, g := range e.Gateways {
		fmt.Fprintf(out, "  %s:    devices %s  enrollment %s  HTTP http://%s\n", g.Name, g.Session, g.Enroll, g.HTTP)
	}
	fmt.Fprintf(out, "  admin token (HTTP API, valid 24h):\n    %s\n", e.AdminToken)
	fmt.Fprintf(out, "  (all of it in %s)\n\n", filepath.Join(e.DataDir, "endpoints.json"))
	fmt.Fprintf(out, "Try:\n\n")
	fmt.Fprintf(out, "  wasmbed kubectl get devices,applications,deviceapplications\n")
	if len(e.Gateways) > 0 {
		fmt.Fprintf(out, "  curl -H \"Authorization: Bearer $(jq -r .adminToken %s)\" http://%s/api/v1/summary\n",
			filepath.Join(e.DataDir, "endpoints.json"), e.Gateways[0].HTTP)
	}
	fmt.Fprintf(out, "  wasmbed kubectl get dapp -l wasmbed.github.io/application=%s\n\n", platform.SampleApplication)
	fmt.Fprintf(out, "Press Ctrl-C to stop.\n")
}
