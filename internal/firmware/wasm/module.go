package wasm

import (
	"strings"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// PageSize is the size of a WebAssembly linear-memory page.
const PageSize = sandbox.PageSize

// ABIVersion is the app ABI this runtime implements: the entry points of
// the app model and the host API of import module HostModule.
const ABIVersion = 1

// abiSectionName is the custom section by which a module may declare the
// ABI version it was built for (payload: one unsigned LEB128).
const abiSectionName = "wasmbed.abi"

// Entry-point export names of the app model (see docs/app-abi.md).
const (
	// ExportInit is called once when the app starts (optional).
	ExportInit = "wasmbed_init"
	// ExportTick is called by the device scheduler at the app's tick
	// interval; its presence makes a tick app.
	ExportTick = "wasmbed_tick"
	// ExportStart is the entry point of a run-to-completion app.
	ExportStart = "_start"
)

// AppKind is how the device runs an app.
type AppKind uint8

// App kinds.
const (
	// AppTick: wasmbed_init once, then wasmbed_tick periodically.
	AppTick AppKind = iota + 1
	// AppRunOnce: _start once, run to completion.
	AppRunOnce
)

// String returns the kind's name.
func (k AppKind) String() string {
	switch k {
	case AppTick:
		return "tick"
	case AppRunOnce:
		return "run-once"
	}
	return "unknown"
}

// ModuleInfo describes a checked module.
type ModuleInfo struct {
	// Size is the binary's size in bytes.
	Size int
	// Kind is the app kind its exports select.
	Kind AppKind
	// HasInit reports an exported wasmbed_init.
	HasInit bool
	// ABIVersion is the version declared in the "wasmbed.abi" custom
	// section, or 0 if the module does not declare one (taken as
	// ABIVersion).
	ABIVersion uint32
	Imports    []Import
	Exports    []Export
	// Functions is the number of functions the module defines.
	Functions int
	// HasMemory reports a defined linear memory; MemoryMinPages and
	// MemoryMaxPages (valid if HasMemoryMax) are its declared limits.
	HasMemory      bool
	MemoryMinPages uint32
	MemoryMaxPages uint32
	HasMemoryMax   bool
	// UsesMemoryGrow reports a memory.grow instruction anywhere in the code.
	UsesMemoryGrow bool
	// HasStart reports a start section (refused by the app model).
	HasStart bool
	// MaxFrameBytes and MinFrameBytes are the largest and smallest stack
	// cost of one call of a defined function, as accounted against
	// maxStackSize.
	MaxFrameBytes uint32
	MinFrameBytes uint32
	// HeapBase is the value of the exported __heap_base global (the end of
	// static data and stack in C programs), or 0.
	HeapBase uint32
	// TableElements is how many elements the module's tables may hold:
	// their declared minimums, or, for a module that executes table.grow,
	// their maximums as capped by the bounds.
	TableElements uint32
	// Shape is the module's structure, as measured against Bounds.
	Shape Shape
}

// CheckLimits returns the *LimitError Engine.Compile would refuse the
// module with under lim: a declared minimum memory above memoryLimit, or a
// call frame above maxStackSize (or a maxStackSize above MaxStackLimit).
func (i ModuleInfo) CheckLimits(lim sandbox.Limits) error {
	lim = lim.WithDefaults()
	if lim.MaxStackSize > MaxStackLimit {
		return &LimitError{Kind: LimitStack, Requested: lim.MaxStackSize, Limit: MaxStackLimit,
			Detail: "maxStackSize above what the runtime accounts"}
	}
	if i.HasMemory && i.MemoryMinPages > lim.MemoryPages() {
		return &LimitError{Kind: LimitMemory, Requested: uint64(i.MemoryMinPages) * PageSize,
			Limit: uint64(lim.MemoryPages()) * PageSize, Detail: "declared minimum memory"}
	}
	if uint64(i.MaxFrameBytes) > lim.MaxStackSize {
		return &LimitError{Kind: LimitStack, Requested: uint64(i.MaxFrameBytes),
			Limit: lim.MaxStackSize, Detail: "the largest function's call frame"}
	}
	return nil
}

// TableBytes is the RAM the module's tables may take, in bytes (one
// reference per element).
func (i ModuleInfo) TableBytes() uint64 { return uint64(i.TableElements) * tableElementBytes }

// tableElementBytes is what a table element costs in the runtime (a
// pointer-sized reference).
const tableElementBytes = 8

// MemoryFootprint is the RAM the app needs on a device, in bytes: the
// declared minimum memory, or, for a module that never grows its memory
// and exports __heap_base, just its static data and stack (the device
// runtime then reserves only what the module can use, as MCU runtimes
// that shrink unused linear memory do).
func (i ModuleInfo) MemoryFootprint() uint64 {
	if !i.HasMemory {
		return 0
	}
	full := uint64(i.MemoryMinPages) * PageSize
	if !i.UsesMemoryGrow && i.HeapBase > 0 && uint64(i.HeapBase) < full {
		return uint64(i.HeapBase)
	}
	return full
}

// Inspect decodes and checks bin against the app model, the host API and
// b (zero fields take DefaultBounds) without compiling it: imports,
// exports, start section, features, ABI version, structure, data and
// element segments, and frame sizes. It returns a *ModuleError,
// *ImportError, *BoundError or *LimitError describing the first problem
// found. Engine.Compile runs the same checks, then compiles (which
// validates the code's types in full).
func Inspect(bin []byte, b Bounds) (*ModuleInfo, error) {
	m, _, err := prepare(bin, b, maxPages)
	if err != nil {
		return nil, err
	}
	return &m.info, nil
}

// prepare decodes, checks and instruments bin for memLimitPages pages of
// memory at most, and completes the module's info.
func prepare(bin []byte, b Bounds, memLimitPages uint32) (*module, *instrumented, error) {
	m, err := decode(bin, b)
	if err != nil {
		return nil, nil, err
	}
	if err := m.checkAppModel(); err != nil {
		return nil, nil, err
	}
	inst, err := m.instrument(memLimitPages)
	if err != nil {
		return nil, nil, err
	}
	m.info.MaxFrameBytes, m.info.MinFrameBytes = inst.maxFrame, inst.minFrame
	m.info.UsesMemoryGrow = inst.usesGrow
	m.info.TableElements = inst.tableElements
	m.info.Shape = m.shape
	return m, inst, nil
}

// checkAppModel applies the app model's rules to a decoded module.
func (m *module) checkAppModel() error {
	info := &m.info
	if info.ABIVersion != 0 && info.ABIVersion != ABIVersion {
		return modErr(ErrUnsupportedABI, -1, "module built for app abi %d, runtime implements %d", info.ABIVersion, ABIVersion)
	}
	if info.HasStart {
		return modErr(ErrStartSection, -1, "export %s instead", ExportInit)
	}
	for _, imp := range info.Imports {
		if err := checkImport(imp); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for _, e := range info.Exports {
		seen[e.Name] = true
		if strings.HasPrefix(e.Name, reservedExportPrefix) {
			return modErr(ErrBadExport, -1, "export name %q uses the reserved prefix %q", e.Name, reservedExportPrefix)
		}
		switch e.Name {
		case ExportInit, ExportTick, ExportStart:
			if e.Kind != ExternFunc {
				return modErr(ErrBadExport, -1, "export %q is a %s, want a func", e.Name, e.Kind)
			}
			if t := m.types[m.funcTypes[e.Index]]; len(t.params) != 0 || len(t.results) != 0 {
				return modErr(ErrBadExport, -1, "export %q has type %s, want ()->()", e.Name, typeString(t))
			}
		case "__heap_base":
			if e.Kind == ExternGlobal {
				info.HeapBase = m.globalI32(e.Index)
			}
		}
	}
	switch {
	case seen[ExportTick]:
		info.Kind = AppTick
	case seen[ExportStart]:
		info.Kind = AppRunOnce
	default:
		return modErr(ErrNoEntryPoint, -1, "export %s (periodic app) or %s (run-to-completion app)", ExportTick, ExportStart)
	}
	info.HasInit = seen[ExportInit]
	return nil
}

func checkImport(imp Import) error {
	if imp.Kind == ExternMemory {
		return &ImportError{Module: imp.Module, Name: imp.Name, Kind: imp.Kind, Reason: "apps must define their own memory"}
	}
	if imp.Module != HostModule {
		return &ImportError{Module: imp.Module, Name: imp.Name, Kind: imp.Kind,
			Reason: "unknown import module, the host api is " + HostModule}
	}
	if imp.Kind != ExternFunc {
		return &ImportError{Module: imp.Module, Name: imp.Name, Kind: imp.Kind, Reason: "the host api exports only functions"}
	}
	hf, ok := hostFuncByName[imp.Name]
	if !ok {
		return &ImportError{Module: imp.Module, Name: imp.Name, Kind: imp.Kind, Reason: "no such function in host api v1"}
	}
	if want := typeString(hf.typ); imp.Type != want {
		return &ImportError{Module: imp.Module, Name: imp.Name, Kind: imp.Kind,
			Reason: "signature " + imp.Type + " does not match host api " + want}
	}
	return nil
}

// globalI32 returns the initial value of global idx if it is a defined
// global initialised with i32.const, else 0.
func (m *module) globalI32(idx uint32) uint32 {
	if idx < m.nImpGlobals {
		return 0
	}
	r := m.payload(secGlobal)
	if r == nil {
		return 0
	}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		vt := r.byte()
		r.byte()
		if i == idx-m.nImpGlobals {
			if v, ok := m.offsetExpr(r, vt); ok && v >= 0 {
				return uint32(v) //nolint:gosec // v >= 0 is checked, and an offset expression is an i32
			}
			return 0
		}
		m.constExpr(r, nil, nil)
	}
	return 0
}
