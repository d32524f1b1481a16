package appmgr

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// fakeRunner starts "modules" without running code: a version listed in
// fail fails to start with the given error.
type fakeRunner struct {
	mu      sync.Mutex
	fail    map[string]error
	running map[string]string // app -> version
	exits   map[string]func(error)
	starts  int
	onStart func(RunSpec) // called at every start, outside the lock
}

func newRunner() *fakeRunner {
	return &fakeRunner{fail: map[string]error{}, running: map[string]string{}, exits: map[string]func(error){}}
}

func (r *fakeRunner) Start(_ context.Context, spec RunSpec, exit func(error)) (Instance, error) {
	if r.onStart != nil {
		r.onStart(spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	if !strings.HasPrefix(string(spec.Module), "\x00asm"+spec.Name+"@"+spec.Version) {
		return nil, fmt.Errorf("module is not %s@%s: %w", spec.Name, spec.Version, ErrInvalidModule)
	}
	if err := r.fail[spec.Version]; err != nil {
		return nil, err
	}
	if _, ok := r.running[spec.Name]; ok {
		return nil, fmt.Errorf("%s already running", spec.Name)
	}
	r.running[spec.Name] = spec.Version
	r.exits[spec.Name] = exit
	return &fakeInstance{r: r, name: spec.Name}, nil
}

// crash makes a running app end on its own.
func (r *fakeRunner) crash(name string, err error) {
	r.mu.Lock()
	exit := r.exits[name]
	delete(r.running, name)
	delete(r.exits, name)
	r.mu.Unlock()
	exit(err)
}

func (r *fakeRunner) version(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[name]
}

type fakeInstance struct {
	r    *fakeRunner
	name string
}

func (i *fakeInstance) Stop(context.Context) error {
	i.r.mu.Lock()
	defer i.r.mu.Unlock()
	delete(i.r.running, i.name)
	delete(i.r.exits, i.name)
	return nil
}

var testGeo = flash.Geometry{PageSize: 256, BlockSize: 1024, Blocks: 48}

func module(name, version string, size int) []byte {
	m := []byte("\x00asm" + name + "@" + version + ";")
	for len(m) < size {
		m = append(m, byte(len(m)*13+len(version)))
	}
	return m
}

func req(name, version string, seq uint64, size int, start bool) Request {
	mod := module(name, version, size)
	return Request{
		Name: name, Version: version, Sequence: seq, Module: mod, SHA256: sha256.Sum256(mod),
		Limits: sandbox.Limits{MemoryLimit: 32 << 10, MaxStackSize: 8 << 10}, Start: start,
	}
}

type device struct {
	chip   flash.Chip
	store  *flash.Store
	runner *fakeRunner
	mgr    *Manager
	events []Event
}

func boot(t testing.TB, chip flash.Chip) *device {
	t.Helper()
	s, err := flash.Mount(chip, flash.Options{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	d := &device{chip: chip, store: s, runner: newRunner()}
	d.mgr, err = Open(context.Background(), Config{
		Store: s, Runner: d.runner,
		Observer: func(e Event) { d.events = append(d.events, e) },
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return d
}

func newDevice(t testing.TB) *device {
	t.Helper()
	chip, err := flash.NewMem(testGeo)
	if err != nil {
		t.Fatal(err)
	}
	return boot(t, chip)
}

func (d *device) kinds() []string {
	var k []string
	for _, e := range d.events {
		k = append(k, fmt.Sprintf("%s:%s@%s", e.Kind, e.Status.State, e.Status.Version))
	}
	d.events = nil
	return k
}

func TestLifecycle(t *testing.T) {
	ctx := t.Context()
	d := newDevice(t)
	steps := []struct {
		name       string
		do         func() (Status, error)
		wantState  protocol.AppState
		wantVer    string
		wantRun    string // version the runner runs, "" for none
		wantEvents []string
	}{
		{"install and start", func() (Status, error) { return d.mgr.Install(ctx, req("blink", "v1", 1, 300, true)) },
			protocol.StateRunning, "v1", "v1", []string{"started:running@v1"}},
		{"stop", func() (Status, error) { return d.mgr.Stop(ctx, "blink") },
			protocol.StateStopped, "v1", "", []string{"stopped:stopped@v1"}},
		{"start", func() (Status, error) { return d.mgr.Start(ctx, "blink") },
			protocol.StateRunning, "v1", "v1", []string{"started:running@v1"}},
		{"start again is a no-op", func() (Status, error) { return d.mgr.Start(ctx, "blink") },
			protocol.StateRunning, "v1", "v1", nil},
		{"update", func() (Status, error) { return d.mgr.Install(ctx, req("blink", "v2", 2, 2500, true)) },
			protocol.StateRunning, "v2", "v2", []string{"started:running@v2"}},
		{"redeliver same version", func() (Status, error) { return d.mgr.Install(ctx, req("blink", "v2", 2, 2500, true)) },
			protocol.StateRunning, "v2", "v2", nil},
		{"update without start", func() (Status, error) { return d.mgr.Install(ctx, req("blink", "v3", 3, 100, false)) },
			protocol.StateInstalled, "v3", "", []string{"installed:installed@v3"}},
		{"remove", func() (Status, error) { return d.mgr.Remove(ctx, "blink") },
			protocol.StateRemoved, "v3", "", []string{"removed:removed@v3"}},
	}
	for _, st := range steps {
		got, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got.State != st.wantState || got.Version != st.wantVer {
			t.Fatalf("%s: got %s@%s, want %s@%s", st.name, got.State, got.Version, st.wantState, st.wantVer)
		}
		if v := d.runner.version("blink"); v != st.wantRun {
			t.Fatalf("%s: runner runs %q, want %q", st.name, v, st.wantRun)
		}
		if ev := d.kinds(); !slices.Equal(ev, st.wantEvents) {
			t.Fatalf("%s: events %v, want %v", st.name, ev, st.wantEvents)
		}
		checkInvariants(t, d.store, nil)
	}
	if keys := d.store.Keys(""); len(keys) != 0 {
		t.Fatalf("after remove flash holds %v, want nothing", keys)
	}
}

func TestPersistsAcrossReboot(t *testing.T) {
	ctx := t.Context()
	d := newDevice(t)
	mustInstall(t, d, req("a", "v1", 1, 500, true))
	mustInstall(t, d, req("b", "v1", 2, 500, true))
	mustInstall(t, d, req("c", "v1", 3, 500, false))
	if _, err := d.mgr.Stop(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := d.mgr.Configure("a", 1, map[string]string{"period": "10"}); err != nil {
		t.Fatal(err)
	}
	d2 := boot(t, d.chip)
	want := map[string]string{"a": "v1", "b": "", "c": ""}
	for app, v := range want {
		if got := d2.runner.version(app); got != v {
			t.Errorf("app %s: runner runs %q after reboot, want %q", app, got, v)
		}
	}
	if v, ok := d2.mgr.Lookup("a", "period"); !ok || v != "10" {
		t.Errorf("config after reboot: got %q %v, want 10", v, ok)
	}
	if err := d2.mgr.Configure("a", 1, map[string]string{"period": "99"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := d2.mgr.Lookup("a", "period"); v != "10" {
		t.Errorf("stale generation applied: got %q, want 10", v)
	}
	sts := d2.mgr.Statuses(nil)
	if len(sts) != 3 || sts[0].Name != "a" || sts[0].State != protocol.StateRunning || !sts[0].Run || sts[1].Run {
		t.Fatalf("statuses after reboot: %+v", sts)
	}
}

func mustInstall(t testing.TB, d *device, r Request) Status {
	t.Helper()
	st, err := d.mgr.Install(context.Background(), r)
	if err != nil {
		t.Fatalf("install %s@%s: %v", r.Name, r.Version, err)
	}
	return st
}

func TestUpdateFallback(t *testing.T) {
	tests := []struct {
		name      string
		cause     error
		wantState protocol.AppState
	}{
		{"trap", &TrapError{Reason: "unreachable"}, protocol.StateTrapped},
		{"limit", &LimitError{Resource: protocol.ResourceMemory, Detail: "grow"}, protocol.StateLimitExceeded},
		{"invalid", fmt.Errorf("compile: %w", ErrInvalidModule), protocol.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t)
			mustInstall(t, d, req("app", "v1", 1, 1500, true))
			d.kinds()
			d.runner.fail["v2"] = tt.cause
			st, err := d.mgr.Install(t.Context(), req("app", "v2", 2, 1800, true))
			var se *StartError
			if !errors.As(err, &se) || se.Fallback == nil {
				t.Fatalf("got %v, want *StartError with fallback", err)
			}
			if st.State != tt.wantState || st.Version != "v2" || se.Failed.State != tt.wantState {
				t.Fatalf("failed status %s@%s, want %s@v2", st.State, st.Version, tt.wantState)
			}
			if se.Fallback.Version != "v1" || se.Fallback.State != protocol.StateRunning {
				t.Fatalf("fallback %s@%s, want running@v1", se.Fallback.State, se.Fallback.Version)
			}
			if v := d.runner.version("app"); v != "v1" {
				t.Fatalf("runner runs %q, want v1", v)
			}
			want := []string{fmt.Sprintf("failed:%s@v2", tt.wantState), "fell back:running@v1"}
			if ev := d.kinds(); !slices.Equal(ev, want) {
				t.Fatalf("events %v, want %v", ev, want)
			}
			checkInvariants(t, d.store, map[string][]string{"app": {"v1"}})
			if cur, _ := d.mgr.Status("app"); cur.Version != "v1" || cur.State != protocol.StateRunning {
				t.Fatalf("status %s@%s, want running@v1", cur.State, cur.Version)
			}
			d2 := boot(t, d.chip)
			if v := d2.runner.version("app"); v != "v1" {
				t.Fatalf("after reboot runner runs %q, want v1", v)
			}
		})
	}
	t.Run("first install fails", func(t *testing.T) {
		d := newDevice(t)
		d.runner.fail["v1"] = &TrapError{Reason: "boom"}
		st, err := d.mgr.Install(t.Context(), req("app", "v1", 1, 100, true))
		var se *StartError
		if !errors.As(err, &se) || se.Fallback != nil || st.State != protocol.StateTrapped {
			t.Fatalf("got %v, %s, want *StartError without fallback, trapped", err, st.State)
		}
		checkInvariants(t, d.store, map[string][]string{"app": {"v1"}})
		delete(d.runner.fail, "v1")
		if st, err := d.mgr.Start(t.Context(), "app"); err != nil || st.State != protocol.StateRunning {
			t.Fatalf("retry start: got %s, %v, want running", st.State, err)
		}
	})
	t.Run("stopped app falls back stopped", func(t *testing.T) {
		d := newDevice(t)
		mustInstall(t, d, req("app", "v1", 1, 100, true))
		if _, err := d.mgr.Stop(t.Context(), "app"); err != nil {
			t.Fatal(err)
		}
		d.runner.fail["v2"] = &TrapError{Reason: "boom"}
		_, err := d.mgr.Install(t.Context(), req("app", "v2", 2, 100, true))
		var se *StartError
		if !errors.As(err, &se) || se.Fallback == nil || se.Fallback.Run || d.runner.version("app") != "" {
			t.Fatalf("got %v, want fallback to stopped v1", err)
		}
	})
}

func TestRuntimeExit(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		state   protocol.AppState
		res     protocol.Resource
		message string
	}{
		{"trap", &TrapError{Reason: "integer divide by zero"}, protocol.StateTrapped, 0, "integer divide by zero"},
		{"fuel", &LimitError{Resource: protocol.ResourceFuel, Detail: "budget"}, protocol.StateLimitExceeded, protocol.ResourceFuel, ""},
		{"other", errors.New("host failure"), protocol.StateFailed, 0, "host failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDevice(t)
			mustInstall(t, d, req("app", "v1", 1, 100, true))
			d.kinds()
			d.runner.crash("app", tt.err)
			st, _ := d.mgr.Status("app")
			if st.State != tt.state || st.Resource != tt.res || (tt.message != "" && st.Message != tt.message) {
				t.Fatalf("got %s/%s/%q, want %s/%s/%q", st.State, st.Resource, st.Message, tt.state, tt.res, tt.message)
			}
			if ev := d.kinds(); len(ev) != 1 || !strings.HasPrefix(ev[0], "exited:") {
				t.Fatalf("events %v, want one exited", ev)
			}
			if d.mgr.Running() != 0 {
				t.Fatal("app still counted as running")
			}
			if st.AppStatus().State != tt.state {
				t.Fatal("wire status differs")
			}
			// Restart works after an exit.
			if st, err := d.mgr.Start(t.Context(), "app"); err != nil || st.State != protocol.StateRunning {
				t.Fatalf("restart: %s, %v", st.State, err)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	setup := func(t *testing.T) *device {
		chip, _ := flash.NewMem(testGeo)
		d := boot(t, chip)
		mustInstall(t, d, req("a", "v1", 5, 2000, true))
		return d
	}
	badHash := req("b", "v1", 6, 100, true)
	badHash.Module = append(badHash.Module, 'x')
	tests := []struct {
		name string
		do   func(t *testing.T, d *device) error
		want Refusal
	}{
		{"empty name", func(t *testing.T, d *device) error {
			_, err := d.mgr.Install(t.Context(), req("", "v1", 6, 10, true))
			return err
		}, RefusedName},
		{"long name", func(t *testing.T, d *device) error {
			_, err := d.mgr.Install(t.Context(), req(strings.Repeat("n", protocol.MaxNameLen+1), "v1", 6, 10, true))
			return err
		}, RefusedName},
		{"hash", func(t *testing.T, d *device) error { _, err := d.mgr.Install(t.Context(), badHash); return err }, RefusedHash},
		{"flash", func(t *testing.T, d *device) error {
			_, err := d.mgr.Install(t.Context(), req("b", "v1", 6, 40<<10, true))
			return err
		}, RefusedFlash},
		// 26,500 bytes fit the empty partition (27,990), not next to the
		// 2,000 of the installed version (25,878).
		{"update needs both slots", func(t *testing.T, d *device) error {
			_, err := d.mgr.Install(t.Context(), req("a", "v2", 6, 26500, true))
			return err
		}, RefusedFlash},
		{"older", func(t *testing.T, d *device) error {
			_, err := d.mgr.Install(t.Context(), req("a", "v0", 4, 100, true))
			return err
		}, RefusedOlder},
		{"start missing", func(t *testing.T, d *device) error { _, err := d.mgr.Start(t.Context(), "zz"); return err }, RefusedNotInstalled},
		{"stop missing", func(t *testing.T, d *device) error { _, err := d.mgr.Stop(t.Context(), "zz"); return err }, RefusedNotInstalled},
		{"remove missing", func(t *testing.T, d *device) error { _, err := d.mgr.Remove(t.Context(), "zz"); return err }, RefusedNotInstalled},
		{"configure missing", func(_ *testing.T, d *device) error { return d.mgr.Configure("zz", 1, nil) }, RefusedNotInstalled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := setup(t)
			before := d.store.Keys("")
			err := tt.do(t, d)
			var re *RefusalError
			if !errors.As(err, &re) || re.Reason != tt.want {
				t.Fatalf("got %v, want refusal %s", err, tt.want)
			}
			if n := d.mgr.Refusals(tt.want); n != 1 {
				t.Fatalf("refusal counter %d, want 1", n)
			}
			if re.Reason.Reason() == protocol.ReasonInternal {
				t.Fatalf("refusal %s maps to internal", re.Reason)
			}
			if tt.name != "too many apps" && !slices.Equal(d.store.Keys(""), before) {
				t.Fatalf("refusal changed flash: %v -> %v", before, d.store.Keys(""))
			}
			if v := d.runner.version("a"); v != "v1" {
				t.Fatalf("refusal disturbed running app: runs %q", v)
			}
		})
	}
}

func TestRecoveryFromDamage(t *testing.T) {
	t.Run("damaged record", func(t *testing.T) {
		d := newDevice(t)
		mustInstall(t, d, req("a", "v1", 1, 100, true))
		mustInstall(t, d, req("b", "v1", 2, 100, true))
		if err := d.store.Put(metaKey("a"), []byte{0xff, 0x00}); err != nil {
			t.Fatal(err)
		}
		d2 := boot(t, d.chip)
		if _, ok := d2.mgr.Status("a"); ok {
			t.Fatal("damaged app still listed")
		}
		if ev := d2.kinds(); !slices.Contains(ev, "recovered:removed@") {
			t.Fatalf("events %v, want a recovered event", ev)
		}
		checkInvariants(t, d2.store, map[string][]string{"b": {"v1"}})
	})
	t.Run("module digest mismatch", func(t *testing.T) {
		d := newDevice(t)
		mustInstall(t, d, req("a", "v1", 1, 100, true))
		if err := d.store.Put(slotKey(0, "a"), module("a", "v1", 101)); err != nil {
			t.Fatal(err)
		}
		d2 := boot(t, d.chip)
		st, _ := d2.mgr.Status("a")
		if st.State != protocol.StateFailed || d2.runner.version("a") != "" {
			t.Fatalf("got %s, want failed and not running", st.State)
		}
	})
}

// checkInvariants asserts what must hold on flash after any sequence of
// operations and power cuts: every application record is settled (no slot
// on trial), only its active slot holds a module, that module matches its
// digest, no module or configuration is orphaned, and, when allowed is not
// nil, every application present runs one of the allowed versions.
func checkInvariants(t testing.TB, s *flash.Store, allowed map[string][]string) {
	t.Helper()
	apps := map[string]bool{}
	for _, key := range s.Keys(metaPrefix) {
		name := key[len(metaPrefix):]
		apps[name] = true
		raw, err := s.Get(key)
		if err != nil {
			t.Fatalf("app %s: read record: %v", name, err)
		}
		rec, err := decodeRecord(raw)
		if err != nil {
			t.Fatalf("app %s: %v", name, err)
		}
		if rec.Pending != -1 || rec.Active < 0 {
			t.Fatalf("app %s: active %d pending %d, want a settled record", name, rec.Active, rec.Pending)
		}
		info := rec.Slots[rec.Active]
		mod, err := s.Get(slotKey(int(rec.Active), name))
		if err != nil {
			t.Fatalf("app %s: active slot %d: %v", name, rec.Active, err)
		}
		if sum := sha256.Sum256(mod); string(sum[:]) != string(info.SHA256) || !strings.HasPrefix(string(mod), "\x00asm"+name+"@"+info.Version+";") {
			t.Fatalf("app %s: slot %d holds a module that is not %s", name, rec.Active, info.Version)
		}
		if other := 1 - rec.Active; s.Has(slotKey(int(other), name)) || !rec.Slots[other].empty() {
			t.Fatalf("app %s: inactive slot %d not empty", name, other)
		}
		if allowed != nil && !slices.Contains(allowed[name], info.Version) {
			t.Fatalf("app %s: version %s, want one of %v", name, info.Version, allowed[name])
		}
	}
	for _, p := range []string{"0:", "1:", configPrefix} {
		for _, key := range s.Keys(p) {
			if !apps[key[len(p):]] {
				t.Fatalf("orphaned key %q", key)
			}
		}
	}
	for name, vs := range allowed {
		if !apps[name] && !slices.Contains(vs, "") {
			t.Fatalf("app %s missing, want one of %v", name, vs)
		}
	}
}

// TestInstallsCountsVersionsWritten: the counter fault tests rely on counts
// each version written to flash once, whether it runs or not, and not the
// active version delivered again.
func TestInstallsCountsVersionsWritten(t *testing.T) {
	d := newDevice(t)
	steps := []struct {
		name string
		req  Request
		want uint64
	}{
		{"first version, running", req("a", "1", 1, 512, true), 1},
		{"same version again", req("a", "1", 1, 512, true), 1},
		{"new version", req("a", "2", 2, 512, true), 2},
		{"other app, stopped", req("b", "1", 3, 256, false), 3},
		{"other app again", req("b", "1", 3, 256, false), 3},
	}
	for _, s := range steps {
		mustInstall(t, d, s.req)
		if got := d.mgr.Installs(); got != s.want {
			t.Errorf("after %s: Installs() = %d, want %d", s.name, got, s.want)
		}
	}
	// A new manager (a reboot) starts counting from zero.
	if got := boot(t, d.chip).mgr.Installs(); got != 0 {
		t.Errorf("after reboot: Installs() = %d, want 0", got)
	}
}
