package wasm

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

var modes = []Mode{ModeCompiler, ModeInterpreter}

func newEngine(t testing.TB, mode Mode) *Engine {
	t.Helper()
	if mode == ModeCompiler && !compilerSupported() {
		t.Skipf("wazero compiler not supported on this platform")
	}
	e, err := NewEngine(t.Context(), Config{Mode: mode})
	if err != nil {
		t.Fatalf("NewEngine(%s): %v", mode, err)
	}
	t.Cleanup(func() { _ = e.Close(t.Context()) })
	return e
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is a Publisher and ConfigSource that remembers everything.
type recorder struct {
	mu       sync.Mutex
	metrics  []metric
	messages []message
	config   map[string]string
}

type metric struct {
	app, name string
	value     float64
}

type message struct {
	app, topic string
	payload    []byte
}

func (r *recorder) PublishMetric(app, name string, v float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(r.metrics, metric{app, name, v})
	return nil
}

func (r *recorder) PublishMessage(app, topic string, p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, message{app, topic, p})
	return nil
}

func (r *recorder) Lookup(_, key string) (string, bool) {
	v, ok := r.config[key]
	return v, ok
}

// device is a simulated board, clock and sinks for one test app.
type device struct {
	clock *hal.ManualClock
	sim   *hal.Sim
	rec   *recorder
}

func newDevice() *device {
	clk := hal.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	clk.SetAutoAdvance(true) // sleep_ms passes virtual time at once
	return &device{clock: clk, sim: hal.NewSim(clk, hal.SimConfig{}), rec: &recorder{config: map[string]string{}}}
}

func (d *device) host() Host {
	return Host{Board: d.sim.Board(), Clock: d.clock, Publisher: d.rec, Config: d.rec}
}

// startApp compiles bin, creates an app on d and starts it.
func startApp(t testing.TB, e *Engine, d *device, name string, bin []byte, lim sandbox.Limits) (*App, Result) {
	t.Helper()
	mod, err := e.Compile(t.Context(), bin, lim, Bounds{})
	if err != nil {
		t.Fatalf("Compile(%s): %v", name, err)
	}
	t.Cleanup(func() { mod.Release(t.Context()) })
	a, err := e.NewApp(mod, AppConfig{Name: name, Host: d.host()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(t.Context()) })
	return a, a.Start(t.Context())
}

func sample(name string) []byte { return apps.MustLoad(name) }
