package appmgr

import (
	"sync"
	"testing"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// TestConcurrentExitsAndCommands hammers the manager with exits reported
// from runtime goroutines while commands run; run it with -race. Every
// exit of a current instance must be reflected, none may deadlock.
func TestConcurrentExitsAndCommands(t *testing.T) {
	d := newDevice(t)
	var mu sync.Mutex
	exited := 0
	d.mgr.observe = func(e Event) {
		if e.Kind == EventExited {
			mu.Lock()
			exited++
			mu.Unlock()
		}
	}
	names := []string{"a", "b", "c", "d"}
	for i, n := range names {
		mustInstall(t, d, req(n, "v1", uint64(i+1), 200, true))
	}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			for range 50 {
				d.runner.mu.Lock()
				exit := d.runner.exits[n]
				d.runner.mu.Unlock()
				if exit != nil {
					d.runner.crash(n, &TrapError{Reason: "boom"})
				}
				if _, err := d.mgr.Start(t.Context(), n); err != nil {
					t.Error(err)
					return
				}
				_ = d.mgr.Statuses(nil)
			}
		})
	}
	wg.Wait()
	for _, n := range names {
		st, _ := d.mgr.Status(n)
		if st.State != protocol.StateRunning || d.runner.version(n) != "v1" {
			t.Fatalf("app %s: %s, runner %q", n, st.State, d.runner.version(n))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if exited == 0 {
		t.Fatal("no exit observed")
	}
}
