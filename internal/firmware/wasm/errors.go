package wasm

import (
	"errors"
	"fmt"
)

// Install-time errors. Every refusal returned by Inspect and Engine.Compile
// matches exactly one of these with errors.Is; the concrete error is a
// *ModuleError, *ImportError, *BoundError or *LimitError carrying the
// details.
var (
	// ErrInvalidModule: the bytes are not a valid WebAssembly module.
	ErrInvalidModule = errors.New("invalid wasm module")
	// ErrModuleTooLarge: the binary exceeds the engine's MaxModuleSize.
	ErrModuleTooLarge = errors.New("wasm module too large")
	// ErrForbiddenImport: the module imports something outside the host API.
	ErrForbiddenImport = errors.New("forbidden import")
	// ErrNoEntryPoint: the module exports neither wasmbed_tick nor _start.
	ErrNoEntryPoint = errors.New("no entry point")
	// ErrBadExport: an entry point has the wrong kind or signature, or an
	// export uses a name reserved for the runtime.
	ErrBadExport = errors.New("bad export")
	// ErrStartSection: the module has a start section (code that would run
	// during instantiation, outside the app model); use wasmbed_init.
	ErrStartSection = errors.New("start section not allowed")
	// ErrImportedMemory: the module imports its memory instead of defining it.
	ErrImportedMemory = errors.New("imported memory not allowed")
	// ErrUnsupportedFeature: the module uses a feature the device runtime
	// does not offer (SIMD, threads/shared memory, tail calls, multiple
	// memories, ...).
	ErrUnsupportedFeature = errors.New("unsupported wasm feature")
	// ErrUnsupportedABI: the module declares an app ABI version this
	// runtime does not implement.
	ErrUnsupportedABI = errors.New("unsupported app abi version")
	// ErrLimit: the module cannot run within its limits (declared memory
	// above memoryLimit, a single call frame above maxStackSize).
	ErrLimit = errors.New("module exceeds app limits")
	// ErrTooComplex: the module's structure exceeds the Bounds (functions,
	// body size, locals, nesting, branch tables, tables, declared
	// entities); *BoundError names the bound.
	ErrTooComplex = errors.New("wasm module too complex")
	// ErrUninstantiable: the module is valid but instantiating it would
	// fail: an active data or element segment does not fit the initial
	// memory or table.
	ErrUninstantiable = errors.New("wasm module cannot be instantiated")
)

// ModuleError reports why a module was refused at install time.
type ModuleError struct {
	// Err is the sentinel (ErrInvalidModule, ErrStartSection, ...).
	Err error
	// Detail explains the refusal.
	Detail string
	// Offset is the byte offset in the binary the refusal refers to, or -1.
	Offset int
}

func (e *ModuleError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%v: %s (at byte %d)", e.Err, e.Detail, e.Offset)
	}
	return fmt.Sprintf("%v: %s", e.Err, e.Detail)
}

// Unwrap returns the sentinel.
func (e *ModuleError) Unwrap() error { return e.Err }

func modErr(sentinel error, off int, format string, args ...any) *ModuleError {
	return &ModuleError{Err: sentinel, Detail: fmt.Sprintf(format, args...), Offset: off}
}

// ExternKind is the kind of an import or export.
type ExternKind byte

// Extern kinds, numbered as in the binary format.
const (
	ExternFunc   ExternKind = 0
	ExternTable  ExternKind = 1
	ExternMemory ExternKind = 2
	ExternGlobal ExternKind = 3
)

// String returns the kind's name in the text format.
func (k ExternKind) String() string {
	switch k {
	case ExternFunc:
		return "func"
	case ExternTable:
		return "table"
	case ExternMemory:
		return "memory"
	case ExternGlobal:
		return "global"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// ImportError reports an import the host API does not provide. It matches
// ErrForbiddenImport (or ErrImportedMemory for a memory import).
type ImportError struct {
	// Module and Name are the import's two-level name.
	Module, Name string
	Kind         ExternKind
	// Reason says why it is refused (unknown module, unknown function,
	// signature mismatch).
	Reason string
}

func (e *ImportError) Error() string {
	return fmt.Sprintf("forbidden import %q.%q (%s): %s", e.Module, e.Name, e.Kind, e.Reason)
}

// Unwrap returns ErrForbiddenImport or ErrImportedMemory.
func (e *ImportError) Unwrap() error {
	if e.Kind == ExternMemory {
		return ErrImportedMemory
	}
	return ErrForbiddenImport
}

// LimitError reports a module that cannot fit its per-app limits. It
// matches ErrLimit.
type LimitError struct {
	Kind LimitKind
	// Requested is what the module needs, Limit what it may have, both in
	// bytes.
	Requested, Limit uint64
	// Detail names what needs it (e.g. "declared minimum memory of 20 pages").
	Detail string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%v: %s limit: %s needs %d bytes, limit is %d bytes", ErrLimit, e.Kind, e.Detail, e.Requested, e.Limit)
}

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }
