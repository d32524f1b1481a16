package appmgr

import (
	"context"
	"fmt"
	"testing"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
)

// TestPowerCutEveryStep cuts power at every flash write step of each
// application operation in turn, with both tear modes, reboots (remount and
// a new manager) after each cut, and checks that the device holds a
// consistent set of applications: each one either entirely the old version
// or entirely the new one, its module matching its digest, no slot left on
// trial or orphaned, and running exactly when it is meant to.
func TestPowerCutEveryStep(t *testing.T) {
	scenarios := []struct {
		name    string
		setup   func(t testing.TB, d *device)
		prep    func(r *fakeRunner)
		op      func(ctx context.Context, m *Manager) error
		allowed map[string][]string // versions allowed after a cut; "" = absent
		final   map[string][]string // versions after the operation completes
		compact bool                // the operation must compact the flash log
	}{
		{
			name: "update with compaction",
			setup: func(t testing.TB, d *device) {
				mustInstall(t, d, req("other", "v1", 1, 3000, true))
				for i := range 12 {
					mustInstall(t, d, req("app", fmt.Sprint("v", i), uint64(2+i), 2700, true))
				}
			},
			op: func(ctx context.Context, m *Manager) error {
				_, err := m.Install(ctx, req("app", "new", 99, 2800, true))
				return err
			},
			allowed: map[string][]string{"app": {"v11", "new"}, "other": {"v1"}},
			final:   map[string][]string{"app": {"new"}, "other": {"v1"}},
			compact: true,
		},
		{
			name:  "install",
			setup: func(t testing.TB, d *device) { mustInstall(t, d, req("other", "v1", 1, 700, true)) },
			op: func(ctx context.Context, m *Manager) error {
				_, err := m.Install(ctx, req("app", "v1", 2, 2600, true))
				return err
			},
			allowed: map[string][]string{"app": {"", "v1"}, "other": {"v1"}},
			final:   map[string][]string{"app": {"v1"}, "other": {"v1"}},
		},
		{
			name: "install stopped",
			op: func(ctx context.Context, m *Manager) error {
				_, err := m.Install(ctx, req("app", "v1", 2, 1200, false))
				return err
			},
			allowed: map[string][]string{"app": {"", "v1"}},
			final:   map[string][]string{"app": {"v1"}},
		},
		{
			name: "update",
			setup: func(t testing.TB, d *device) {
				mustInstall(t, d, req("app", "v1", 1, 1900, true))
				mustInstall(t, d, req("other", "v1", 2, 500, true))
			},
			op: func(ctx context.Context, m *Manager) error {
				_, err := m.Install(ctx, req("app", "v2", 3, 2300, true))
				return err
			},
			allowed: map[string][]string{"app": {"v1", "v2"}, "other": {"v1"}},
			final:   map[string][]string{"app": {"v2"}, "other": {"v1"}},
		},
		{
			name:  "update with fallback",
			setup: func(t testing.TB, d *device) { mustInstall(t, d, req("app", "v1", 1, 1900, true)) },
			prep:  func(r *fakeRunner) { r.fail["v2"] = &TrapError{Reason: "unreachable"} },
			op: func(ctx context.Context, m *Manager) error {
				_, err := m.Install(ctx, req("app", "v2", 3, 2300, true))
				return err
			},
			allowed: map[string][]string{"app": {"v1"}},
			final:   map[string][]string{"app": {"v1"}},
		},
		{
			name:  "update without start",
			setup: func(t testing.TB, d *device) { mustInstall(t, d, req("app", "v1", 1, 1900, true)) },
			op: func(ctx context.Context, m *Manager) error {
				_, err := m.Install(ctx, req("app", "v2", 3, 2300, false))
				return err
			},
			allowed: map[string][]string{"app": {"v1", "v2"}},
			final:   map[string][]string{"app": {"v2"}},
		},
		{
			name: "remove",
			setup: func(t testing.TB, d *device) {
				mustInstall(t, d, req("app", "v1", 1, 2900, true))
				mustInstall(t, d, req("other", "v1", 2, 500, true))
				if err := d.mgr.Configure("app", 1, map[string]string{"k": "v"}); err != nil {
					t.Fatal(err)
				}
			},
			op:      func(ctx context.Context, m *Manager) error { _, err := m.Remove(ctx, "app"); return err },
			allowed: map[string][]string{"app": {"", "v1"}, "other": {"v1"}},
			final:   map[string][]string{"app": {""}, "other": {"v1"}},
		},
		{
			name:    "stop",
			setup:   func(t testing.TB, d *device) { mustInstall(t, d, req("app", "v1", 1, 300, true)) },
			op:      func(ctx context.Context, m *Manager) error { _, err := m.Stop(ctx, "app"); return err },
			allowed: map[string][]string{"app": {"v1"}},
			final:   map[string][]string{"app": {"v1"}},
		},
	}
	for _, sc := range scenarios {
		for _, tear := range []flash.Tear{flash.TearNone, flash.TearHalf} {
			t.Run(fmt.Sprintf("%s/tear%d", sc.name, tear), func(t *testing.T) {
				base, err := flash.NewMem(testGeo)
				if err != nil {
					t.Fatal(err)
				}
				d := boot(t, base)
				if sc.setup != nil {
					sc.setup(t, d)
				}
				d.mgr.Shutdown(t.Context())
				for n := int64(0); ; n++ {
					if n > 10000 {
						t.Fatal("operation never completed")
					}
					img := base.Clone()
					f := flash.NewFaulty(img)
					f.SetTear(tear)
					d := bootWith(t, f, sc.prep)
					f.FailAfter(n)
					opErr := sc.op(t.Context(), d.mgr)
					cut := f.Off()
					f.PowerOn()
					after := bootWith(t, img, sc.prep)
					if !cut {
						if sc.compact && d.store.Stats().Compactions == 0 {
							t.Fatal("operation did not compact; scenario does not test compaction")
						}
						checkInvariants(t, after.store, sc.final)
						checkRunning(t, after)
						t.Logf("%d write steps, every one cut once (last op error: %v)", n, opErr)
						return
					}
					if opErr == nil {
						t.Fatalf("cut at step %d: operation reported success", n)
					}
					checkInvariants(t, after.store, sc.allowed)
					checkRunning(t, after)
					// A second reboot changes nothing: recovery is idempotent.
					again := bootWith(t, img, sc.prep)
					checkInvariants(t, again.store, sc.allowed)
				}
			})
		}
	}
}

func bootWith(t testing.TB, chip flash.Chip, prep func(*fakeRunner)) *device {
	t.Helper()
	s, err := flash.Mount(chip, flash.Options{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	d := &device{chip: chip, store: s, runner: newRunner()}
	if prep != nil {
		prep(d.runner)
	}
	d.mgr, err = Open(context.Background(), Config{Store: s, Runner: d.runner, Observer: func(e Event) { d.events = append(d.events, e) }})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return d
}

// checkRunning asserts that after boot exactly the applications meant to
// run do, each in its active version.
func checkRunning(t testing.TB, d *device) {
	t.Helper()
	for _, st := range d.mgr.Statuses(nil) {
		got := d.runner.version(st.Name)
		switch {
		case st.Run && got != st.Version:
			t.Fatalf("app %s: meant to run %s, runner runs %q", st.Name, st.Version, got)
		case !st.Run && got != "":
			t.Fatalf("app %s: meant to be stopped, runner runs %q", st.Name, got)
		}
	}
}

// TestPowerCutDuringRecovery cuts power at every step of an update and
// then again at every write step of the boot that repairs it, with both
// tear modes, and checks the invariants after a third, uninterrupted
// boot.
func TestPowerCutDuringRecovery(t *testing.T) {
	for _, tear := range []flash.Tear{flash.TearNone, flash.TearHalf} {
		t.Run(fmt.Sprintf("tear%d", tear), func(t *testing.T) {
			base, _ := flash.NewMem(testGeo)
			d := boot(t, base)
			mustInstall(t, d, req("app", "v1", 1, 1900, true))
			mustInstall(t, d, req("other", "v1", 2, 500, false))
			d.mgr.Shutdown(t.Context())
			checked := 0
			for n := int64(0); ; n++ {
				img := base.Clone()
				f := flash.NewFaulty(img)
				f.SetTear(tear)
				d := bootWith(t, f, nil)
				f.FailAfter(n)
				_, _ = d.mgr.Install(t.Context(), req("app", "v2", 3, 2300, true))
				if !f.Off() {
					break
				}
				f.PowerOn()
				checked += repairCuts(t, img, tear, n)
			}
			t.Logf("%d double faults checked", checked)
		})
	}
}

// repairCuts boots the image an update cut at step n left, cutting power
// at every write step of the repair in turn, and checks the invariants
// after an uninterrupted boot; it returns the cuts checked.
func repairCuts(t *testing.T, crashed *flash.MemChip, tear flash.Tear, n int64) int {
	t.Helper()
	checked := 0
	for m := int64(0); ; m++ {
		img := crashed.Clone()
		f := flash.NewFaulty(img)
		f.SetTear(tear)
		s, err := flash.Mount(f, flash.Options{})
		if err != nil {
			t.Fatal(err)
		}
		f.FailAfter(m)
		_, err = Open(t.Context(), Config{Store: s, Runner: newRunner()})
		cut := f.Off()
		f.PowerOn()
		after := bootWith(t, img, nil)
		checkInvariants(t, after.store, map[string][]string{"app": {"v1", "v2"}, "other": {"v1"}})
		checkRunning(t, after)
		checked++
		if !cut {
			if err != nil {
				t.Fatalf("update cut %d, recovery uncut: %v", n, err)
			}
			return checked
		}
	}
}
