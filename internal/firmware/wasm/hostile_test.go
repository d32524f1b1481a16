package wasm

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Hostile modules, by class (see docs/app-abi.md, "Installation checks"):
//
//  1. tiny modules whose declared counts would reach the runtime's
//     allocator (a fatal, unrecoverable out-of-memory in wazero);
//  2. loop-free code running past executionTimeout (TestTimeoutWithoutLoops);
//  3. unbounded tables (here, and TestTableGrowthBounded);
//  4. modules whose installation would take unbounded time or memory;
//  5. recursion past the interpreter's frame ceiling
//     (TestStackLimitIsTheProjectsAccounting) and segments that cannot be
//     instantiated.

// wasmHeader is the magic and version of a module.
const wasmHeader = "\x00asm\x01\x00\x00\x00"

func wasmModule(sections ...[]byte) []byte {
	return append([]byte(wasmHeader), bytes.Join(sections, nil)...)
}

func sec(id byte, payload ...byte) []byte { return appendSection(nil, id, payload) }

func leb(v uint32) []byte { return appendU32(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Common sections of a minimal tick app: one ()->() type, one function
// exported as wasmbed_tick.
var (
	tickType   = sec(secType, 1, 0x60, 0, 0)
	tickFunc   = sec(secFunction, 1, 0)
	tickExport = sec(secExport, cat([]byte{1}, appendName(nil, ExportTick), []byte{0, 0})...)
	tickCode   = sec(secCode, 1, 2, 0, 0x0b)
)

// codeWith returns a code section with one body: no locals and code.
func codeWith(code ...byte) []byte {
	body := append([]byte{0}, code...)
	return sec(secCode, cat([]byte{1}, leb(uint32(len(body))), body)...)
}

// huge is a count that, allocated, would exhaust any machine.
var huge = leb(0xffffffff)

func TestHostileDeclaredCounts(t *testing.T) {
	tests := []struct {
		name string
		bin  []byte
		want error
	}{
		{"custom section size past the end", wasmModule([]byte{secCustom, 0xff, 0xff, 0xff, 0xff, 0x0f, 4, 'n', 'a', 'm', 'e'}), ErrInvalidModule},
		{"name section declaring 2^32 function names",
			wasmModule(tickType, tickFunc, tickExport, tickCode, sec(secCustom, cat(appendName(nil, "name"), []byte{1, 5}, huge)...)),
			nil /* custom sections are not passed on: it compiles */},
		{"2^32 types", wasmModule(sec(secType, huge...)), ErrInvalidModule},
		{"2^32 imports", wasmModule(tickType, sec(secImport, huge...)), ErrInvalidModule},
		{"2^32 functions", wasmModule(tickType, sec(secFunction, huge...)), ErrInvalidModule},
		{"2^32 tables", wasmModule(tickType, sec(secTable, huge...)), ErrInvalidModule},
		{"table of 2^32-1 elements", wasmModule(tickType, tickFunc, sec(secTable, cat([]byte{1, valFuncref, 0}, huge)...), tickExport, tickCode), ErrTooComplex},
		{"2^32 globals", wasmModule(tickType, sec(secGlobal, huge...)), ErrInvalidModule},
		{"2^32 exports", wasmModule(tickType, tickFunc, sec(secExport, huge...)), ErrInvalidModule},
		{"2^32 element segments", wasmModule(tickType, tickFunc, sec(secElement, huge...)), ErrInvalidModule},
		{"element segment of 2^32 functions", wasmModule(tickType, tickFunc, sec(secTable, 1, valFuncref, 0, 1),
			sec(secElement, cat([]byte{1, 0, 0x41, 0, 0x0b}, huge)...)), ErrInvalidModule},
		{"2^32 data segments", wasmModule(sec(secMemory, 1, 0, 1), sec(secData, huge...)), ErrInvalidModule},
		{"data count of 2^32", wasmModule(tickType, tickFunc, sec(secMemory, 1, 0, 1), tickExport, sec(secDataCount, huge...), tickCode), ErrInvalidModule},
		{"data segment of 2^32 bytes", wasmModule(sec(secMemory, 1, 0, 1), sec(secData, cat([]byte{1, 0, 0x41, 0, 0x0b}, huge)...)), ErrInvalidModule},
		{"2^32 bodies", wasmModule(tickType, tickFunc, sec(secCode, huge...)), ErrInvalidModule},
		{"body of 2^32 bytes", wasmModule(tickType, tickFunc, sec(secCode, cat([]byte{1}, huge)...)), ErrTooComplex},
		{"2^32-1 locals", wasmModule(tickType, tickFunc, tickExport, sec(secCode, cat([]byte{1, 8, 1}, huge, []byte{valI32, 0x0b})...)), ErrTooComplex},
		{"br_table of 2^32 targets", wasmModule(tickType, tickFunc, tickExport, codeWith(cat([]byte{0x41, 0, 0x0e}, huge, []byte{0, 0x0b})...)), ErrInvalidModule},
		{"select of 2^32 types", wasmModule(tickType, tickFunc, tickExport, codeWith(cat([]byte{0x41, 0, 0x41, 0, 0x41, 0, 0x1c}, huge, []byte{0x1a, 0x0b})...)), ErrInvalidModule},
		{"memory of 65536 pages", wasmModule(tickType, tickFunc, sec(secMemory, 1, 0, 0x80, 0x80, 4), tickExport, tickCode), ErrLimit},
	}
	for _, mode := range modes {
		e := newEngine(t, mode)
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				if len(tt.bin) > 100 {
					t.Fatalf("hostile module is %d bytes, want under 100", len(tt.bin))
				}
				var err error
				allocated := allocatedBy(func() {
					var mod *Module
					mod, err = e.Compile(t.Context(), tt.bin, sandbox.Limits{}, Bounds{})
					if err == nil {
						mod.Release(t.Context())
					}
				})
				switch {
				case tt.want == nil && err != nil:
					t.Fatalf("Compile: got %v, want nil", err)
				case tt.want != nil && !errors.Is(err, tt.want):
					t.Fatalf("Compile: got %v, want %v", err, tt.want)
				case err != nil:
					requireTyped(t, err)
				}
				if allocated > 1<<20 {
					t.Errorf("Compile allocated %d bytes, want at most 1 MiB", allocated)
				}
			})
		}
	}
}

// allocatedBy returns the bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// functions returns a tick module with n functions whose bodies are code
// (no locals), the first exported as wasmbed_tick.
func functions(n int, locals uint32, code ...byte) []byte {
	fs := leb(uint32(n))
	body := []byte{0}
	if locals > 0 {
		body = cat([]byte{1}, leb(locals), []byte{valI32})
	}
	body = append(body, code...)
	cs := leb(uint32(n))
	for range n {
		fs = append(fs, 0)
		cs = append(append(cs, leb(uint32(len(body)))...), body...)
	}
	return wasmModule(tickType, sec(secFunction, fs...), tickExport, sec(secCode, cs...))
}

func repeat(n int, b ...byte) []byte { return bytes.Repeat(b, n) }

func TestInstallationBounded(t *testing.T) {
	b := Bounds{MaxFunctions: 100, MaxFunctionBytes: 1000, MaxLocals: 50, MaxTotalLocals: 200, MaxNesting: 8,
		MaxBranchTable: 16, MaxCompileWork: 10000, MaxTableElements: 64, MaxTypes: 8, MaxImports: 4, MaxExports: 4,
		MaxGlobals: 4, MaxSegments: 4}
	br := func(n int) []byte { // one br_table with n targets
		return cat([]byte{0x41, 0, 0x0e}, leb(uint32(n)), repeat(n+1, 0), []byte{0x0b})
	}
	tests := []struct {
		name  string
		bin   []byte
		bound Bound
	}{
		{"functions", functions(101, 0, 0x0b), BoundFunctions},
		{"body bytes", functions(1, 0, append(repeat(500, 0x01, 0x01), 0x0b)...), BoundFunctionBytes},
		{"locals", functions(1, 51, 0x0b), BoundLocals},
		{"total locals", functions(5, 50, 0x0b), BoundTotalLocals},
		{"nesting", functions(1, 0, append(append(repeat(9, 0x02, 0x40), repeat(9, 0x0b)...), 0x0b)...), BoundNesting},
		{"branch table", functions(1, 0, br(17)...), BoundBranchTable},
		// 101 branches, 3 locals: 101 × (101 + 18×3) = 15,655 > 10,000.
		{"compile work from branches", functions(1, 0, append(repeat(99, 0x41, 0, 0x04, 0x40, 0x0b), 0x0b)...), BoundCompileWork},
		// 22 branches, 48 locals: 22 × (22 + 18×48) = 19,492.
		{"compile work from locals", functions(1, 45, append(repeat(20, 0x41, 0, 0x04, 0x40, 0x0b), 0x0b)...), BoundCompileWork},
		{"table elements", wasmModule(tickType, tickFunc, sec(secTable, 1, valFuncref, 0, 65), tickExport, tickCode), BoundTableElements},
		{"types", wasmModule(sec(secType, cat([]byte{9}, repeat(9, 0x60, 0, 0))...), tickFunc, tickExport, tickCode), BoundTypes},
	}
	e := newEngine(t, ModeInterpreter)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, check := range []struct {
				what string
				run  func() error
			}{
				{"Inspect", func() error { _, err := Inspect(tt.bin, b); return err }},
				{"Compile", func() error {
					mod, err := e.Compile(t.Context(), tt.bin, sandbox.Limits{}, b)
					if err == nil {
						mod.Release(t.Context())
					}
					return err
				}},
			} {
				err := check.run()
				var be *BoundError
				if !errors.As(err, &be) || !errors.Is(err, ErrTooComplex) || be.Bound != tt.bound {
					t.Fatalf("%s: got %v, want a *BoundError for %s", check.what, err, tt.bound)
				}
			}
		})
	}
}

// TestInstrumentationGrowsLinearly checks that instrumentation adds a
// fixed number of functions and a bounded amount of code per function
// and per call, whatever the call graph.
func TestInstrumentationGrowsLinearly(t *testing.T) {
	for _, n := range []int{1, 10, 100, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			// n functions, each calling function 0 ten times.
			bin := functions(n, 0, append(repeat(10, 0x10, 0), 0x0b)...)
			m, err := decode(bin, Bounds{})
			if err != nil {
				t.Fatal(err)
			}
			inst, err := m.instrument(maxPages)
			if err != nil {
				t.Fatal(err)
			}
			out, err := decode(inst.bin, Bounds{})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := len(out.bodies), n+2; got != want {
				t.Errorf("defined functions: got %d, want %d (the original ones, $slow and $refill)", got, want)
			}
			// Per function: locals, prologue, result block and epilogue.
			if limit := len(bin) + 64*n + 256; len(inst.bin) > limit {
				t.Errorf("instrumented size: got %d bytes for %d, want at most %d", len(inst.bin), len(bin), limit)
			}
		})
	}
}

func TestUninstantiableRefusedAtInstall(t *testing.T) {
	mem1 := sec(secMemory, 1, 0, 1)
	tests := []struct {
		name string
		bin  []byte
	}{
		{"data past the memory", wasmModule(tickType, tickFunc, mem1, tickExport, tickCode,
			sec(secData, cat([]byte{1, 0, 0x41}, appendS64(nil, 65530), []byte{0x0b, 10}, repeat(10, 7))...))},
		{"data without room", wasmModule(tickType, tickFunc, sec(secMemory, 1, 0, 0), tickExport, tickCode,
			sec(secData, 1, 0, 0x41, 0, 0x0b, 1, 7))},
		{"elements past the table", wasmModule(tickType, tickFunc, sec(secTable, 1, valFuncref, 0, 1), tickExport,
			sec(secElement, 1, 0, 0x41, 1, 0x0b, 1, 0), tickCode)},
	}
	for _, mode := range modes {
		e := newEngine(t, mode)
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				mod, err := e.Compile(t.Context(), tt.bin, sandbox.Limits{}, Bounds{})
				if err == nil {
					mod.Release(t.Context())
				}
				var me *ModuleError
				if !errors.Is(err, ErrUninstantiable) || !errors.As(err, &me) {
					t.Fatalf("Compile: got %v, want a *ModuleError matching ErrUninstantiable", err)
				}
			})
		}
	}
}
