// Package apps embeds the sample WebAssembly applications so tests and the
// simulator can load them by name.
//
// Well-behaved apps (C sources in c/, built with hack/build-apps.sh):
//
//   - blinky: toggles a GPIO pin every tick (config "pin", "period_ms").
//   - sensor: publishes the temperature sensor as metric
//     "temperature_celsius" every tick, and the raw I2C register on topic
//     "sensor/raw" every tenth tick.
//   - compute: CRC-32 of 4 KiB, xorshift and fib(24) per tick; publishes
//     "compute_checksum" (for benchmarks).
//
// Misbehaving apps for tests (WAT sources in wat/):
//
//   - loop: a tick that never returns (executionTimeout).
//   - memhog: grows memory until memory.grow fails (memoryLimit at run time).
//   - bigmem: declares a 64-page minimum memory (refused at install).
//   - recursion: unbounded recursion (maxStackSize).
//   - forbidden: imports wasi_snapshot_preview1.fd_write (refused at install).
//   - divzero: integer division by zero (a trap).
//   - badptr: host calls with out-of-bounds pointers; traps unless every
//     call returns the documented errno.
package apps

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

// Names of the sample apps.
const (
	Blinky    = "blinky"
	Sensor    = "sensor"
	Compute   = "compute"
	Loop      = "loop"
	MemHog    = "memhog"
	BigMem    = "bigmem"
	Recursion = "recursion"
	Forbidden = "forbidden"
	DivZero   = "divzero"
	BadPtr    = "badptr"
)

//go:embed *.wasm
var modules embed.FS

// Load returns the module of the sample app name (without ".wasm").
func Load(name string) ([]byte, error) {
	b, err := modules.ReadFile(name + ".wasm")
	if err != nil {
		return nil, fmt.Errorf("load sample app %q: %w", name, err)
	}
	return b, nil
}

// MustLoad is Load for tests and examples; it panics on an unknown name.
func MustLoad(name string) []byte {
	b, err := Load(name)
	if err != nil {
		panic(err)
	}
	return b
}

// Names returns the names of all embedded apps, sorted.
func Names() []string {
	ents, _ := fs.ReadDir(modules, ".")
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".wasm"))
	}
	sort.Strings(out)
	return out
}
