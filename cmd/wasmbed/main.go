// Command wasmbed is the single binary of the Wasmbed platform: the embedded
// control plane (`wasmbed up`), the components run on their own against a real
// cluster, the PKI tooling, and the simulated device fleet.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/wasmbed/wasmbed/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
