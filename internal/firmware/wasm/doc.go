// Package wasm is the WebAssembly runtime of the Wasmbed device firmware:
// it checks, instruments, compiles and runs applications under per-app
// limits (memory, execution time, stack) and gives them the host API
// (import module "wasmbed", see docs/app-abi.md).
//
// One [Engine] serves every simulated device of a process: it owns one
// wazero runtime, the compilation cache and a cache of compiled modules
// keyed by SHA-256 and memory limit. A device turns an Application into a
// [Module] with [Engine.Compile] (which refuses modules that break the app
// model, import outside the host API, or do not fit their limits, with a
// typed error) and into a running [App] with [Engine.NewApp]. An App owns
// no goroutine: the device's loop calls [App.Start], then [App.Tick] every
// [App.TickInterval] for tick apps, and [App.Stop]. Each call returns a
// [Result] classifying the execution (completed, trapped, limit exceeded,
// host error).
//
//	eng, _ := wasm.NewEngine(ctx, wasm.Config{})            // once per process
//	mod, err := eng.Compile(ctx, bin, sandbox.Limits{MemoryLimit: 65536,
//		ExecutionTimeout: 50 * time.Millisecond, MaxStackSize: 8192}, board.ModuleBounds)
//	if errors.Is(err, wasm.ErrForbiddenImport) { ... } // *ImportError names it
//	defer mod.Release(ctx)
//	app, _ := eng.NewApp(mod, wasm.AppConfig{Name: "blinky", Host: wasm.Host{
//		Board: sim.Board(), Clock: clock, Publisher: pub, Config: cfg, Logger: log}})
//	res := app.Start(ctx)             // instantiate + wasmbed_init
//	res = app.Tick(ctx)               // one wasmbed_tick
//	if res.Outcome == wasm.OutcomeLimitExceeded && res.Limit == wasm.LimitTime {
//		// the instance is gone; app.Start again to restart it
//	}
//
// # Limits
//
// memoryLimit is enforced by rewriting the module's memory maximum to at
// most the limit (in 64 KiB pages, rounded up); memory.grow beyond it
// returns -1 to the guest and the execution is reported as
// OutcomeLimitExceeded/LimitMemory. executionTimeout is a context deadline
// on each execution with wazero's close-on-context-done: the instance is
// closed and must be started again. maxStackSize is enforced by
// instrumentation: every function call adds the callee's frame cost to a
// counter that traps past the limit, independently of the engine's own
// stack (the compiler's stack would otherwise grow to hundreds of MB); see
// docs/app-abi.md for the cost formula.
//
// Modules are checked by [Inspect]'s rules, then wazero validates the
// instrumented binary during compilation. SIMD, threads, tail calls and
// multiple memories are refused, as MCU runtimes do not offer them.
package wasm
