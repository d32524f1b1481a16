package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/wasmbed/wasmbed/internal/controlplane"
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

// upOptions are the flags of `wasmbed up`.
type upOptions struct {
	dataDir string
	apiPort int
}

func newUpCommand() *cobra.Command {
	opts := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the whole platform in one process on an embedded control plane",
		Long: `Up starts, in one process, an embedded etcd and kube-apiserver on loopback with
their state in the data directory, installs the Wasmbed CRDs, writes an admin
kubeconfig to <data-dir>/kubeconfig, and runs until interrupted.

Running it again on the same data directory keeps every resource.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUp(cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.dataDir, "data-dir", defaultDataDir(), "directory for the control plane's state (env "+dataDirEnv+")")
	cmd.Flags().IntVar(&opts.apiPort, "api-port", controlplane.DefaultAPIPort, "API server port on 127.0.0.1 (0 picks a free port)")
	return cmd
}

func runUp(cmd *cobra.Command, opts *upOptions) error {
	ctx := cmd.Context()
	logger := slog.Default()
	cp, err := controlplane.Start(ctx, controlplane.Options{
		DataDir: opts.dataDir,
		APIPort: opts.apiPort,
		Logger:  logger,
	})
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted while starting: Start has already stopped what it
			// started, which is the shutdown that was asked for.
			logger.Info("interrupted while starting; stopped")
			return nil
		}
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Wasmbed control plane is up (started in %s).\n\n", cp.StartupDuration().Round(1e6))
	fmt.Fprintf(out, "  kubeconfig: %s\n\n", cp.KubeconfigPath())
	fmt.Fprintf(out, "Use it with:\n\n")
	fmt.Fprintf(out, "  kubectl --kubeconfig %s get devices,applications\n", cp.KubeconfigPath())
	fmt.Fprintf(out, "  wasmbed kubectl get devices,applications\n\n")
	fmt.Fprintf(out, "Press Ctrl-C to stop.\n")

	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err := <-cp.Done():
		stopErr := cp.Stop()
		if err == nil {
			err = stopErr
		}
		return fmt.Errorf("control plane stopped unexpectedly: %w", err)
	}
	if err := cp.Stop(); err != nil {
		return fmt.Errorf("stop control plane: %w", err)
	}
	logger.Info("stopped")
	return nil
}
