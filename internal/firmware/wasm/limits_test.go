package wasm

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Each test of a limit asserts which mechanism enforced it
// (Result.Mechanism), so that it fails when that mechanism is switched
// off even if another one (wazero's own stack ceiling, a later deadline)
// would stop the app, and bounds the memory the process holds afterwards
// (not what it allocated).

// heldBytes returns the heap and stack the process holds after a
// collection: what survives an execution, such as an engine stack grown
// by it.
func heldBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// wantResult fails unless res has the outcome, limit, trap and mechanism
// wanted.
func wantResult(t *testing.T, what string, res Result, want Result) {
	t.Helper()
	if res.Outcome != want.Outcome || res.Limit != want.Limit || res.Trap != want.Trap || res.Mechanism != want.Mechanism {
		t.Fatalf("%s: got %v limit=%v trap=%v mechanism=%v (%v), want %v limit=%v trap=%v mechanism=%v",
			what, res.Outcome, res.Limit, res.Trap, res.Mechanism, res.Err, want.Outcome, want.Limit, want.Trap, want.Mechanism)
	}
}

var (
	stackExceeded = Result{Outcome: OutcomeLimitExceeded, Limit: LimitStack, Trap: TrapStackExhausted, Mechanism: MechanismStackAccounting}
	timeExceeded  = Result{Outcome: OutcomeLimitExceeded, Limit: LimitTime, Mechanism: MechanismDeadline}
)

func TestStackLimitIsTheProjectsAccounting(t *testing.T) {
	tests := []struct {
		name  string
		bin   []byte
		limit uint64
		modes []Mode
	}{
		{name: "recursion 64KiB", bin: sample(apps.Recursion), limit: 64 << 10, modes: modes},
		{name: "recursion 4KiB", bin: sample(apps.Recursion), limit: 4 << 10, modes: modes},
		{name: "indirect recursion 64KiB", bin: testdata(t, "indirect"), limit: 64 << 10, modes: modes},
		// Past wazero's 2,000-frame ceiling in interpreter mode: the
		// accounting caps the depth below it and fires first.
		{name: "recursion 16MiB", bin: sample(apps.Recursion), limit: 16 << 20, modes: []Mode{ModeInterpreter}},
	}
	for _, tt := range tests {
		for _, mode := range tt.modes {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				e := newEngine(t, mode)
				a, res := startApp(t, e, newDevice(), "rec", tt.bin, sandbox.Limits{MaxStackSize: tt.limit})
				if !res.OK() {
					t.Fatalf("Start: got %v (%v)", res, res.Err)
				}
				before := heldBytes()
				res = a.Tick(t.Context()) // the first bomb: nothing grown before it
				held := int64(heldBytes()) - int64(before)
				wantResult(t, "Tick", res, stackExceeded)
				// The engine keeps the stack an execution grew; without the
				// accounting the compiler's grows to about 400 MB. The
				// interpreter recurses on the goroutine's stack, about 1.6 KB
				// (3 KB with the race detector) per frame of at least 64
				// accounted bytes, for at most 1,990 frames.
				accounted, perByte := int64(tt.limit), int64(8)
				if mode == ModeInterpreter {
					accounted = min(accounted, interpreterFrameCeiling*int64(a.Module().Info().MinFrameBytes))
					perByte = 64
				}
				if limit := accounted*perByte + 1<<20; held > limit {
					t.Errorf("memory held after the bomb: got %d bytes more, want at most %d", held, limit)
				}
				t.Logf("memory held after the bomb: %+d bytes", held)
				if st := a.Stats(); st.StackExhaustions != 1 {
					t.Errorf("StackExhaustions: got %d, want 1", st.StackExhaustions)
				}
				// The app survives and the accounting starts afresh.
				wantResult(t, "second Tick", a.Tick(t.Context()), stackExceeded)
			})
		}
	}
}

func TestTimeoutStopsOnlyTheLoopingApp(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			d := newDevice()
			loop, res := startApp(t, e, d, "loop", sample(apps.Loop), sandbox.Limits{ExecutionTimeout: 50 * time.Millisecond})
			if !res.OK() {
				t.Fatalf("loop Start: got %v", res)
			}
			blinky, res := startApp(t, e, d, "blinky", sample(apps.Blinky), sandbox.Limits{MaxStackSize: 4096})
			if !res.OK() {
				t.Fatalf("blinky Start: got %v", res)
			}

			var wg sync.WaitGroup
			var blinkyResults []Result
			wg.Go(func() {
				for range 20 {
					blinkyResults = append(blinkyResults, blinky.Tick(t.Context()))
				}
			})
			res = loop.Tick(t.Context())
			wg.Wait()

			wantResult(t, "loop Tick", res, timeExceeded)
			if loop.Running() {
				t.Errorf("loop Running: got true after a timeout, want false")
			}
			if r := loop.Tick(t.Context()); r.Outcome != OutcomeHostError || !errors.Is(r.Err, ErrNotRunning) {
				t.Errorf("Tick after timeout: got %v (%v), want host-error ErrNotRunning", r, r.Err)
			}
			for i, r := range blinkyResults {
				if !r.OK() {
					t.Errorf("blinky tick %d: got %v (%v), want completed", i, r, r.Err)
				}
			}
			if got := d.sim.Toggles(5); got != 20 {
				t.Errorf("blinky toggles: got %d, want 20", got)
			}
			// The timed-out app can be restarted: a fresh instance.
			if r := loop.Start(t.Context()); !r.OK() {
				t.Fatalf("loop restart: got %v", r)
			}
			wantResult(t, "loop Tick after restart", loop.Tick(t.Context()), timeExceeded)
			if st := loop.Stats(); st.Starts != 2 || st.Timeouts != 2 {
				t.Errorf("loop stats: got starts=%d timeouts=%d, want 2 and 2", st.Starts, st.Timeouts)
			}
		})
	}
}

// TestTimeoutWithoutLoops runs a loop-free tree of 2^40 calls: only the
// checks at function entries can stop it.
func TestTimeoutWithoutLoops(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			a, res := startApp(t, e, newDevice(), "tree", testdata(t, "calltree"), sandbox.Limits{ExecutionTimeout: 50 * time.Millisecond})
			if !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			wantResult(t, "Tick", a.Tick(t.Context()), timeExceeded)
		})
	}
}

// TestSleepEndsAtTheDeadline sleeps 10 s at a time on the wall clock
// under a 50 ms limit: each sleep_ms returns ETIMEDOUT at the deadline,
// and the app is stopped.
func TestSleepEndsAtTheDeadline(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			mod, err := e.Compile(t.Context(), testdata(t, "sleeper"), sandbox.Limits{ExecutionTimeout: 50 * time.Millisecond}, Bounds{})
			if err != nil {
				t.Fatal(err)
			}
			defer mod.Release(t.Context())
			a, err := e.NewApp(mod, AppConfig{Name: "sleeper", Host: Host{Clock: hal.SystemClock{}}})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close(t.Context())
			if res := a.Start(t.Context()); !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			inst := a.inst // the instance the timeout closes
			wantResult(t, "Tick", a.Tick(t.Context()), timeExceeded)
			if got := int32(inst.ExportedGlobal("last_sleep").Get()); got != ErrnoTimedOut {
				t.Errorf("sleep_ms returned %d, want ETIMEDOUT (%d)", got, ErrnoTimedOut)
			}
		})
	}
}

// TestCallerCancelStopsExecution cancels the caller's context while the
// guest loops under a long timeout.
func TestCallerCancelStopsExecution(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			a, res := startApp(t, e, newDevice(), "loop", sample(apps.Loop), sandbox.Limits{ExecutionTimeout: time.Hour})
			if !res.OK() {
				t.Fatalf("Start: got %v", res)
			}
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(20*time.Millisecond, cancel)
			wantResult(t, "Tick", a.Tick(ctx), Result{Outcome: OutcomeHostError, Mechanism: MechanismCanceled})
			if a.Running() {
				t.Errorf("Running after cancellation: got true, want false")
			}
		})
	}
}

func TestMemoryGrowPastLimit(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			a, res := startApp(t, e, newDevice(), "memhog", sample(apps.MemHog), sandbox.Limits{MemoryLimit: 4 * PageSize})
			if !res.OK() {
				t.Fatalf("Start: got %v, want completed", res)
			}
			before := heldBytes()
			res = a.Tick(t.Context())
			held := int64(heldBytes()) - int64(before)
			wantResult(t, "Tick", res, Result{Outcome: OutcomeLimitExceeded, Limit: LimitMemory, Mechanism: MechanismMemoryGrow})
			st := a.Stats()
			if st.MemoryBytes != 4*PageSize {
				t.Errorf("memory: got %d bytes, want %d", st.MemoryBytes, 4*PageSize)
			}
			if limit := int64(4*PageSize + 1<<20); held > limit {
				t.Errorf("memory held after growing: got %d bytes more, want at most %d", held, limit)
			}
			if st.MemoryLimitHits != 1 {
				t.Errorf("MemoryLimitHits: got %d, want 1", st.MemoryLimitHits)
			}
			if !a.Running() {
				t.Errorf("Running: got false, want true (a refused grow does not stop the app)")
			}
		})
	}
}

// TestTableGrowthBounded grows a table whose declared maximum is a
// million elements: the bound on table elements stops it.
func TestTableGrowthBounded(t *testing.T) {
	bounds := Bounds{MaxTableElements: 4096}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			mod, err := e.Compile(t.Context(), testdata(t, "tablegrow"), sandbox.Limits{}, bounds)
			if err != nil {
				t.Fatal(err)
			}
			defer mod.Release(t.Context())
			if got := mod.Info().TableBytes(); got != 4096*tableElementBytes {
				t.Errorf("TableBytes: got %d, want %d (the bound: the table grows)", got, 4096*tableElementBytes)
			}
			a, _ := e.NewApp(mod, AppConfig{Name: "tables"})
			defer a.Close(t.Context())
			if res := a.Start(t.Context()); !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			before := heldBytes()
			res := a.Tick(t.Context())
			held := int64(heldBytes()) - int64(before)
			wantResult(t, "Tick", res, Result{Outcome: OutcomeLimitExceeded, Limit: LimitMemory, Mechanism: MechanismTableGrow})
			size, err := a.inst.ExportedFunction("size").Call(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if got := size[0]; got > 4096 || got < 4096-256 {
				t.Errorf("table size: got %d, want the largest multiple of 256 (plus 1) within 4096", got)
			}
			if limit := int64(4096*tableElementBytes + 1<<20); held > limit {
				t.Errorf("memory held after growing: got %d bytes more, want at most %d", held, limit)
			}
		})
	}
}
