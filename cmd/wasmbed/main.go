// Command wasmbed is the single binary of the Wasmbed platform: the embedded
// control plane (`wasmbed up`), the components run on their own against a real
// cluster, the PKI tooling, and the simulated device fleet.
package main

import (
	"os"

	"github.com/wasmbed/wasmbed/internal/cli"
)

func main() { os.Exit(cli.Main()) }
