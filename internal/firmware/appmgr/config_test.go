package appmgr

import (
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// TestConfigReadAtStart checks that an application reading its
// configuration while it starts (wasmbed_init runs inside Runner.Start,
// with the manager busy) sees the stored values, after a start command
// and after a reboot, and does not deadlock.
func TestConfigReadAtStart(t *testing.T) {
	chip, err := flash.NewMem(testGeo)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	readPin := func(r *fakeRunner) {
		r.onStart = func(spec RunSpec) {
			if spec.Config == nil {
				seen = append(seen, "<no config source>")
				return
			}
			v, ok := spec.Config.Lookup(spec.Name, "pin")
			if !ok {
				v = "<unset>"
			}
			seen = append(seen, v)
		}
	}
	d := bootWith(t, chip, readPin)
	mustInstall(t, d, req("blink", "v1", 1, 200, false))
	if err := d.mgr.Configure("blink", 1, map[string]string{"pin": "7"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"start", func() { startWithin(t, d, "blink") }},
		{"reboot", func() { d = bootWith(t, chip, readPin) }},
		{"reconfigure and restart", func() {
			if err := d.mgr.Configure("blink", 2, map[string]string{"pin": "9"}); err != nil {
				t.Fatal(err)
			}
			if _, err := d.mgr.Stop(t.Context(), "blink"); err != nil {
				t.Fatal(err)
			}
			startWithin(t, d, "blink")
		}},
		{"second reboot", func() { d = bootWith(t, chip, readPin) }},
	}
	want := []string{"7", "7", "9", "9"}
	for i, st := range steps {
		seen = nil
		st.do()
		if len(seen) != 1 || seen[0] != want[i] {
			t.Errorf("%s: init read pin %q, want [%s]", st.name, seen, want[i])
		}
		if s, _ := d.mgr.Status("blink"); s.State != protocol.StateRunning {
			t.Errorf("%s: state %v, want running", st.name, s.State)
		}
	}
	if _, err := d.mgr.Remove(t.Context(), "blink"); err != nil {
		t.Fatal(err)
	}
	if v, ok := d.mgr.Lookup("blink", "pin"); ok {
		t.Errorf("after remove: got pin %q, want no value", v)
	}
}

// startWithin starts an app, failing the test instead of hanging if the
// start deadlocks.
func startWithin(t *testing.T, d *device, name string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := d.mgr.Start(t.Context(), name)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("start %s: deadlocked", name)
	}
}

// TestObserverCallsBack checks that an observer may call back into the
// manager (documented on Config.Observer) without deadlocking, and still
// sees every event in order.
func TestObserverCallsBack(t *testing.T) {
	d := newDevice(t)
	var kinds []EventKind
	d.mgr.observe = func(e Event) {
		kinds = append(kinds, e.Kind)
		// Calls that take the manager's lock and deliver events again.
		if _, ok := d.mgr.Status(e.Status.Name); !ok && e.Kind != EventRemoved {
			t.Errorf("%s: status of %s not found", e.Kind, e.Status.Name)
		}
		if e.Kind == EventStarted {
			if _, err := d.mgr.Stop(t.Context(), e.Status.Name); err != nil {
				t.Errorf("stop from the observer: %v", err)
			}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := d.mgr.Install(t.Context(), req("a", "v1", 1, 200, true)); err != nil {
			t.Errorf("install: %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("install with a calling-back observer deadlocked")
	}
	want := []EventKind{EventStarted, EventStopped}
	if len(kinds) != len(want) || kinds[0] != want[0] || kinds[1] != want[1] {
		t.Errorf("events: got %v, want %v", kinds, want)
	}
}
