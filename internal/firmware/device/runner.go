package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
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
	eng   *wasm.Engine
	clock link.Clock
	host  wasm.Host
	log   *slog.Logger

	mu   sync.Mutex
	apps map[string]*instance
}

func newRunner(eng *wasm.Engine, clock link.Clock, host wasm.Host, log *slog.Logger) *runner {
	return &runner{eng: eng, clock: clock, host: host, log: log, apps: map[string]*instance{}}
}

// instance is a started application.
type instance struct {
	r    *runner
	name string
	exit func(error)

	usage profile.Usage

	mu      sync.Mutex
	mod     *wasm.Module
	app     *wasm.App
	timer   link.Timer
	stopped bool
}

var _ appmgr.Runner = (*runner)(nil)

// Start implements appmgr.Runner.
func (r *runner) Start(ctx context.Context, spec appmgr.RunSpec, exit func(error)) (appmgr.Instance, error) {
	if r.eng == nil {
		return nil, errors.New("no webassembly engine")
	}
	lim := wasmLimits(spec.Limits)
	mod, err := r.eng.Compile(ctx, spec.Module, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", appmgr.ErrInvalidModule, err)
	}
	app, err := r.eng.NewApp(mod, wasm.AppConfig{Name: spec.Name, Host: r.host})
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
	inst := &instance{r: r, name: spec.Name, exit: exit, mod: mod, app: app,
		usage: profile.UsageOf(spec.Name, mod.Info(), lim)}
	if app.Running() && app.Kind() == wasm.AppTick {
		inst.timer = r.clock.AfterFunc(app.TickInterval(), inst.tick)
	}
	r.mu.Lock()
	r.apps[spec.Name] = inst
	r.mu.Unlock()
	return inst, nil
}

// tick runs one wasmbed_tick and re-arms the timer, or reports the exit.
func (i *instance) tick() {
	i.mu.Lock()
	if i.stopped {
		i.mu.Unlock()
		return
	}
	res := i.app.Tick(context.Background())
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
	if !running {
		err := resultError(res)
		if err == nil {
			err = errors.New("application ended")
		}
		i.r.log.Debug("app exited", "app", i.name, "result", res.String())
		i.release()
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
	i.release()
	return nil
}

// release frees the app and its module once.
func (i *instance) release() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return
	}
	i.stopped = true
	ctx := context.Background()
	_ = i.app.Close(ctx)
	i.mod.Release(ctx)
	i.r.mu.Lock()
	if i.r.apps[i.name] == i {
		delete(i.r.apps, i.name)
	}
	i.r.mu.Unlock()
}

// usages returns the resource usage of the started applications other
// than skip.
func (r *runner) usages(skip string) []profile.Usage {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]profile.Usage, 0, len(r.apps))
	for name, i := range r.apps {
		if name != skip {
			out = append(out, i.usage)
		}
	}
	return out
}

// metrics returns the metrics of every started application.
func (r *runner) metrics(dst []protocol.AppMetrics) []protocol.AppMetrics {
	r.mu.Lock()
	insts := make([]*instance, 0, len(r.apps))
	for _, i := range r.apps {
		insts = append(insts, i)
	}
	r.mu.Unlock()
	for _, i := range insts {
		i.mu.Lock()
		st := i.app.Stats()
		i.mu.Unlock()
		dst = append(dst, protocol.AppMetrics{
			App: i.name, MemoryBytes: st.MemoryBytes, CPUMicros: uint64(st.CPUTime / time.Microsecond),
			Executions: st.Executions, Traps: st.Traps,
		})
	}
	return dst
}

// memory returns the linear memory in use by all applications.
func (r *runner) memory() uint64 {
	var n uint64
	for _, m := range r.metrics(nil) {
		n += m.MemoryBytes
	}
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
