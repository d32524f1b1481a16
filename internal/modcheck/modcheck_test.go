package modcheck

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
)

func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(RunChild(context.Background()))
	}
	os.Exit(m.Run())
}

var defaultLimits = Limits{MemoryLimit: 64 << 10, ExecutionTimeout: time.Second, MaxStackSize: 4 << 10}

func appendLEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func section(id byte, payload []byte) []byte {
	return append(appendLEB([]byte{id}, uint64(len(payload))), payload...)
}

// withCustomSection returns module with a custom section of n bytes
// appended: it changes the module's size and nothing else.
func withCustomSection(module []byte, n int) []byte {
	payload := appendLEB(nil, 3)
	payload = append(payload, "pad"...)
	payload = append(payload, make([]byte, n)...)
	return append(bytes.Clone(module), section(0, payload)...)
}

// manyFunctions returns a valid tick app with n functions of k
// instructions each: cheap to send, costly to compile.
func manyFunctions(n, k int) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, []byte{1, 0x60, 0, 0})...)
	funcs := appendLEB(nil, uint64(n))
	for range n {
		funcs = append(funcs, 0)
	}
	m = append(m, section(3, funcs)...)
	exp := appendLEB(nil, 1)
	exp = appendLEB(exp, uint64(len("wasmbed_tick")))
	exp = append(exp, "wasmbed_tick"...)
	exp = append(exp, 0, 0)
	m = append(m, section(7, exp)...)
	body := []byte{0} // no locals
	for range k {
		body = append(body, 0x41, 0x01, 0x1a) // i32.const 1; drop
	}
	body = append(body, 0x0b)
	code := appendLEB(nil, uint64(n))
	for range n {
		code = appendLEB(code, uint64(len(body)))
		code = append(code, body...)
	}
	return append(m, section(10, code)...)
}

var (
	bothBoards = []string{"hifive1", "esp32"}
	oversized  = withCustomSection(apps.MustLoad(apps.Blinky), 300<<10)
)

func TestFirmwareChecker(t *testing.T) {
	hifive1, err := profile.Lookup("hifive1")
	if err != nil {
		t.Fatal(err)
	}
	if len(oversized) <= int(hifive1.MaxModuleBytes) {
		t.Fatalf("the oversized module is %d bytes, not above the HiFive1's %d", len(oversized), hifive1.MaxModuleBytes)
	}
	bigStack := defaultLimits
	bigStack.MaxStackSize = 16 << 10
	for _, tc := range []struct {
		name        string
		module      []byte
		limits      Limits
		profiles    []string
		wantInvalid string
		wantFit     map[string]string // profile -> reason, "" fits
	}{
		{name: "blinky fits both", module: apps.MustLoad(apps.Blinky), limits: defaultLimits, profiles: bothBoards,
			wantFit: map[string]string{"hifive1": "", "esp32": ""}},
		{name: "module too big for hifive1", module: oversized, limits: defaultLimits, profiles: bothBoards,
			wantFit: map[string]string{"hifive1": ReasonDoesNotFit, "esp32": ""}},
		{name: "stack too big for hifive1 RAM", module: apps.MustLoad(apps.Blinky), limits: bigStack, profiles: bothBoards,
			wantFit: map[string]string{"hifive1": ReasonDoesNotFit, "esp32": ""}},
		{name: "unknown profile", module: apps.MustLoad(apps.Blinky), limits: defaultLimits, profiles: []string{"arduino"},
			wantFit: map[string]string{"arduino": ReasonUnknownProfile}},
		{name: "forbidden import", module: apps.MustLoad(apps.Forbidden), limits: defaultLimits, profiles: bothBoards, wantInvalid: ReasonForbiddenImport},
		{name: "declared memory above the limit", module: apps.MustLoad(apps.BigMem), limits: defaultLimits, profiles: bothBoards, wantInvalid: ReasonExceedsLimits},
		{name: "no entry point", module: []byte("\x00asm\x01\x00\x00\x00"), limits: defaultLimits, profiles: bothBoards, wantInvalid: ReasonBadEntryPoints},
		{name: "not wasm", module: []byte("#!/bin/sh\n"), limits: defaultLimits, profiles: bothBoards, wantInvalid: ReasonInvalidModule},
		{name: "truncated", module: apps.MustLoad(apps.Blinky)[:100], limits: defaultLimits, profiles: bothBoards, wantInvalid: ReasonInvalidModule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := FirmwareChecker{}.Check(t.Context(), Request{App: "app", Module: tc.module, Limits: tc.limits, Profiles: tc.profiles})
			checkVerdict(t, v, tc.wantInvalid, tc.wantFit)
		})
	}
}

func checkVerdict(t *testing.T, v Verdict, wantInvalid string, wantFit map[string]string) {
	t.Helper()
	if wantInvalid != "" {
		if v.Invalid == nil || v.Invalid.Reason != wantInvalid {
			t.Fatalf("got invalid %v, want reason %s", v.Invalid, wantInvalid)
		}
		return
	}
	if v.Invalid != nil {
		t.Fatalf("got invalid %v, want a valid module", v.Invalid)
	}
	for p, want := range wantFit {
		r, ok := v.Profiles[p]
		switch {
		case !ok:
			t.Errorf("%s: no verdict", p)
		case want == "" && r != nil:
			t.Errorf("%s: got %v, want it to fit", p, r)
		case want != "" && (r == nil || r.Reason != want):
			t.Errorf("%s: got %v, want reason %s", p, r, want)
		}
	}
}

// TestSandboxAgreesAndCaches runs checks in child processes: the verdicts are
// the in-process checker's, and a repeated check is answered from the cache.
func TestSandboxAgreesAndCaches(t *testing.T) {
	sb := NewSandbox(SandboxOptions{})
	for _, mod := range [][]byte{apps.MustLoad(apps.Blinky), oversized, apps.MustLoad(apps.Forbidden)} {
		req := Request{App: "app", Module: mod, Limits: defaultLimits, Profiles: bothBoards}
		got, err := sb.Check(t.Context(), req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		want := FirmwareChecker{}.Check(t.Context(), req)
		if (got.Invalid == nil) != (want.Invalid == nil) || got.Invalid != nil && *got.Invalid != *want.Invalid {
			t.Fatalf("child says invalid %v, in-process %v", got.Invalid, want.Invalid)
		}
		for p := range want.Profiles {
			if (got.Profiles[p] == nil) != (want.Profiles[p] == nil) {
				t.Fatalf("%s: child says %v, in-process %v", p, got.Profiles[p], want.Profiles[p])
			}
		}
	}
	runs := sb.Runs()
	if runs != 3 {
		t.Fatalf("got %d child processes for 3 modules, want 3", runs)
	}
	if _, err := sb.Check(t.Context(), Request{App: "app", Module: apps.MustLoad(apps.Blinky), Limits: defaultLimits, Profiles: bothBoards}); err != nil {
		t.Fatal(err)
	}
	if sb.Runs() != runs {
		t.Errorf("a repeated check started a child process")
	}
}

// TestSandboxBudgets: a check that outlives the time budget, or needs more
// memory than the memory budget, refuses the module with the budget's reason.
// The same module within generous budgets is admitted, and a small module
// within the small memory budget too, so the budget is what refused it.
func TestSandboxBudgets(t *testing.T) {
	costly := manyFunctions(3000, 30) // fits an ESP32; about 20 MB to check
	if v := (FirmwareChecker{}).Check(t.Context(), Request{App: "app", Module: costly, Limits: defaultLimits, Profiles: []string{"esp32"}}); v.Invalid != nil || v.Profiles["esp32"] != nil {
		t.Fatalf("the costly module is refused without budgets: %v %v", v.Invalid, v.Profiles["esp32"])
	}
	for _, tc := range []struct {
		name   string
		module []byte
		opts   SandboxOptions
		want   string
	}{
		{"generous", costly, SandboxOptions{Timeout: time.Minute, MemoryBytes: 1 << 30}, ""},
		{"time budget", costly, SandboxOptions{Timeout: 5 * time.Millisecond, MemoryBytes: 1 << 30}, ReasonTimeBudget},
		{"memory budget", costly, SandboxOptions{Timeout: time.Minute, MemoryBytes: 8 << 20}, ReasonMemoryBudget},
		{"small module, small memory budget", apps.MustLoad(apps.Blinky), SandboxOptions{Timeout: time.Minute, MemoryBytes: 8 << 20}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewSandbox(tc.opts).Check(t.Context(), Request{App: "app", Module: tc.module, Limits: defaultLimits, Profiles: []string{"esp32"}})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			switch {
			case tc.want == "" && (v.Invalid != nil || v.Profiles["esp32"] != nil):
				t.Fatalf("got %v %v, want the module admitted on esp32", v.Invalid, v.Profiles["esp32"])
			case tc.want != "" && (v.Invalid == nil || v.Invalid.Reason != tc.want):
				t.Fatalf("got %v, want reason %s", v.Invalid, tc.want)
			}
		})
	}
}

func TestSandboxChildFailures(t *testing.T) {
	req := Request{App: "app", Module: apps.MustLoad(apps.Blinky), Limits: defaultLimits, Profiles: bothBoards}
	v, err := NewSandbox(SandboxOptions{Executable: "/bin/false"}).Check(t.Context(), req)
	if err != nil || v.Invalid == nil || v.Invalid.Reason != ReasonCheckFailed {
		t.Errorf("child exiting 1: got %v, %v; want reason %s", v.Invalid, err, ReasonCheckFailed)
	}
	if _, err := NewSandbox(SandboxOptions{Executable: "/nonexistent/wasmbed"}).Check(t.Context(), req); err == nil {
		t.Error("child that cannot start: got nil error, want one")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := NewSandbox(SandboxOptions{}).Check(ctx, req); err == nil {
		t.Error("cancelled context: got nil error")
	}
}

// BenchmarkSandboxCheck measures one module check in a child process
// (blinky, both boards), the cost of admitting a new application version;
// BenchmarkCheckInProcess the same checks without the child. The child is
// this test binary, or the executable WASMBED_MODCHECK_EXECUTABLE names
// (for example a built wasmbed, whose start-up is what the controller pays).
func BenchmarkSandboxCheck(b *testing.B) {
	req := Request{App: "app", Module: apps.MustLoad(apps.Blinky), Limits: defaultLimits, Profiles: bothBoards}
	exe := os.Getenv("WASMBED_MODCHECK_EXECUTABLE")
	for b.Loop() {
		v, err := NewSandbox(SandboxOptions{Executable: exe}).Check(b.Context(), req)
		if err != nil || v.Invalid != nil {
			b.Fatalf("%v %v", v.Invalid, err)
		}
	}
}

func BenchmarkCheckInProcess(b *testing.B) {
	req := Request{App: "app", Module: apps.MustLoad(apps.Blinky), Limits: defaultLimits, Profiles: bothBoards}
	for b.Loop() {
		if v := (FirmwareChecker{}).Check(b.Context(), req); v.Invalid != nil {
			b.Fatal(v.Invalid)
		}
	}
}
