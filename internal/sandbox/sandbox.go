// Package sandbox defines Limits, the three limits every application
// instance runs under — memory, execution time, call stack — as one type
// shared by every device-side package that carries them: the signed
// artifact's manifest (package artifact), the application manager's
// requests and records (appmgr), the board profile's admission (profile)
// and the WebAssembly runtime that enforces them (wasm).
//
// The Kubernetes API's ApplicationConfig (api/v1) is the same concept in
// its wire form (JSON, a duration string, OpenAPI validation); device
// packages cannot import the Kubernetes API, so the controller converts
// it into a Limits when it signs an artifact.
package sandbox

import "time"

// Defaults applied by Limits.WithDefaults.
const (
	DefaultMemoryLimit      = 64 << 10
	DefaultExecutionTimeout = 100 * time.Millisecond
	DefaultMaxStackSize     = 16 << 10
)

// PageSize is the size of a WebAssembly linear-memory page, the unit
// MemoryLimit is enforced in.
const PageSize = 65536

// maxPages is the 4 GiB address space of a 32-bit linear memory.
const maxPages = 65536

// Limits are the per-application limits of an Application's config.
type Limits struct {
	// MemoryLimit bounds linear memory, in bytes. It is enforced in whole
	// 64 KiB pages, rounded up: a module whose declared minimum is above
	// it is refused, and memory.grow beyond it returns -1 to the guest.
	MemoryLimit uint64
	// ExecutionTimeout bounds each execution of the application (init,
	// one tick, _start). An artifact carries it in whole milliseconds.
	ExecutionTimeout time.Duration
	// MaxStackSize bounds the WebAssembly call stack, in bytes, as the
	// runtime accounts it (see docs/app-abi.md).
	MaxStackSize uint64
}

// WithDefaults returns l with zero (or negative) fields replaced by the
// defaults.
func (l Limits) WithDefaults() Limits {
	if l.MemoryLimit == 0 {
		l.MemoryLimit = DefaultMemoryLimit
	}
	if l.ExecutionTimeout <= 0 {
		l.ExecutionTimeout = DefaultExecutionTimeout
	}
	if l.MaxStackSize == 0 {
		l.MaxStackSize = DefaultMaxStackSize
	}
	return l
}

// MemoryPages returns MemoryLimit in whole pages, rounded up and capped at
// the 4 GiB address space.
func (l Limits) MemoryPages() uint32 {
	p := (l.MemoryLimit + PageSize - 1) / PageSize
	if l.MemoryLimit > maxPages*PageSize {
		p = maxPages
	}
	return uint32(p)
}
