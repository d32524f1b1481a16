package appmgr

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite golden files")

func render(st Status) string {
	s := fmt.Sprintf("%s %s@%s seq=%d slot=%d run=%v", st.Name, st.State, st.Version, st.Sequence, st.Slot, st.Run)
	if st.Reason != 0 {
		s += " reason=" + st.Reason.String()
	}
	if st.Resource != 0 {
		s += " resource=" + st.Resource.String()
	}
	if st.Message != "" {
		s += fmt.Sprintf(" msg=%q", st.Message)
	}
	return s
}

// TestTransitionsGolden runs a scripted device history — installs, an
// update, a failing update with fallback, traps, limits, refusals (an
// older version, a full flash), a power cut in the middle of an update and
// reboots — and compares every result, event and flash key with
// testdata/transitions.golden.
func TestTransitionsGolden(t *testing.T) {
	chip, _ := flash.NewMem(testGeo)
	f := flash.NewFaulty(chip)
	var out strings.Builder
	d := boot(t, f)
	ctx := context.Background()
	reboot := func() {
		f.PowerOn()
		d = boot(t, f)
	}
	type step struct {
		name string
		do   func() (Status, error)
	}
	steps := []step{
		{"install sensor v1", func() (Status, error) { return d.mgr.Install(ctx, req("sensor", "v1", 1, 3000, true)) }},
		{"install blink v1 stopped", func() (Status, error) { return d.mgr.Install(ctx, req("blink", "v1", 2, 500, false)) }},
		{"start blink", func() (Status, error) { return d.mgr.Start(ctx, "blink") }},
		{"blink traps", func() (Status, error) {
			d.runner.crash("blink", &TrapError{Reason: "integer divide by zero"})
			st, _ := d.mgr.Status("blink")
			return st, nil
		}},
		{"sensor hits fuel limit", func() (Status, error) {
			d.runner.crash("sensor", &LimitError{Resource: protocol.ResourceFuel, Detail: "budget of 1000000 exhausted"})
			st, _ := d.mgr.Status("sensor")
			return st, nil
		}},
		{"update sensor v2", func() (Status, error) { return d.mgr.Install(ctx, req("sensor", "v2", 3, 3200, true)) }},
		{"update sensor v3 fails", func() (Status, error) {
			d.runner.fail["v3"] = &LimitError{Resource: protocol.ResourceMemory, Detail: "declared 4 pages above limit"}
			return d.mgr.Install(ctx, req("sensor", "v3", 4, 3200, true))
		}},
		{"install an older sensor", func() (Status, error) { return d.mgr.Install(ctx, req("sensor", "v0", 2, 3000, true)) }},
		{"install over flash", func() (Status, error) { return d.mgr.Install(ctx, req("huge", "v1", 6, 40<<10, true)) }},
		{"stop sensor", func() (Status, error) { return d.mgr.Stop(ctx, "sensor") }},
		{"power cut while blink v2 starts on trial", func() (Status, error) {
			d.runner.onStart = func(spec RunSpec) {
				if spec.Version == "v2" {
					f.Cut()
				}
			}
			return d.mgr.Install(ctx, req("blink", "v2", 7, 700, true))
		}},
		{"reboot", func() (Status, error) { reboot(); st, _ := d.mgr.Status("blink"); return st, nil }},
		{"remove blink", func() (Status, error) { return d.mgr.Remove(ctx, "blink") }},
		{"reboot again", func() (Status, error) { reboot(); st, _ := d.mgr.Status("sensor"); return st, nil }},
	}
	for _, st := range steps {
		d.events = nil
		res, err := st.do()
		fmt.Fprintf(&out, "== %s\n-> %s\n", st.name, render(res))
		if err != nil {
			var re *RefusalError
			var se *StartError
			switch {
			case errors.As(err, &re):
				fmt.Fprintf(&out, "   refused: %s (%s)\n", re.Reason, re.Reason.Reason())
			case errors.As(err, &se):
				fmt.Fprintf(&out, "   start failed, fallback=%v\n", se.Fallback != nil)
			case errors.Is(err, flash.ErrPowerCut):
				fmt.Fprintf(&out, "   power cut\n")
			default:
				fmt.Fprintf(&out, "   error: %v\n", err)
			}
		}
		for _, e := range d.events {
			fmt.Fprintf(&out, "   event %s: %s\n", e.Kind, render(e.Status))
		}
		if !f.Off() {
			fmt.Fprintf(&out, "   flash: %s\n", strings.Join(d.store.Keys(""), " "))
		}
	}
	got := out.String()
	path := filepath.Join("testdata", "transitions.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Fatalf("transitions changed; got:\n%s", got)
	}
}
