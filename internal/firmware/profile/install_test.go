package profile

import (
	"runtime"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm/wasmtest"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// installLimits let the worst-case modules' largest frames fit.
var installLimits = sandbox.Limits{MaxStackSize: 1 << 20, ExecutionTimeout: time.Second}

// TestWorstCaseInstallBounded installs, on each board, the most complex
// module its bounds accept, and bounds the memory installation takes
// (allocated while checking, instrumenting and compiling). A module one
// step past any bound is refused before it is compiled (see the wasm
// package's TestInstallationBounded).
func TestWorstCaseInstallBounded(t *testing.T) {
	for _, name := range Names() {
		for costly, shape := range shapes {
			p, _ := Lookup(name)
			bin := wasmtest.WorstCase(p.ModuleBounds, int(p.MaxModuleBytes), costly)
			info, err := wasm.Inspect(bin, p.ModuleBounds)
			if err != nil {
				t.Fatalf("%s: worst-case module refused: %v", name, err)
			}
			for _, mode := range []wasm.Mode{wasm.ModeCompiler, wasm.ModeInterpreter} {
				t.Run(name+"/"+shape+"/"+mode.String(), func(t *testing.T) {
					eng, err := wasm.NewEngine(t.Context(), wasm.Config{Mode: mode})
					if err != nil {
						t.Skipf("engine mode %s: %v", mode, err)
					}
					defer eng.Close(t.Context())
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					mod, err := eng.Compile(t.Context(), bin, installLimits, p.ModuleBounds)
					runtime.ReadMemStats(&after)
					if err != nil {
						t.Fatalf("Compile: %v", err)
					}
					mod.Release(t.Context())
					allocated := after.TotalAlloc - before.TotalAlloc
					t.Logf("%d-byte module, %d functions, compile work %d: %d MB allocated to install",
						len(bin), info.Shape.Functions, info.Shape.CompileWork, allocated>>20)
					if limit := uint64(256 << 20); allocated > limit {
						t.Errorf("installation allocated %d bytes, want at most %d", allocated, limit)
					}
				})
			}
		}
	}
}

// shapes names the wasmtest.Costly shapes.
var shapes = map[wasmtest.Costly]string{wasmtest.LocalsAcrossBranches: "locals", wasmtest.Branches: "branches"}

// BenchmarkInstallWorstCase measures installing (checking, instrumenting,
// compiling from scratch) the most complex module each board accepts.
func BenchmarkInstallWorstCase(b *testing.B) {
	for _, name := range Names() {
		for costly, shape := range shapes {
			p, _ := Lookup(name)
			bin := wasmtest.WorstCase(p.ModuleBounds, int(p.MaxModuleBytes), costly)
			for _, mode := range []wasm.Mode{wasm.ModeCompiler, wasm.ModeInterpreter} {
				b.Run(name+"/"+shape+"/"+mode.String(), func(b *testing.B) {
					b.SetBytes(int64(len(bin)))
					b.ReportAllocs()
					for b.Loop() {
						b.StopTimer()
						eng, err := wasm.NewEngine(b.Context(), wasm.Config{Mode: mode})
						if err != nil {
							b.Skipf("engine mode %s: %v", mode, err)
						}
						b.StartTimer()
						mod, err := eng.Compile(b.Context(), bin, installLimits, p.ModuleBounds)
						if err != nil {
							b.Fatal(err)
						}
						b.StopTimer()
						mod.Release(b.Context())
						_ = eng.Close(b.Context())
						b.StartTimer()
					}
				})
			}
		}
	}
}
