package wasm

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmbed/wasmbed/examples/apps"
)

// FuzzInstrument checks, for arbitrary input, that decoding and
// instrumenting never panic, that refusals are typed, and that
// instrumentation preserves validity: a module wazero accepts is still
// accepted after instrumentation, and an invalid one is not made valid.
// The seeds are the sample apps, the test modules, modules built by
// genModule and testdata/fuzz.
func FuzzInstrument(f *testing.F) {
	for _, n := range apps.Names() {
		f.Add(apps.MustLoad(n))
	}
	for _, seed := range genSeeds {
		bin, _ := genModule(seed)
		f.Add(bin)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.wasm"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	rt := fuzzRuntime(f)
	f.Fuzz(func(t *testing.T, bin []byte) {
		m, err := decode(bin, Bounds{})
		if err != nil {
			requireTyped(t, err)
			return
		}
		inst, err := m.instrument(4)
		if err != nil {
			requireTyped(t, err)
			return
		}
		// Only a module the decoder accepted reaches wazero: the others
		// could exhaust memory.
		orig, origErr := rt.CompileModule(t.Context(), bin)
		if origErr == nil {
			_ = orig.Close(t.Context())
		}
		out, outErr := rt.CompileModule(t.Context(), inst.bin)
		if outErr == nil {
			_ = out.Close(t.Context())
		}
		if origErr == nil && outErr != nil {
			t.Fatalf("instrumentation broke a valid module: %v", outErr)
		}
		if origErr != nil && outErr == nil {
			t.Fatalf("instrumentation made an invalid module valid (original: %v)", origErr)
		}
	})
}

func fuzzRuntime(f *testing.F) wazero.Runtime {
	rt := wazero.NewRuntimeWithConfig(f.Context(), wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(api.CoreFeaturesV2&^api.CoreFeatureSIMD).WithDebugInfoEnabled(false))
	f.Cleanup(func() { _ = rt.Close(context.Background()) })
	// The host API and the runtime's poll, so modules importing them link.
	if err := instantiateHost(f.Context(), rt); err != nil {
		f.Fatal(err)
	}
	return rt
}

// FuzzGeneratedModule builds a valid module from the fuzzer's bytes (see
// genModule: nested blocks, loops with bounded counters, branches, branch
// tables, calls, memory accesses and growth, table calls), runs each of
// its functions unmodified and instrumented, and checks that results and
// traps are identical.
func FuzzGeneratedModule(f *testing.F) {
	for _, seed := range genSeeds {
		f.Add(seed)
	}
	rt := fuzzRuntime(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		bin, nFuncs := genModule(data)
		m, err := decode(bin, Bounds{})
		if err != nil {
			t.Fatalf("generated module refused: %v", err)
		}
		inst, err := m.instrument(maxPages)
		if err != nil {
			t.Fatalf("generated module not instrumented: %v", err)
		}
		ctx := t.Context()
		orig, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatalf("generated module invalid: %v", err)
		}
		defer orig.Close(ctx)
		out, err := rt.InstantiateWithConfig(ctx, inst.bin, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatalf("instrumented module invalid: %v", err)
		}
		defer out.Close(ctx)
		for i := range nFuncs {
			name := genExportName(i)
			for _, arg := range []uint64{0, 1, 7, 0xffffffff} {
				resO, errO := orig.ExportedFunction(name).Call(ctx, arg)
				resI, errI := out.ExportedFunction(name).Call(ctx, arg)
				if trapMessage(errO) != trapMessage(errI) || errO == nil && !slices.Equal(resO, resI) {
					t.Fatalf("%s(%d): unmodified %v %v, instrumented %v %v", name, arg, resO, errO, resI, errI)
				}
			}
		}
	})
}

var genSeeds = [][]byte{
	{}, {1, 2, 3, 4, 5, 6, 7, 8}, []byte("instrumentation keeps semantics"),
	slices.Repeat([]byte{0x9e, 0x37, 0x79, 0xb9}, 16), slices.Repeat([]byte{7, 3, 11, 5, 200, 13}, 20),
}

// gen turns fuzz bytes into choices; past the end it yields zeros.
type gen struct {
	data []byte
	pos  int
}

func (g *gen) next(n int) int {
	if g.pos >= len(g.data) || n <= 1 {
		g.pos++
		return 0
	}
	v := int(g.data[g.pos]) % n
	g.pos++
	return v
}

func genExportName(i int) string { return string(rune('a' + i)) }

// genModule builds a valid module: a one-page memory (growable to two), a
// funcref table holding every function, and up to six functions of type
// (i32) -> i32, each exported. A function only calls functions defined
// after it, so calls always end; every loop counts down a local from at
// most 16.
func genModule(data []byte) ([]byte, int) {
	g := &gen{data: data}
	n := 1 + g.next(6)
	var bodies [][]byte
	for i := range n {
		fb := &funcGen{g: g, self: i, nFuncs: n}
		code := fb.expr(0)
		body := cat([]byte{1, genLocals, valI32}, code, []byte{0x0b})
		bodies = append(bodies, body)
	}
	types := sec(secType, 1, 0x60, 1, valI32, 1, valI32)
	fs := cat(leb(uint32(n)), repeat(n, 0))
	table := sec(secTable, 1, valFuncref, 0, byte(n))
	mem := sec(secMemory, 1, 1, 1, 2)
	ex := leb(uint32(n))
	for i := range n {
		ex = append(appendName(ex, genExportName(i)), 0, byte(i))
	}
	elems := cat([]byte{1, 0, 0x41, 0, 0x0b, byte(n)}, seq(n))
	code := leb(uint32(n))
	for _, b := range bodies {
		code = append(append(code, leb(uint32(len(b)))...), b...)
	}
	return wasmModule(types, sec(secFunction, fs...), table, mem, sec(secExport, ex...),
		sec(secElement, elems...), sec(secCode, code...)), n
}

func seq(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(i)
	}
	return out
}

// Locals of a generated function: the parameter is local 0; locals 1..4
// are scratch values; loop counters take locals 5 onwards, one per
// nesting level.
const genLocals = 12

type funcGen struct {
	g            *gen
	self, nFuncs int
	blocks       int // enclosing blocks whose label takes an i32
	loops        int // enclosing loops
	calls        int // call sites so far (at most two, outside loops)
}

// canCall reports whether a call may be generated here: only outside
// loops and twice per function, so that a module's calls are at most 2^6.
func (f *funcGen) canCall() bool { return f.self+1 < f.nFuncs && f.loops == 0 && f.calls < 2 }

// expr appends code that leaves one i32 on the stack.
func (f *funcGen) expr(depth int) []byte {
	g := f.g
	if depth > 5 {
		return f.leaf()
	}
	switch g.next(14) {
	case 0, 1:
		return f.leaf()
	case 2: // binary operator (no division: traps are tested elsewhere)
		ops := []byte{0x6a, 0x6b, 0x6c, 0x71, 0x72, 0x73, 0x74, 0x76, 0x46, 0x49}
		return cat(f.expr(depth+1), f.expr(depth+1), []byte{ops[g.next(len(ops))]})
	case 3: // if with both arms
		return cat(f.expr(depth+1), []byte{0x04, valI32}, f.nested(depth), []byte{0x05}, f.nested(depth), []byte{0x0b})
	case 4: // block with a conditional early exit
		f.blocks++
		inner := cat(f.expr(depth+1), f.expr(depth+1), []byte{0x0d, 0, 0x1a}, f.expr(depth+1))
		f.blocks--
		return cat([]byte{0x02, valI32}, inner, []byte{0x0b})
	case 5: // loop counting a local down from at most 16, adding to it
		if f.loops >= genLocals-5 {
			return f.leaf()
		}
		ctr := byte(5 + f.loops)
		f.loops++
		body := f.expr(depth + 1)
		f.loops--
		// ctr = (n & 15) + 1; acc = 0; loop { acc += body; ctr--; br_if ctr } acc
		return cat(f.expr(depth+1), []byte{0x41, 15, 0x71, 0x41, 1, 0x6a, 0x21, ctr, 0x41, 0, 0x21, 1,
			0x03, 0x40}, []byte{0x20, 1}, body, []byte{0x6a, 0x21, 1,
			0x20, ctr, 0x41, 1, 0x6b, 0x22, ctr, 0x0d, 0, 0x0b, 0x20, 1})
	case 6: // call of a later function
		if !f.canCall() {
			return f.leaf()
		}
		f.calls++
		callee := f.self + 1 + f.g.next(f.nFuncs-f.self-1)
		return cat(f.expr(depth+1), []byte{0x10, byte(callee)})
	case 7: // call_indirect of a later function
		if !f.canCall() {
			return f.leaf()
		}
		f.calls++
		callee := f.self + 1 + f.g.next(f.nFuncs-f.self-1)
		return cat(f.expr(depth+1), []byte{0x41, byte(callee), 0x11, 0, 0})
	case 8: // store then load
		return cat(f.addr(depth), f.expr(depth+1), []byte{0x36, 2, 0}, f.addr(depth), []byte{0x28, 2, 0})
	case 9: // memory.grow by 0 or 1 (the maximum is two pages)
		return []byte{0x41, byte(g.next(2)), 0x40, 0}
	case 10: // br_table in a block
		f.blocks++
		inner := cat(f.expr(depth+1), f.expr(depth+1), []byte{0x0e, 1, 0, 0})
		f.blocks--
		return cat([]byte{0x02, valI32}, inner, []byte{0x0b})
	case 11: // return from the middle
		return cat(f.expr(depth+1), []byte{0x0f})
	case 12: // local.tee into a scratch local
		return cat(f.expr(depth+1), []byte{0x22, byte(1 + g.next(4))})
	default: // select
		return cat(f.expr(depth+1), f.expr(depth+1), f.expr(depth+1), []byte{0x1b})
	}
}

func (f *funcGen) nested(depth int) []byte {
	f.blocks++
	defer func() { f.blocks-- }()
	return f.expr(depth + 1)
}

// addr is an aligned address within the first page.
func (f *funcGen) addr(depth int) []byte {
	return cat(f.expr(depth+1), []byte{0x41, 0xfc, 0x0f, 0x71}) // & 0x7fc
}

func (f *funcGen) leaf() []byte {
	switch f.g.next(4) {
	case 0:
		return []byte{0x20, 0}
	case 1:
		return []byte{0x20, byte(1 + f.g.next(4))}
	case 2:
		return []byte{0x3f, 0} // memory.size
	}
	return cat([]byte{0x41}, appendS64(nil, int64(int8(f.g.next(256)))))
}
