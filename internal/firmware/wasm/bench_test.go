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
					m, err := e.Compile(b.Context(), bin, Limits{}, Bounds{})
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
	keep, err := e.Compile(b.Context(), bin, Limits{}, Bounds{})
	if err != nil {
		b.Fatal(err)
	}
	defer keep.Release(b.Context())
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for b.Loop() {
		m, err := e.Compile(b.Context(), bin, Limits{}, Bounds{})
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
				m, err := decode(bin, Bounds{})
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
			mod, err := e.Compile(b.Context(), sample(apps.Blinky), Limits{}, Bounds{})
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

// BenchmarkComputeTick runs one tick of the compute app (CRC-32 of 4 KiB,
// fib(24), xorshift) per iteration.
func BenchmarkComputeTick(b *testing.B) {
	for _, mode := range modes {
		b.Run(mode.String(), func(b *testing.B) {
			e := newEngine(b, mode)
			a, res := startApp(b, e, newDevice(), "compute", sample(apps.Compute), Limits{ExecutionTimeout: 10 * time.Second})
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
			a, res := startApp(b, e, d, "hostcalls", testdata(b, "hostcalls"), Limits{})
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

// BenchmarkStackAccounting compares recursive fib(25) (242,785 calls) in
// the instrumented module run through App.Tick with the same module
// compiled and called without instrumentation.
func BenchmarkStackAccounting(b *testing.B) {
	bin := testdata(b, "fib")
	for _, mode := range modes {
		b.Run(mode.String()+"/instrumented", func(b *testing.B) {
			e := newEngine(b, mode)
			a, res := startApp(b, e, newDevice(), "fib", bin, Limits{ExecutionTimeout: 10 * time.Second})
			if !res.OK() {
				b.Fatal(res.Err)
			}
			for b.Loop() {
				if res := a.Tick(b.Context()); !res.OK() {
					b.Fatal(res.Err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/242785, "ns/call")
		})
		b.Run(mode.String()+"/raw", func(b *testing.B) {
			if mode == ModeCompiler && !compilerSupported() {
				b.Skip("compiler not supported")
			}
			rc := wazero.NewRuntimeConfigInterpreter()
			if mode == ModeCompiler {
				rc = wazero.NewRuntimeConfigCompiler()
			}
			rt := wazero.NewRuntimeWithConfig(b.Context(), rc.WithCloseOnContextDone(true).
				WithCoreFeatures(api.CoreFeaturesV2&^api.CoreFeatureSIMD))
			defer rt.Close(b.Context())
			mod, err := rt.Instantiate(b.Context(), bin)
			if err != nil {
				b.Fatal(err)
			}
			fn := mod.ExportedFunction(ExportTick)
			for b.Loop() {
				ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
				if err := fn.CallWithStack(ctx, nil); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/242785, "ns/call")
		})
	}
}
