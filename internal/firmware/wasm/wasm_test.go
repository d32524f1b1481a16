package wasm

import (
	"bytes"
	"errors"
	"hash/crc32"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

func TestCompileRefusals(t *testing.T) {
	huge := make([]byte, DefaultMaxModuleSize+1)
	copy(huge, sample(apps.Blinky))
	tests := []struct {
		name    string
		bin     []byte
		lim     sandbox.Limits
		want    error
		check   func(t *testing.T, err error)
		wantMsg string
	}{
		{name: "memory declared above limit", bin: sample(apps.BigMem), lim: sandbox.Limits{MemoryLimit: 64 * 1024}, want: ErrLimit,
			check: func(t *testing.T, err error) {
				var le *LimitError
				if !errors.As(err, &le) || le.Kind != LimitMemory || le.Requested != 64*PageSize || le.Limit != PageSize {
					t.Errorf("got %#v, want LimitError{memory, 4194304, 65536}", le)
				}
			}},
		{name: "forbidden import", bin: sample(apps.Forbidden), want: ErrForbiddenImport,
			wantMsg: `"wasi_snapshot_preview1"."fd_write"`,
			check: func(t *testing.T, err error) {
				var ie *ImportError
				if !errors.As(err, &ie) || ie.Module != "wasi_snapshot_preview1" || ie.Name != "fd_write" {
					t.Errorf("got %#v, want ImportError naming wasi_snapshot_preview1.fd_write", ie)
				}
			}},
		{name: "unknown host function", bin: testdata(t, "unknown_host_func"), want: ErrForbiddenImport, wantMsg: `"wasmbed"."reboot"`},
		{name: "host signature mismatch", bin: testdata(t, "host_sig_mismatch"), want: ErrForbiddenImport, wantMsg: "(i32)->i32 does not match host api (i32,i32)->i32"},
		{name: "imported memory", bin: testdata(t, "imported_memory"), want: ErrImportedMemory, wantMsg: `"env"."memory"`},
		{name: "start section", bin: testdata(t, "start_section"), want: ErrStartSection},
		{name: "no entry point", bin: testdata(t, "no_entry"), want: ErrNoEntryPoint},
		{name: "entry point signature", bin: testdata(t, "bad_entry_sig"), want: ErrBadExport, wantMsg: "(i32)->()"},
		{name: "reserved export", bin: testdata(t, "reserved_export"), want: ErrBadExport, wantMsg: "__wasmbed_sp"},
		{name: "simd", bin: testdata(t, "simd"), want: ErrUnsupportedFeature, wantMsg: "SIMD"},
		{name: "frame above stack limit", bin: testdata(t, "big_frame"), lim: sandbox.Limits{MaxStackSize: 256}, want: ErrLimit,
			check: func(t *testing.T, err error) {
				var le *LimitError
				if !errors.As(err, &le) || le.Kind != LimitStack || le.Limit != 256 || le.Requested <= 512 {
					t.Errorf("got %#v, want LimitError{stack, >512, 256}", le)
				}
			}},
		{name: "abi version 2", bin: append(bytes.Clone(sample(apps.Blinky)[:len(sample(apps.Blinky))-1]), 2), want: ErrUnsupportedABI},
		{name: "not wasm", bin: []byte("#!/bin/sh\nrm -rf /\n"), want: ErrInvalidModule},
		{name: "truncated", bin: sample(apps.Blinky)[:100], want: ErrInvalidModule},
		{name: "too large", bin: huge, want: ErrModuleTooLarge},
	}
	for _, mode := range modes {
		e := newEngine(t, mode)
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.name, func(t *testing.T) {
				mod, err := e.Compile(t.Context(), tt.bin, tt.lim, Bounds{})
				if err == nil {
					mod.Release(t.Context())
					t.Fatalf("Compile: got nil error, want %v", tt.want)
				}
				if !errors.Is(err, tt.want) {
					t.Fatalf("Compile: got %v, want errors.Is %v", err, tt.want)
				}
				if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not mention %q", err, tt.wantMsg)
				}
				if tt.check != nil {
					tt.check(t, err)
				}
			})
		}
		if n := e.CachedModules(); n != 0 {
			t.Errorf("%s: got %d cached modules after refusals, want 0", mode, n)
		}
	}
}

func TestMultiValueAndBulkMemory(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			a, res := startApp(t, e, newDevice(), "mv", testdata(t, "multivalue"), sandbox.Limits{MemoryLimit: 8 * PageSize})
			if !res.OK() {
				t.Fatalf("Start: got %v", res)
			}
			// The module's own maximum (2 pages) is below the limit: its
			// second grow fails inside the app, as it expects.
			res = a.Tick(t.Context())
			if res.Outcome != OutcomeLimitExceeded || res.Limit != LimitMemory || res.Trap != TrapNone {
				t.Fatalf("Tick: got %v (%v), want limit-exceeded(memory) without trap", res, res.Err)
			}
		})
	}
}

func TestHostSurvivesMisbehavingApps(t *testing.T) {
	tests := []struct {
		app     string
		lim     sandbox.Limits
		outcome Outcome
		trap    Trap
		limit   LimitKind
	}{
		{app: apps.Loop, lim: sandbox.Limits{ExecutionTimeout: 20 * time.Millisecond}, outcome: OutcomeLimitExceeded, limit: LimitTime},
		{app: apps.MemHog, lim: sandbox.Limits{MemoryLimit: 3 * PageSize}, outcome: OutcomeLimitExceeded, limit: LimitMemory},
		{app: apps.Recursion, lim: sandbox.Limits{MaxStackSize: 8192}, outcome: OutcomeLimitExceeded, limit: LimitStack, trap: TrapStackExhausted},
		{app: apps.DivZero, outcome: OutcomeTrapped, trap: TrapDivideByZero},
		{app: apps.BadPtr, outcome: OutcomeCompleted},
	}
	for _, mode := range modes {
		e := newEngine(t, mode)
		d := newDevice()
		for _, tt := range tests {
			t.Run(mode.String()+"/"+tt.app, func(t *testing.T) {
				a, res := startApp(t, e, d, tt.app, sample(tt.app), tt.lim)
				if !res.OK() {
					t.Fatalf("Start: got %v (%v)", res, res.Err)
				}
				for i := range 3 {
					if i > 0 && !a.Running() {
						a.Start(t.Context())
					}
					res = a.Tick(t.Context())
					if res.Outcome != tt.outcome || res.Trap != tt.trap || res.Limit != tt.limit {
						t.Fatalf("Tick %d: got %v trap=%v limit=%v (%v), want %v trap=%v limit=%v",
							i, res.Outcome, res.Trap, res.Limit, res.Err, tt.outcome, tt.trap, tt.limit)
					}
					if res.OK() != (res.Err == nil) {
						t.Errorf("Tick %d: OK()=%v with Err=%v", i, res.OK(), res.Err)
					}
				}
			})
		}
		// After all of them, a well-behaved app still runs on the engine.
		t.Run(mode.String()+"/blinky after", func(t *testing.T) {
			a, res := startApp(t, e, d, "blinky", sample(apps.Blinky), sandbox.Limits{})
			if !res.OK() {
				t.Fatalf("Start: got %v", res)
			}
			if res := a.Tick(t.Context()); !res.OK() {
				t.Fatalf("Tick: got %v (%v)", res, res.Err)
			}
		})
	}
}

func TestBlinkyTogglesPin(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			d := newDevice()
			d.rec.config["pin"] = "7"
			d.rec.config["period_ms"] = "250"
			t0 := d.clock.Now()
			a, res := startApp(t, e, d, "blinky", sample(apps.Blinky), sandbox.Limits{MaxStackSize: 2048})
			if !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			if got := a.TickInterval(); got != 250*time.Millisecond {
				t.Fatalf("TickInterval: got %v, want 250ms", got)
			}
			if got := d.sim.PinMode(7); got != hal.PinOutput {
				t.Fatalf("pin 7 mode: got %v, want output", got)
			}
			for range 6 {
				d.clock.Advance(a.TickInterval())
				if res := a.Tick(t.Context()); !res.OK() {
					t.Fatalf("Tick: got %v (%v)", res, res.Err)
				}
			}
			evs := d.sim.PinEvents()
			if len(evs) != 6 {
				t.Fatalf("pin events: got %d, want 6: %v", len(evs), evs)
			}
			for i, ev := range evs {
				want := hal.PinEvent{At: t0.Add(time.Duration(i+1) * 250 * time.Millisecond), Pin: 7, High: i%2 == 0}
				if ev != want {
					t.Errorf("event %d: got %+v, want %+v", i, ev, want)
				}
			}
			if st := a.Stats(); st.Executions != 7 || st.HostCalls < 6+4 {
				t.Errorf("stats: got executions=%d hostCalls=%d, want 7 and >= 10", st.Executions, st.HostCalls)
			}
		})
	}
}

func TestSensorPublishesMetric(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			d := newDevice()
			ts, err := d.sim.AddTempSensor(0, 0x48, 21.5)
			if err != nil {
				t.Fatal(err)
			}
			a, res := startApp(t, e, d, "sensor", sample(apps.Sensor), sandbox.Limits{})
			if !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			if res := a.Tick(t.Context()); !res.OK() {
				t.Fatalf("Tick: got %v (%v)", res, res.Err)
			}
			ts.Set(-3.25)
			if res := a.Tick(t.Context()); !res.OK() {
				t.Fatalf("Tick: got %v (%v)", res, res.Err)
			}
			want := []metric{{"sensor", "temperature_celsius", 21.5}, {"sensor", "temperature_celsius", -3.25}}
			if len(d.rec.metrics) != len(want) {
				t.Fatalf("metrics: got %v, want %v", d.rec.metrics, want)
			}
			for i := range want {
				if d.rec.metrics[i] != want[i] {
					t.Errorf("metric %d: got %v, want %v", i, d.rec.metrics[i], want[i])
				}
			}
			// 21.5 °C = 344/16 → TMP102 register 0x1580.
			if len(d.rec.messages) != 1 || d.rec.messages[0].topic != "sensor/raw" || !bytes.Equal(d.rec.messages[0].payload, []byte{0x15, 0x80}) {
				t.Errorf("messages: got %+v, want one sensor/raw [0x15 0x80]", d.rec.messages)
			}
		})
	}
}

// computeReference is compute.c in Go.
func computeReference() uint32 {
	seed := uint32(2463534242)
	next := func() uint32 {
		seed ^= seed << 13
		seed ^= seed >> 17
		seed ^= seed << 5
		return seed
	}
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(next())
	}
	var fib func(n uint32) uint32
	fib = func(n uint32) uint32 {
		if n < 2 {
			return n
		}
		return fib(n-1) + fib(n-2)
	}
	return crc32.ChecksumIEEE(buf) ^ fib(24) ^ next()
}

func TestComputeMatchesReference(t *testing.T) {
	want := float64(computeReference())
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			d := newDevice()
			a, res := startApp(t, e, d, "compute", sample(apps.Compute), sandbox.Limits{ExecutionTimeout: 10 * time.Second})
			if !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			if res := a.Tick(t.Context()); !res.OK() {
				t.Fatalf("Tick: got %v (%v)", res, res.Err)
			}
			if len(d.rec.metrics) != 1 || d.rec.metrics[0].value != want {
				t.Fatalf("metrics: got %v, want compute_checksum=%v", d.rec.metrics, want)
			}
		})
	}
}

func TestRunOnceApp(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, mode)
			d := newDevice()
			a, res := startApp(t, e, d, "once", testdata(t, "run_once"), sandbox.Limits{})
			if !res.OK() {
				t.Fatalf("Start: got %v (%v)", res, res.Err)
			}
			if a.Kind() != AppRunOnce || a.Running() {
				t.Errorf("got kind %v running %v, want run-once, not running", a.Kind(), a.Running())
			}
			// sleep_ms advanced the injected clock by exactly 250 ms.
			if len(d.rec.metrics) != 1 || d.rec.metrics[0] != (metric{"once", "elapsed_ms", 250}) {
				t.Errorf("metrics: got %v, want elapsed_ms=250", d.rec.metrics)
			}
		})
	}
}

func TestCompileCache(t *testing.T) {
	e := newEngine(t, ModeInterpreter)
	bin := sample(apps.Blinky)
	m1, err := e.Compile(t.Context(), bin, sandbox.Limits{}, Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := e.Compile(t.Context(), bytes.Clone(bin), sandbox.Limits{MaxStackSize: 1024, ExecutionTimeout: time.Second}, Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.CachedModules(); got != 1 {
		t.Errorf("same binary and memory limit: got %d cached modules, want 1", got)
	}
	if m1.c != m2.c {
		t.Errorf("same binary: got two compilations, want one shared")
	}
	if m2.Limits().MaxStackSize != 1024 {
		t.Errorf("handle limits: got %+v, want MaxStackSize 1024", m2.Limits())
	}
	m3, err := e.Compile(t.Context(), bin, sandbox.Limits{MemoryLimit: 2 * PageSize}, Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.CachedModules(); got != 2 {
		t.Errorf("other memory limit: got %d cached modules, want 2", got)
	}
	m1.Release(t.Context())
	m1.Release(t.Context()) // idempotent
	if got := e.CachedModules(); got != 2 {
		t.Errorf("after one release: got %d cached modules, want 2", got)
	}
	m2.Release(t.Context())
	m3.Release(t.Context())
	if got := e.CachedModules(); got != 0 {
		t.Errorf("after all releases: got %d cached modules, want 0", got)
	}
	a, err := e.NewApp(m1, AppConfig{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if res := a.Start(t.Context()); res.Outcome != OutcomeHostError || !errors.Is(res.Err, ErrClosed) {
		t.Errorf("Start on released module: got %v (%v), want host-error ErrClosed", res, res.Err)
	}
}

func TestInspect(t *testing.T) {
	tests := []struct {
		app      string
		kind     AppKind
		init     bool
		grow     bool
		abi      uint32
		heapBase bool
	}{
		{app: apps.Blinky, kind: AppTick, init: true, abi: 1, heapBase: true},
		{app: apps.Sensor, kind: AppTick, init: true, abi: 1, heapBase: true},
		{app: apps.MemHog, kind: AppTick, grow: true},
		{app: apps.Loop, kind: AppTick},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			info, err := Inspect(sample(tt.app), Bounds{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Kind != tt.kind || info.HasInit != tt.init || info.UsesMemoryGrow != tt.grow || info.ABIVersion != tt.abi {
				t.Errorf("got kind=%v init=%v grow=%v abi=%d, want %v %v %v %d", info.Kind, info.HasInit, info.UsesMemoryGrow, info.ABIVersion, tt.kind, tt.init, tt.grow, tt.abi)
			}
			if fp := info.MemoryFootprint(); tt.heapBase && (fp == 0 || fp >= PageSize) {
				t.Errorf("footprint: got %d, want below one page (heap base %d)", fp, info.HeapBase)
			} else if !tt.heapBase && fp != PageSize {
				t.Errorf("footprint: got %d, want %d", fp, PageSize)
			}
			if info.MaxFrameBytes == 0 {
				t.Errorf("MaxFrameBytes: got 0, want > 0")
			}
		})
	}
}

func TestHostErrnoWithoutPeripherals(t *testing.T) {
	// A device with no board, publisher or config: host calls answer
	// ENOSYS and the app keeps running (sensor logs and returns).
	e := newEngine(t, ModeInterpreter)
	mod, err := e.Compile(t.Context(), sample(apps.Sensor), sandbox.Limits{}, Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Release(t.Context())
	a, _ := e.NewApp(mod, AppConfig{Name: "bare"})
	defer a.Close(t.Context())
	if res := a.Start(t.Context()); !res.OK() {
		t.Fatalf("Start: got %v (%v)", res, res.Err)
	}
	if res := a.Tick(t.Context()); !res.OK() {
		t.Fatalf("Tick: got %v (%v)", res, res.Err)
	}
	if got := a.TickInterval(); got != time.Second {
		t.Errorf("TickInterval: got %v, want default 1s (config_get answered ENOSYS)", got)
	}
}

// TestConcurrentDevices hammers one engine from many goroutines, as the
// simulator does: concurrent compiles of the same and different modules
// (sharing compilations), instantiation, ticks and releases.
func TestConcurrentDevices(t *testing.T) {
	e := newEngine(t, ModeAuto)
	bins := [][]byte{sample(apps.Blinky), sample(apps.Sensor), sample(apps.Blinky)}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 16 {
		wg.Go(func() {
			d := newDevice()
			if _, err := d.sim.AddTempSensor(0, 0x48, 20); err != nil {
				errs <- err
				return
			}
			bin := bins[g%len(bins)]
			mod, err := e.Compile(t.Context(), bin, sandbox.Limits{MemoryLimit: uint64(1+g%2) * PageSize}, Bounds{})
			if err != nil {
				errs <- err
				return
			}
			defer mod.Release(t.Context())
			a, err := e.NewApp(mod, AppConfig{Name: "a", Host: d.host()})
			if err != nil {
				errs <- err
				return
			}
			defer a.Close(t.Context())
			if res := a.Start(t.Context()); !res.OK() {
				errs <- res.Err
				return
			}
			for range 20 {
				if res := a.Tick(t.Context()); !res.OK() {
					errs <- res.Err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := e.CachedModules(); n != 0 {
		t.Errorf("cached modules after every release: got %d, want 0", n)
	}
}
