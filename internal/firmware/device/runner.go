package device

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/monitor"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// runner adapts the shared WebAssembly engine to the application manager:
// it compiles (through the engine's module cache), instantiates and starts
// applications, and drives tick applications from the device clock. An
// instance owns no goroutine: each tick is a clock timer that runs one
// wasmbed_tick and re-arms itself.
type runner struct {
	eng    *wasm.Engine
	bounds wasm.Bounds // the board profile's module bounds
	clock  hal.Clock
	host   wasm.Host
	log    *slog.Logger

	// ticked, when set, is called after every tick that leaves its
	// application running, with no lock held.
	ticked func()

	mu sync.Mutex
	// apps are the started applications, and those that ended on their
	// own (a trap, a limit) until they start again or are removed, in
	// name order.
	apps []*instance
}

func newRunner(eng *wasm.Engine, bounds wasm.Bounds, clock hal.Clock, host wasm.Host, log *slog.Logger) *runner {
	return &runner{eng: eng, bounds: bounds, clock: clock, host: host, log: log}
}

// instance is a started application.
type instance struct {
	r    *runner
	name string
	exit func(error)
	// ctx is Start's context without its cancellation: ticks run, and the
	// application is released, long after Start returned.
	ctx context.Context

	usage profile.Usage

	mu      sync.Mutex
	mod     *wasm.Module
	app     *wasm.App
	timer   hal.Timer
	stopped bool
	final   wasm.Stats // counters when it stopped
}

var _ appmgr.Runner = (*runner)(nil)

// Start implements appmgr.Runner.
func (r *runner) Start(ctx context.Context, spec appmgr.RunSpec, exit func(error)) (appmgr.Instance, error) {
	if r.eng == nil {
		return nil, errors.New("no webassembly engine")
	}
	lim := spec.Limits
	mod, err := r.eng.Compile(ctx, spec.Module, lim, r.bounds)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", appmgr.ErrInvalidModule, err)
	}
	host := r.host
	if spec.Config != nil {
		host.Config = spec.Config
	}
	app, err := r.eng.NewApp(mod, wasm.AppConfig{Name: spec.Name, Host: host})
	if err != nil {
		mod.Release(ctx)
		return nil, fmt.Errorf("%w: %w", appmgr.ErrInvalidModule, err)
	}
	res := app.Start(ctx)
	if err := resultError(res); err != nil && !app.Running() {
		_ = app.Close(ctx)
		mod.Release(ctx)
		return nil, err
	}
	inst := &instance{r: r, name: spec.Name, exit: exit, ctx: context.WithoutCancel(ctx), mod: mod, app: app,
		usage: profile.UsageOf(spec.Name, mod.Info(), lim)}
	if app.Running() && app.Kind() == wasm.AppTick {
		inst.timer = r.clock.AfterFunc(app.TickInterval(), inst.tick)
	}
	r.add(inst)
	return inst, nil
}

// tick runs one wasmbed_tick and re-arms the timer, or reports the exit.
func (i *instance) tick() {
	i.mu.Lock()
	if i.stopped {
		i.mu.Unlock()
		return
	}
	res := i.app.Tick(i.ctx)
	// A trap or an aborted execution ends the application, even when the
	// instance survived it; a refused memory.grow the app coped with does
	// not.
	failed := res.Outcome == wasm.OutcomeTrapped || res.Outcome == wasm.OutcomeHostError ||
		res.Outcome == wasm.OutcomeLimitExceeded && (res.Limit != wasm.LimitMemory || res.Trap != wasm.TrapNone)
	running := i.app.Running() && !failed
	if running {
		i.timer.Reset(i.app.TickInterval())
	}
	i.mu.Unlock()
	if running && i.r.ticked != nil {
		i.r.ticked()
	}
	if !running {
		err := resultError(res)
		if err == nil {
			err = errors.New("application ended")
		}
		i.r.log.Debug("app exited", "app", i.name, "result", res.String())
		i.release(i.ctx) // its final counters stay reported until it starts again or is removed
		i.exit(err)
	}
}

// Stop implements appmgr.Instance.
func (i *instance) Stop(ctx context.Context) error {
	i.mu.Lock()
	if i.timer != nil {
		i.timer.Stop()
	}
	i.mu.Unlock()
	// Released even if ctx is cancelled: the instance is gone either way.
	i.release(context.WithoutCancel(ctx))
	i.r.remove(i)
	return nil
}

// release frees the app and its module once, keeping its final counters.
func (i *instance) release(ctx context.Context) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return
	}
	i.stopped = true
	i.final = i.app.Stats()
	i.final.MemoryBytes = 0
	_ = i.app.Close(ctx)
	i.mod.Release(ctx)
}

// add records a started instance, replacing an ended one of the same name.
func (r *runner) add(inst *instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, found := slices.BinarySearchFunc(r.apps, inst.name, func(i *instance, name string) int { return cmp.Compare(i.name, name) })
	if found {
		r.apps[k] = inst
		return
	}
	r.apps = slices.Insert(r.apps, k, inst)
}

// remove forgets inst if it is still the instance of its name.
func (r *runner) remove(inst *instance) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apps = slices.DeleteFunc(r.apps, func(i *instance) bool { return i == inst })
}

// forget forgets the ended instance of a removed application.
func (r *runner) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apps = slices.DeleteFunc(r.apps, func(i *instance) bool { return i.name == name })
}

// each calls f for every instance with the instance locked, and whether it
// still runs. Lock order: runner, then instance.
func (r *runner) each(f func(i *instance, running bool)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range r.apps {
		i.mu.Lock()
		f(i, !i.stopped)
		i.mu.Unlock()
	}
}

// usage returns the resource usage of a running application.
func (r *runner) usage(name string) (u profile.Usage) {
	r.each(func(i *instance, running bool) {
		if running && i.name == name {
			u = i.usage
		}
	})
	return u
}

// samples appends the counters of every application the runner knows to
// dst, in name order, without allocating beyond growing dst
// (monitor.Sources.Apps).
func (r *runner) samples(dst []monitor.AppSample) []monitor.AppSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range r.apps {
		i.mu.Lock()
		st := i.final
		if !i.stopped {
			st = i.app.Stats()
		}
		i.mu.Unlock()
		dst = append(dst, monitor.AppSample{
			App: i.name, MemoryBytes: st.MemoryBytes, CPUMicros: uint64(st.CPUTime / time.Microsecond), //nolint:gosec // CPU time is never negative
			Executions: st.Executions, Traps: st.Traps,
		})
	}
	return dst
}

// running returns how many applications run.
func (r *runner) running() int {
	n := 0
	r.each(func(_ *instance, running bool) {
		if running {
			n++
		}
	})
	return n
}

// memory returns the linear memory in use by the running applications.
func (r *runner) memory() uint64 {
	var n uint64
	r.each(func(i *instance, running bool) {
		if running {
			n += i.app.Stats().MemoryBytes
		}
	})
	return n
}

// resultError maps a failed execution onto the application manager's
// errors.
func resultError(res wasm.Result) error {
	switch res.Outcome {
	case wasm.OutcomeCompleted:
		return nil
	case wasm.OutcomeTrapped:
		return &appmgr.TrapError{Reason: res.Trap.String()}
	case wasm.OutcomeLimitExceeded:
		var rsc protocol.Resource
		switch res.Limit {
		case wasm.LimitMemory:
			rsc = protocol.ResourceMemory
		case wasm.LimitTime:
			rsc = protocol.ResourceTime
		case wasm.LimitStack:
			rsc = protocol.ResourceStack
		}
		detail := res.String()
		if res.Err != nil {
			detail = res.Err.Error()
		}
		return &appmgr.LimitError{Resource: rsc, Detail: detail}
	}
	if res.Err != nil {
		return res.Err
	}
	return errors.New(res.String())
}
