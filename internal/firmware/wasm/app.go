package wasm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// ErrNotRunning is the Err of a Result from Tick on an app that is not
// running (never started, stopped, timed out, or a finished run-once app).
var ErrNotRunning = errors.New("app not running")

// AppConfig configures an App.
type AppConfig struct {
	// Name identifies the app in logs, metrics and host calls.
	Name string
	// Host is the device context the app's host calls act on.
	Host Host
	// TickInterval is the initial tick interval of a tick app (default
	// DefaultTickInterval); the app may change it with tick_interval.
	TickInterval time.Duration
}

// Stats is an app's resource accounting since it was created.
type Stats struct {
	// Starts counts instantiations.
	Starts uint64
	// Executions counts entry-point calls (init, ticks, _start).
	Executions uint64
	// Traps counts executions that ended in OutcomeTrapped.
	Traps uint64
	// MemoryLimitHits, Timeouts and StackExhaustions count executions
	// that ended in OutcomeLimitExceeded for each limit.
	MemoryLimitHits  uint64
	Timeouts         uint64
	StackExhaustions uint64
	// HostErrors counts executions that ended in OutcomeHostError.
	HostErrors uint64
	// HostCalls counts calls into the host API.
	HostCalls uint64
	// CPUTime is the total host time spent executing the app; LastCPUTime
	// that of the last execution.
	CPUTime     time.Duration
	LastCPUTime time.Duration
	// MemoryBytes is the current size of the app's linear memory (0 when
	// not instantiated).
	MemoryBytes uint64
}

// App is one application instance on one device: a Module plus the
// device's Host, instantiated on Start. An App owns no goroutine; the
// device calls Start, Tick and Stop from its own loop. It is not safe for
// concurrent use.
type App struct {
	e    *Engine
	mod  *Module
	name string
	host Host
	lim  sandbox.Limits

	inst                       api.Module
	fInit, fTick, fStart       api.Function
	gSP, gFuel, gTrap          api.MutableGlobal
	gGrow, gTGrow              api.MutableGlobal
	tickInterval, initialTicks time.Duration
	stats                      Stats
	closed                     bool

	// stackBudget is what $sp_left starts each execution with; quantum is
	// the fuel between two polls of the clock (see instrument.go).
	stackBudget, quantum uint32
	// deadline ends the current execution; stop says why poll stopped it.
	deadline time.Time
	stop     stopCause
}

// stopCause is why the runtime's poll stopped an execution.
type stopCause uint8

const (
	stopNone stopCause = iota
	stopDeadline
	stopCanceled
)

// Fuel quantum per engine mode: about a millisecond of guest code between
// two reads of the clock.
const (
	compilerQuantum    = 1 << 20
	interpreterQuantum = 1 << 16
)

// interpreterFrameCeiling is how many accounted frames an execution may
// nest in interpreter mode, below wazero's own ceiling of 2,000 frames
// (which counts host calls and the entry too), so that the runtime's own
// stack check always fires first.
const interpreterFrameCeiling = 1990

// NewApp creates an app from mod (which stays owned by the caller and
// must outlive the app). The app is stopped until Start.
func (e *Engine) NewApp(mod *Module, cfg AppConfig) (*App, error) {
	if mod == nil || mod.e != e {
		return nil, fmt.Errorf("new app %q: module from another engine", cfg.Name)
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	a := &App{e: e, mod: mod, name: cfg.Name, host: cfg.Host, lim: mod.lim,
		tickInterval: cfg.TickInterval, initialTicks: cfg.TickInterval,
		stackBudget: uint32(mod.lim.MaxStackSize), quantum: compilerQuantum} //nolint:gosec // at most MaxStackLimit, checked when the module was compiled
	if e.mode == ModeInterpreter {
		a.quantum = interpreterQuantum
		if c := uint64(interpreterFrameCeiling) * uint64(mod.c.info.MinFrameBytes); c < uint64(a.stackBudget) {
			a.stackBudget = uint32(c) //nolint:gosec // c is below stackBudget, a uint32
		}
	}
	return a, nil
}

// Name returns the app's name.
func (a *App) Name() string { return a.name }

// Kind returns the app's kind.
func (a *App) Kind() AppKind { return a.mod.c.info.Kind }

// Module returns the app's module.
func (a *App) Module() *Module { return a.mod }

// Limits returns the app's limits.
func (a *App) Limits() sandbox.Limits { return a.lim }

// Running reports whether the app has a live instance.
func (a *App) Running() bool { return a.inst != nil }

// TickInterval returns the interval at which the device should call Tick.
func (a *App) TickInterval() time.Duration { return a.tickInterval }

// Stats returns the app's accounting.
func (a *App) Stats() Stats {
	s := a.stats
	if mem := a.memory(a.inst); mem != nil {
		s.MemoryBytes = uint64(mem.Size())
	}
	return s
}

// memory returns mod's linear memory, or nil if it has none (wazero
// returns a typed nil in that case).
func (a *App) memory(mod api.Module) api.Memory {
	if mod == nil || !a.mod.c.info.HasMemory {
		return nil
	}
	return mod.Memory()
}

func (a *App) clock() hal.Clock {
	if a.host.Clock == nil {
		return hal.SystemClock{}
	}
	return a.host.Clock
}

func (a *App) gpio() hal.GPIO {
	if a.host.Board == nil {
		return nil
	}
	return a.host.Board.GPIO
}

// Start (re)starts the app from a fresh instance: any running instance is
// closed, the module instantiated, and wasmbed_init (tick apps) or _start
// (run-once apps) executed under the app's limits. A run-once app's
// instance is closed again when _start returns. A tick app keeps running
// unless its init trapped or hit a limit, and the device then calls Tick
// every TickInterval.
func (a *App) Start(ctx context.Context) Result {
	if err := a.Stop(ctx); err != nil {
		return a.hostError("start", err)
	}
	if a.closed {
		return a.hostError("start", ErrClosed)
	}
	a.mod.mu.Lock()
	released := a.mod.released
	a.mod.mu.Unlock()
	if released {
		return a.hostError("start", ErrClosed)
	}
	cctx := context.WithValue(ctx, appKey{}, a)
	inst, err := a.e.rt.InstantiateModule(cctx, a.mod.c.cm, instanceConfig)
	if err != nil {
		return a.hostError("instantiate", err)
	}
	a.stats.Starts++
	a.inst = inst
	a.tickInterval = a.initialTicks
	a.fInit = inst.ExportedFunction(ExportInit)
	a.fTick = inst.ExportedFunction(ExportTick)
	a.fStart = inst.ExportedFunction(ExportStart)
	a.gSP, _ = inst.ExportedGlobal(exportSP).(api.MutableGlobal)
	a.gFuel, _ = inst.ExportedGlobal(exportFuel).(api.MutableGlobal)
	a.gTrap, _ = inst.ExportedGlobal(exportStackTrap).(api.MutableGlobal)
	a.gGrow, _ = inst.ExportedGlobal(exportGrowFailed).(api.MutableGlobal)
	a.gTGrow, _ = inst.ExportedGlobal(exportTableGrow).(api.MutableGlobal)
	if a.gSP == nil || a.gFuel == nil || a.gTrap == nil || a.gGrow == nil || a.gTGrow == nil {
		_ = a.Stop(ctx)
		return a.hostError("instantiate", errors.New("instrumentation globals missing"))
	}

	var res Result
	switch a.Kind() {
	case AppTick:
		if a.fInit == nil {
			return Result{Outcome: OutcomeCompleted}
		}
		res = a.exec(ctx, a.fInit, ExportInit)
	case AppRunOnce:
		res = a.exec(ctx, a.fStart, ExportStart)
		if a.inst != nil {
			_ = a.Stop(ctx)
		}
		return res
	}
	// A failed init stops the app; a refused memory.grow the app coped
	// with does not.
	if res.Err != nil && (res.Limit != LimitMemory || res.Trap != TrapNone) {
		_ = a.Stop(ctx)
	}
	return res
}

// Tick runs one wasmbed_tick of a running tick app under its limits. An
// app that timed out is no longer running: Start it again.
func (a *App) Tick(ctx context.Context) Result {
	if a.inst == nil || a.fTick == nil {
		return a.hostError(ExportTick, ErrNotRunning)
	}
	return a.exec(ctx, a.fTick, ExportTick)
}

// Stop closes the app's instance, if any. The app can be started again.
func (a *App) Stop(ctx context.Context) error {
	if a.inst == nil {
		return nil
	}
	inst := a.inst
	a.inst, a.fInit, a.fTick, a.fStart = nil, nil, nil, nil
	a.gSP, a.gFuel, a.gTrap, a.gGrow, a.gTGrow = nil, nil, nil, nil, nil
	if err := inst.Close(ctx); err != nil {
		return fmt.Errorf("stop app %q: %w", a.name, err)
	}
	return nil
}

// Close stops the app for good.
func (a *App) Close(ctx context.Context) error {
	a.closed = true
	return a.Stop(ctx)
}

func (a *App) hostError(entry string, err error) Result {
	a.stats.HostErrors++
	return Result{Outcome: OutcomeHostError, Err: &ExecError{App: a.name, Entry: entry, Outcome: OutcomeHostError, Cause: err}}
}

// instanceConfig instantiates apps without a name (so any number can
// coexist) and without running start functions (refused anyway).
var instanceConfig = wazero.NewModuleConfig().WithName("").WithStartFunctions()

// exec calls fn under the app's limits and classifies the outcome.
func (a *App) exec(ctx context.Context, fn api.Function, entry string) Result {
	a.gSP.Set(uint64(a.stackBudget))
	a.gFuel.Set(uint64(a.quantum))
	a.gTrap.Set(0)
	a.gGrow.Set(0)
	a.gTGrow.Set(0)
	a.stop = stopNone
	start := time.Now()
	a.deadline = start.Add(a.lim.ExecutionTimeout)
	err := fn.CallWithStack(context.WithValue(ctx, appKey{}, a), nil)
	d := time.Since(start)

	a.stats.Executions++
	a.stats.CPUTime += d
	a.stats.LastCPUTime = d
	res := a.classify(err)
	res.Duration = d
	switch {
	case res.Outcome == OutcomeCompleted:
		return res
	case res.Outcome == OutcomeTrapped:
		a.stats.Traps++
	case res.Limit == LimitMemory:
		a.stats.MemoryLimitHits++
	case res.Limit == LimitTime:
		a.stats.Timeouts++
	case res.Limit == LimitStack:
		a.stats.StackExhaustions++
	case res.Outcome == OutcomeHostError:
		a.stats.HostErrors++
	}
	if a.stop != stopNone {
		// Stopped by its deadline or its caller: the instance ends, as the
		// app may have been stopped anywhere; Start makes a fresh one.
		_ = a.Stop(ctx)
	}
	res.Err = &ExecError{App: a.name, Entry: entry, Outcome: res.Outcome, Trap: res.Trap, Limit: res.Limit,
		Mechanism: res.Mechanism, Cause: err}
	return res
}

// classify says how an execution that returned err ended, and which
// mechanism ended or flagged it.
func (a *App) classify(err error) Result {
	// A refused memory.grow or table.grow counts against memoryLimit (the
	// tables are part of the app's RAM).
	grew := MechanismNone
	switch {
	case a.gGrow.Get() != 0:
		grew = MechanismMemoryGrow
	case a.gTGrow.Get() != 0:
		grew = MechanismTableGrow
	}
	switch {
	case err == nil && grew == MechanismNone:
		return Result{Outcome: OutcomeCompleted}
	case err == nil:
		return Result{Outcome: OutcomeLimitExceeded, Limit: LimitMemory, Mechanism: grew}
	case a.stop == stopDeadline:
		return Result{Outcome: OutcomeLimitExceeded, Limit: LimitTime, Mechanism: MechanismDeadline}
	case a.stop == stopCanceled:
		return Result{Outcome: OutcomeHostError, Mechanism: MechanismCanceled}
	case a.gTrap.Get() != 0:
		return Result{Outcome: OutcomeLimitExceeded, Limit: LimitStack, Trap: TrapStackExhausted, Mechanism: MechanismStackAccounting}
	}
	trap := classifyTrap(err)
	switch {
	case trap == TrapStackExhausted:
		return Result{Outcome: OutcomeLimitExceeded, Limit: LimitStack, Trap: trap, Mechanism: MechanismEngineStack}
	case trap == TrapOther:
		return Result{Outcome: OutcomeHostError}
	case grew != MechanismNone:
		return Result{Outcome: OutcomeLimitExceeded, Limit: LimitMemory, Trap: trap, Mechanism: grew}
	}
	return Result{Outcome: OutcomeTrapped, Trap: trap}
}

// poll is called by the instrumented code once per fuel quantum: it
// returns the next quantum, or 0 to stop the execution when its deadline
// has passed or its caller's context has ended.
func (a *App) poll(ctx context.Context) uint32 {
	switch {
	case ctx.Err() != nil:
		a.stop = stopCanceled
	case !time.Now().Before(a.deadline):
		a.stop = stopDeadline
	default:
		return a.quantum
	}
	return 0
}

// expire makes the guest poll at its next check, after a host call found
// the deadline passed.
func (a *App) expire() {
	if a.gFuel != nil {
		a.gFuel.Set(0)
	}
}

// classifyTrap maps a wazero execution error to a Trap. wazero's trap
// errors are internal types; their messages are stable API in practice.
func classifyTrap(err error) Trap {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch e.Error() {
		case "unreachable":
			return TrapUnreachable
		case "out of bounds memory access":
			return TrapOutOfBounds
		case "integer divide by zero":
			return TrapDivideByZero
		case "integer overflow":
			return TrapIntegerOverflow
		case "invalid conversion to integer":
			return TrapInvalidConversion
		case "invalid table access":
			return TrapTableAccess
		case "indirect call type mismatch":
			return TrapIndirectCallType
		case "stack overflow":
			return TrapStackExhausted
		}
	}
	return TrapOther
}
