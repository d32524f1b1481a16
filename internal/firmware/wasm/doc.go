// Package wasm is the WebAssembly runtime of the Wasmbed device firmware:
// it checks, instruments, compiles and runs applications under per-app
// limits (memory, execution time, stack) and gives them the host API
// (import module "wasmbed", see docs/app-abi.md).
//
// One [Engine] serves every simulated device of a process: it owns one
// wazero runtime, the compilation cache and a cache of compiled modules
// keyed by SHA-256, memory limit and table bound. A device turns an
// Application into a [Module] with [Engine.Compile] (which refuses modules
// that break the app model, import outside the host API, exceed the
// board's bounds or do not fit their limits, with a typed error) and into
// a running [App] with [Engine.NewApp]. An App owns no goroutine: the
// device's loop calls [App.Start], then [App.Tick] every
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
//		// res.Mechanism == wasm.MechanismDeadline; the instance is gone:
//		// app.Start again to restart it
//	}
//
// # Limits
//
// All three limits (sandbox.Limits) are enforced by instrumenting the
// module before it is compiled (see instrument.go and docs/app-abi.md),
// identically in compiler and interpreter mode, at a fraction of the cost
// of wazero's own termination checks. Every function's prologue subtracts
// its frame cost from an accounted stack, which traps past maxStackSize,
// and its loop-free instruction count from a fuel counter that loop
// headers also draw on; when the fuel runs out the runtime's poll compares
// the clock with the execution's deadline (executionTimeout) and the
// caller's context. memoryLimit caps the memory's maximum (in 64 KiB
// pages, rounded up); a refused memory.grow or table.grow is reported.
// Each Result names the limit and the mechanism that enforced it.
//
// Modules are checked by [Inspect]'s rules — every declared count against
// the bytes present and the [Bounds] before anything is allocated — then
// wazero validates the instrumented binary during compilation. SIMD,
// threads, tail calls, exception handling and multiple memories are
// refused, as MCU runtimes do not offer them.
package wasm
