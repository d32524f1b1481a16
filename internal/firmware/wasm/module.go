package wasm

import (
	"strings"
)

// PageSize is the size of a WebAssembly linear-memory page.
const PageSize = 65536

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
	// MaxFrameBytes is the largest stack cost of one call of any defined
	// function, as accounted against maxStackSize.
	MaxFrameBytes uint32
	// HeapBase is the value of the exported __heap_base global (the end of
	// static data and stack in C programs), or 0.
	HeapBase uint32
}

// MemoryFootprint is the RAM the app needs on a device, in bytes: the
// declared minimum memory, or, for a module that never grows its memory
// and exports __heap_base, just its static data and stack (the device
// runtime then reserves only what the module can use, as MCU runtimes
// that shrink unused linear memory do).
func (i *ModuleInfo) MemoryFootprint() uint64 {
	if !i.HasMemory {
		return 0
	}
	full := uint64(i.MemoryMinPages) * PageSize
	if !i.UsesMemoryGrow && i.HeapBase > 0 && uint64(i.HeapBase) < full {
		return uint64(i.HeapBase)
	}
	return full
}

// Inspect decodes and checks bin against the app model and host API
// without compiling it: imports, exports, start section, features, ABI
// version and frame sizes. It returns a *ModuleError, *ImportError or
// *LimitError describing the first problem found. Engine.Compile runs the
// same checks, then compiles (which fully validates the code).
func Inspect(bin []byte) (*ModuleInfo, error) {
	m, err := check(bin)
	if err != nil {
		return nil, err
	}
	inst, err := m.instrument(maxPages)
	if err != nil {
		return nil, err
	}
	m.info.MaxFrameBytes = inst.maxFrame
	m.info.UsesMemoryGrow = inst.usesGrow
	return &m.info, nil
}

// check decodes bin and applies the app-model checks.
func check(bin []byte) (*module, error) {
	m, err := decode(bin)
	if err != nil {
		return nil, err
	}
	info := &m.info
	if info.ABIVersion != 0 && info.ABIVersion != ABIVersion {
		return nil, modErr(ErrUnsupportedABI, -1, "module built for app abi %d, runtime implements %d", info.ABIVersion, ABIVersion)
	}
	if info.HasStart {
		return nil, modErr(ErrStartSection, -1, "export %s instead", ExportInit)
	}
	for _, imp := range info.Imports {
		if err := checkImport(imp); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, e := range info.Exports {
		if seen[e.Name] {
			return nil, modErr(ErrInvalidModule, -1, "duplicate export %q", e.Name)
		}
		seen[e.Name] = true
		if strings.HasPrefix(e.Name, reservedExportPrefix) {
			return nil, modErr(ErrBadExport, -1, "export name %q uses the reserved prefix %q", e.Name, reservedExportPrefix)
		}
		switch e.Kind {
		case ExternFunc:
			if e.Index >= uint32(len(m.funcTypes)) {
				return nil, modErr(ErrInvalidModule, -1, "export %q: function index %d out of range", e.Name, e.Index)
			}
		case ExternGlobal:
			if e.Index >= m.nImpGlobal+m.nGlobals {
				return nil, modErr(ErrInvalidModule, -1, "export %q: global index %d out of range", e.Name, e.Index)
			}
		}
		switch e.Name {
		case ExportInit, ExportTick, ExportStart:
			if e.Kind != ExternFunc {
				return nil, modErr(ErrBadExport, -1, "export %q is a %s, want a func", e.Name, e.Kind)
			}
			if e.Index >= uint32(len(m.funcTypes)) {
				return nil, modErr(ErrInvalidModule, -1, "export %q: function index %d out of range", e.Name, e.Index)
			}
			if t := m.types[m.funcTypes[e.Index]]; len(t.params) != 0 || len(t.results) != 0 {
				return nil, modErr(ErrBadExport, -1, "export %q has type %s, want ()->()", e.Name, typeString(t))
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
		return nil, modErr(ErrNoEntryPoint, -1, "export %s (periodic app) or %s (run-to-completion app)", ExportTick, ExportStart)
	}
	info.HasInit = seen[ExportInit]
	return m, nil
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
	if idx < m.nImpGlobal {
		return 0
	}
	s := m.find(secGlobal)
	if s == nil {
		return 0
	}
	r := &reader{b: m.b[:s.end], off: s.start}
	n := r.u32()
	for i := uint32(0); i < n && r.err == nil; i++ {
		vt := r.byte()
		r.byte()
		start := r.off
		m.constExpr(r, nil, nil)
		if i == idx-m.nImpGlobal {
			e := &reader{b: m.b[:r.off], off: start}
			if vt == valI32 && e.byte() == 0x41 {
				v := e.signed(32)
				if e.byte() == 0x0b && e.err == nil && v >= 0 {
					return uint32(v)
				}
			}
			return 0
		}
	}
	return 0
}
