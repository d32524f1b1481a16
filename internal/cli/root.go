// Package cli holds the cobra command tree of the wasmbed binary. Commands
// parse flags into the option structs of the internal packages and call them;
// no component logic lives here.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wasmbed/wasmbed/internal/modcheck"
)

// globalOptions are the flags shared by every subcommand.
type globalOptions struct {
	logLevel  string
	logFormat string
}

// NewRootCommand builds the wasmbed command tree.
func NewRootCommand() *cobra.Command {
	// Kubernetes packages register flags of their own (--version among them)
	// on pflag's global set at init, and cobra would offer them on every
	// command; wasmbed's commands declare all the flags they take.
	pflag.CommandLine = pflag.NewFlagSet("wasmbed", pflag.ContinueOnError)
	opts := &globalOptions{}
	root := &cobra.Command{
		Use:           "wasmbed",
		Short:         "Run WebAssembly on fleets of microcontrollers from Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), opts)
			if err != nil {
				return err
			}
			slog.SetDefault(logger)
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })
	root.PersistentFlags().StringVar(&opts.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&opts.logFormat, "log-format", "text", "log format: text or json")
	root.AddCommand(
		newUpCommand(),
		newGatewayCommand(),
		newControllerCommand(),
		newKubectlCommand(),
		newPKICommand(),
		newAppCommand(),
		newDeviceCommand(),
		newPairingCommand(),
		newSimCommand(),
		newBenchCommand(),
		newVersionCommand(),
	)
	return root
}

// Main runs the command tree with the process's arguments, cancelling its
// context on SIGINT or SIGTERM, and returns the process exit code. A process
// the controller started to check a module (see package modcheck) runs that
// check instead.
func Main() int {
	// Main is the process's entry point: the contexts below are the roots
	// of its lifetime. A checking child ends when its parent kills it.
	if modcheck.IsChild() {
		return modcheck.RunChild(context.Background())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Execute(ctx, os.Args[1:])
}

// Exit codes of the wasmbed binary.
const (
	// ExitFailure: the command failed.
	ExitFailure = 1
	// ExitUsage: the command line is wrong (arguments, flags, values); nothing
	// was done.
	ExitUsage = 2
)

// Execute runs the command tree with args and returns the process exit code:
// 0, ExitUsage for a wrong command line, ExitFailure for any other error,
// with the error on one line of stderr.
func Execute(ctx context.Context, args []string) int {
	return run(ctx, args, os.Stdout, os.Stderr)
}

// run is Execute with its standard streams.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "wasmbed: %v\n", err)
	if isUsageError(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		return ExitUsage
	}
	return ExitFailure
}

func newLogger(w io.Writer, opts *globalOptions) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(opts.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", opts.logLevel, err)
	}
	handlerOpts := &slog.HandlerOptions{Level: level}
	switch opts.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, handlerOpts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, handlerOpts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", opts.logFormat)
	}
}
