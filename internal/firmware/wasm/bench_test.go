package wasm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// BenchmarkCompile measures checking + instrumenting + compiling a module
// from scratch (fresh engine and compilation cache per iteration).
func BenchmarkCompile(b *testing.B) {
	for _, mode := range modes {
		for _, app := range []string{apps.Blinky, apps.Compute} {
			b.Run(mode.String()+"/"+app, func(b *testing.B) {
				bin := sample(app)
				b.SetBytes(int64(len(bin)))
				b.ReportAllocs()
				for b.Loop() {
					b.StopTimer()
					e := newEngineNoCleanup(b, mode)
					b.StartTimer()
					m, err := e.Compile(b.Context(), bin, sandbox.Limits{}, Bounds{})
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					m.Release(b.Context())
					_ = e.Close(b.Context())
					b.StartTimer()
				}
			})
		}
	}
}

func newEngineNoCleanup(b *testing.B, mode Mode) *Engine {
	if mode == ModeCompiler && !compilerSupported() {
		b.Skip("compiler not supported")
	}
	e, err := NewEngine(b.Context(), Config{Mode: mode})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkCompileCached measures Compile of a module already compiled
// under the same memory limit (hash + cache hit), as every device after
// the first does when an Application rolls out to a fleet.
func BenchmarkCompileCached(b *testing.B) {
	e := newEngine(b, ModeAuto)
	bin := sample(apps.Compute)
	keep, err := e.Compile(b.Context(), bin, sandbox.Limits{}, Bounds{})
	if err != nil {
		b.Fatal(err)
	}
	defer keep.Release(b.Context())
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := e.Compile(b.Context(), bin, sandbox.Limits{}, Bounds{})
		if err != nil {
			b.Fatal(err)
		}
		m.Release(b.Context())
	}
}

// BenchmarkCompileLarge compiles (instruments + wazero compile) a large
// module produced by Go's wasip1 port, built into a temporary directory.
// It goes below Engine.Compile because the module imports WASI, which the
// app model refuses.
func BenchmarkCompileLarge(b *testing.B) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("go toolchain not in PATH")
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "hello.wasm")
	cmd := exec.CommandContext(b.Context(), gobin, "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GO111MODULE=off")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Skipf("building a wasip1 module: %v\n%s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			if mode == ModeCompiler && !compilerSupported() {
				b.Skip("compiler not supported")
			}
			b.SetBytes(int64(len(bin)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := decode(bin, specBounds)
				if err != nil {
					b.Fatal(err)
				}
				inst, err := m.instrument(maxPages)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				rc := wazero.NewRuntimeConfigInterpreter()
				if mode == ModeCompiler {
					rc = wazero.NewRuntimeConfigCompiler()
				}
				rt := wazero.NewRuntimeWithConfig(b.Context(), rc.WithDebugInfoEnabled(false))
				b.StartTimer()
				if _, err := rt.CompileModule(b.Context(), inst.bin); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = rt.Close(b.Context())
				b.StartTimer()
			}
		})
	}
}

// BenchmarkInstantiate measures starting and stopping an app from a
// cached module, and reports the heap retained per running app.
func BenchmarkInstantiate(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			e := newEngine(b, mode)
			d := newDevice()
			mod, err := e.Compile(b.Context(), sample(apps.Blinky), sandbox.Limits{}, Bounds{})
			if err != nil {
				b.Fatal(err)
			}
			defer mod.Release(b.Context())
			a, _ := e.NewApp(mod, AppConfig{Name: "blinky", Host: d.host()})
			b.ReportAllocs()
			for b.Loop() {
				if res := a.Start(b.Context()); !res.OK() {
					b.Fatal(res.Err)
				}
				_ = a.Stop(b.Context())
			}
			b.StopTimer()
			b.ReportMetric(float64(retainedPerApp(b, e, mod, d)), "B/running-app")
		})
	}
}

// retainedPerApp starts 200 apps and returns the heap growth per app.
func retainedPerApp(b *testing.B, e *Engine, mod *Module, d *device) uint64 {
	const n = 200
	list := make([]*App, n)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range list {
		list[i], _ = e.NewApp(mod, AppConfig{Name: "a", Host: d.host()})
		if res := list[i].Start(b.Context()); !res.OK() {
			b.Fatal(res.Err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	for _, a := range list {
		_ = a.Close(b.Context())
	}
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return (after.HeapAlloc - before.HeapAlloc) / n
}

// computeLimits are the limits BenchmarkComputeTick runs under: all three
// enforced, the timeout generous enough for the interpreter on a loaded
// machine.
var computeLimits = sandbox.Limits{MemoryLimit: 64 << 10, ExecutionTimeout: 10 * time.Second, MaxStackSize: 16 << 10}

// BenchmarkComputeTick runs one tick of the compute app (CRC-32 of 4 KiB,
// fib(24), xorshift) per iteration through the device runtime, with the
// memory, time and stack limits enforced, against the same work in Go.
func BenchmarkComputeTick(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			e := newEngine(b, mode)
			a, res := startApp(b, e, newDevice(), "compute", sample(apps.Compute), computeLimits)
			if !res.OK() {
				b.Fatal(res.Err)
			}
			b.SetBytes(4096)
			b.ReportAllocs()
			for b.Loop() {
				if res := a.Tick(b.Context()); !res.OK() {
					b.Fatal(res.Err)
				}
			}
		})
	}
	b.Run("native-go", func(b *testing.B) {
		b.SetBytes(4096)
		b.ReportAllocs()
		for b.Loop() {
			_ = computeReference()
		}
	})
}

// BenchmarkHostCall measures the cost of one host call (gpio_write on the
// simulated board) from the guest.
func BenchmarkHostCall(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			e := newEngine(b, mode)
			d := newDevice()
			if err := d.sim.Board().GPIO.Configure(5, hal.PinOutput); err != nil {
				b.Fatal(err)
			}
			a, res := startApp(b, e, d, "hostcalls", testdata(b, "hostcalls"), sandbox.Limits{ExecutionTimeout: 10 * time.Second})
			if !res.OK() {
				b.Fatal(res.Err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if res := a.Tick(b.Context()); !res.OK() {
					b.Fatal(res.Err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/hostcall")
		})
	}
}

// BenchmarkInstrumentation compares a tick of the compute app and of
// recursive fib(25) (242,785 calls) run through App.Tick, instrumented,
// with the same module run by wazero without instrumentation: "raw"
// without any limit, "close-on-done" with wazero's own termination checks
// (WithCloseOnContextDone), which the runtime used before.
func BenchmarkInstrumentation(b *testing.B) {
	for _, prog := range []struct {
		name  string
		bin   []byte
		calls float64
	}{
		{"compute", sample(apps.Compute), 0},
		{"fib", testdata(b, "fib"), 242785},
	} {
		for _, mode := range modes {
			b.Run(prog.name+"/"+mode.String()+"/instrumented", func(b *testing.B) {
				e := newEngine(b, mode)
				a, res := startApp(b, e, newDevice(), prog.name, prog.bin, computeLimits)
				if !res.OK() {
					b.Fatal(res.Err)
				}
				for b.Loop() {
					if res := a.Tick(b.Context()); !res.OK() {
						b.Fatal(res.Err)
					}
				}
				reportPerCall(b, prog.calls)
			})
			for _, closeOnDone := range []bool{false, true} {
				name := "raw"
				if closeOnDone {
					name = "close-on-done"
				}
				b.Run(prog.name+"/"+mode.String()+"/"+name, func(b *testing.B) {
					fn := rawTick(b, mode, prog.bin, closeOnDone)
					for b.Loop() {
						ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
						if err := fn.CallWithStack(ctx, nil); err != nil {
							b.Fatal(err)
						}
						cancel()
					}
					reportPerCall(b, prog.calls)
				})
			}
		}
	}
}

func reportPerCall(b *testing.B, calls float64) {
	if calls > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/calls, "ns/call")
	}
}

// rawTick instantiates bin in a plain wazero runtime, runs its init and
// returns its tick function.
func rawTick(b *testing.B, mode Mode, bin []byte, closeOnDone bool) api.Function {
	if mode == ModeCompiler && !compilerSupported() {
		b.Skip("compiler not supported")
	}
	rc := wazero.NewRuntimeConfigInterpreter()
	if mode == ModeCompiler {
		rc = wazero.NewRuntimeConfigCompiler()
	}
	rt := wazero.NewRuntimeWithConfig(b.Context(), rc.WithCloseOnContextDone(closeOnDone).
		WithCoreFeatures(api.CoreFeaturesV2&^api.CoreFeatureSIMD))
	b.Cleanup(func() { _ = rt.Close(context.Background()) })
	if err := instantiateHost(b.Context(), rt); err != nil {
		b.Fatal(err)
	}
	mod, err := rt.InstantiateWithConfig(b.Context(), bin, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		b.Fatal(err)
	}
	if init := mod.ExportedFunction(ExportInit); init != nil {
		if _, err := init.Call(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	return mod.ExportedFunction(ExportTick)
}
