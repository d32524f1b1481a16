package hal

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestGPIO(t *testing.T) {
	clk := NewManualClock(t0)
	sim := NewSim(clk, SimConfig{Pins: 8, MaxEvents: 3})
	g := sim.Board().GPIO
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"write unconfigured pin", func() error { return g.Write(1, true) }, ErrPinMode},
		{"configure pin out of range", func() error { return g.Configure(8, PinOutput) }, ErrNoSuchPin},
		{"configure negative pin", func() error { return g.Configure(-1, PinOutput) }, ErrNoSuchPin},
		{"configure bad mode", func() error { return g.Configure(1, PinMode(9)) }, ErrInvalid},
		{"read disabled pin", func() error { _, err := g.Read(2); return err }, ErrPinMode},
		{"configure output", func() error { return g.Configure(1, PinOutput) }, nil},
		{"write input pin", func() error { _ = g.Configure(2, PinInput); return g.Write(2, true) }, ErrPinMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}

	for i := range 5 {
		clk.Advance(time.Second)
		if err := g.Write(1, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		if err := g.Write(1, i%2 == 0); err != nil { // same level: no event
			t.Fatal(err)
		}
	}
	if got := sim.Toggles(1); got != 5 {
		t.Errorf("Toggles: got %d, want 5", got)
	}
	evs := sim.PinEvents()
	want := []PinEvent{{t0.Add(3 * time.Second), 1, true}, {t0.Add(4 * time.Second), 1, false}, {t0.Add(5 * time.Second), 1, true}}
	if len(evs) != len(want) {
		t.Fatalf("PinEvents: got %v, want %v (bounded to the last 3)", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, evs[i], want[i])
		}
	}
	if v, _ := g.Read(1); !v {
		t.Errorf("Read(output 1): got low, want high")
	}
	sim.SetInput(2, true)
	if v, _ := g.Read(2); !v {
		t.Errorf("Read(input 2 driven high): got low, want high")
	}
	_ = g.Configure(3, PinInputPullUp)
	if v, _ := g.Read(3); !v {
		t.Errorf("Read(pull-up 3 undriven): got low, want high")
	}
	sim.SetInput(3, false)
	if v, _ := g.Read(3); v {
		t.Errorf("Read(pull-up 3 driven low): got high, want low")
	}
}

func TestUART(t *testing.T) {
	sim := NewSim(NewManualClock(t0), SimConfig{UARTPorts: 2, MaxUARTCapture: 8})
	u := sim.Board().UART
	if _, err := u.Write(2, []byte("x")); !errors.Is(err, ErrNoSuchPort) {
		t.Errorf("Write(port 2): got %v, want ErrNoSuchPort", err)
	}
	if n, err := u.Write(0, []byte("hello ")); n != 6 || err != nil {
		t.Fatalf("Write: got %d, %v", n, err)
	}
	_, _ = u.Write(0, []byte("world"))
	if got := sim.UARTOutput(0); string(got) != "lo world" {
		t.Errorf("UARTOutput: got %q, want the last 8 bytes %q", got, "lo world")
	}
	buf := make([]byte, 4)
	if n, _ := u.Read(0, buf); n != 0 {
		t.Errorf("Read without input: got %d bytes, want 0", n)
	}
	_ = sim.SetUARTLoopback(1, true)
	_, _ = u.Write(1, []byte("ping!"))
	n, _ := u.Read(1, buf)
	if string(buf[:n]) != "ping" {
		t.Errorf("loopback Read: got %q, want %q", buf[:n], "ping")
	}
	n, _ = u.Read(1, buf)
	if string(buf[:n]) != "!" {
		t.Errorf("loopback second Read: got %q, want %q", buf[:n], "!")
	}
	_ = sim.InjectUART(0, []byte("AT\r\n"))
	n, _ = u.Read(0, buf)
	if string(buf[:n]) != "AT\r\n" {
		t.Errorf("injected Read: got %q, want %q", buf[:n], "AT\r\n")
	}
}

func TestAppendBounded(t *testing.T) {
	tests := []struct {
		buf, p string
		max    int
		want   string
	}{
		{"", "abc", 8, "abc"},
		{"abcdef", "gh", 8, "abcdefgh"},
		{"abcdef", "ghij", 8, "cdefghij"},
		{"ab", "0123456789", 8, "23456789"},
	}
	for _, tt := range tests {
		if got := string(appendBounded([]byte(tt.buf), []byte(tt.p), tt.max)); got != tt.want {
			t.Errorf("appendBounded(%q, %q, %d): got %q, want %q", tt.buf, tt.p, tt.max, got, tt.want)
		}
	}
}

func TestI2CTempSensor(t *testing.T) {
	sim := NewSim(NewManualClock(t0), SimConfig{})
	ts, err := sim.AddTempSensor(0, 0x48, 25.0625)
	if err != nil {
		t.Fatal(err)
	}
	b := sim.Board()
	r := make([]byte, 2)
	if err := b.I2C.Transfer(0, 0x48, []byte{0}, r); err != nil {
		t.Fatal(err)
	}
	// 25.0625 °C = 401/16 → 0x191 << 4 = 0x1910.
	if !bytes.Equal(r, []byte{0x19, 0x10}) {
		t.Errorf("temperature register: got % x, want 19 10", r)
	}
	if err := b.I2C.Transfer(0, 0x49, nil, r); !errors.Is(err, ErrNoDevice) {
		t.Errorf("no device: got %v, want ErrNoDevice", err)
	}
	if err := b.I2C.Transfer(1, 0x48, nil, r); !errors.Is(err, ErrNoSuchPort) {
		t.Errorf("no bus: got %v, want ErrNoSuchPort", err)
	}
	if err := b.I2C.Transfer(0, 0x48, []byte{9}, r); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad register: got %v, want ErrInvalid", err)
	}
	// Readings are quantised to 1/16 °C and clamped to the 12-bit range.
	for _, c := range []struct{ set, want float64 }{{25.0625, 25.0625}, {-10.5, -10.5}, {21.03, 21}, {200, 127.9375}, {-300, -128}} {
		ts.Set(c.set)
		v, err := b.Sensors.ReadSensor(SensorTemperature)
		if err != nil {
			t.Fatal(err)
		}
		if v != c.want {
			t.Errorf("ReadSensor at %v °C: got %v, want %v", c.set, v, c.want)
		}
	}
	if _, err := b.Sensors.ReadSensor(7); !errors.Is(err, ErrNoDevice) {
		t.Errorf("unknown sensor: got %v, want ErrNoDevice", err)
	}
}

func TestSPI(t *testing.T) {
	sim := NewSim(NewManualClock(t0), SimConfig{SPIBuses: 2})
	s := sim.Board().SPI
	rx := make([]byte, 3)
	if err := s.Transfer(0, []byte{1, 2, 3}, rx); err != nil || !bytes.Equal(rx, []byte{0xff, 0xff, 0xff}) {
		t.Errorf("no device: got % x, %v, want ff ff ff", rx, err)
	}
	_ = sim.AttachSPI(1, SPILoopback{})
	if err := s.Transfer(1, []byte{1, 2, 3}, rx); err != nil || !bytes.Equal(rx, []byte{1, 2, 3}) {
		t.Errorf("loopback: got % x, %v, want 01 02 03", rx, err)
	}
	if err := s.Transfer(1, []byte{1, 2}, rx); !errors.Is(err, ErrInvalid) {
		t.Errorf("length mismatch: got %v, want ErrInvalid", err)
	}
	if err := s.Transfer(2, nil, nil); !errors.Is(err, ErrNoSuchPort) {
		t.Errorf("no bus: got %v, want ErrNoSuchPort", err)
	}
}

func TestPowerAccounting(t *testing.T) {
	clk := NewManualClock(t0)
	model := PowerModel{ActiveMilliAmps: 10, SleepMilliAmps: 1, DeepSleepMilliAmps: 0.1, Volts: 2}
	sim := NewSim(clk, SimConfig{Power: model})
	p := sim.Board().Power
	clk.Advance(10 * time.Second) // active: 10 mA * 2 V * 10 s = 0.2 J
	_ = p.SetState(PowerSleep)
	clk.Advance(100 * time.Second) // sleep: 1 mA * 2 V * 100 s = 0.2 J
	_ = p.SetState(PowerDeepSleep)
	clk.Advance(1000 * time.Second) // deep: 0.1 mA * 2 V * 1000 s = 0.2 J
	st := sim.PowerStats()
	if st.State != PowerDeepSleep || st.Transitions != 2 {
		t.Errorf("got state %v transitions %d, want deep-sleep and 2", st.State, st.Transitions)
	}
	if math.Abs(st.EnergyJoules-0.6) > 1e-9 {
		t.Errorf("EnergyJoules: got %v, want 0.6", st.EnergyJoules)
	}
	if err := p.SetState(PowerState(7)); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad state: got %v, want ErrInvalid", err)
	}
}

func TestManualClockSleep(t *testing.T) {
	clk := NewManualClock(t0)
	// Timer-driven: Sleep returns once the clock is advanced past it.
	done := make(chan error, 1)
	go func() { done <- Sleep(t.Context(), clk, 3*time.Second) }()
	if !clk.WaitForTimers(1, 5*time.Second) {
		t.Fatal("Sleep set no timer")
	}
	clk.Advance(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("Sleep returned %v before its deadline", err)
	default:
	}
	clk.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Auto-advance: the clock jumps to the deadline at once.
	clk.SetAutoAdvance(true)
	if err := Sleep(t.Context(), clk, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := clk.Now(); !got.Equal(t0.Add(7 * time.Second)) {
		t.Errorf("after Sleep: got %v, want t0+7s", got)
	}
	clk.Set(t0) // never backwards
	if got := clk.Now(); !got.Equal(t0.Add(7 * time.Second)) {
		t.Errorf("after Set(earlier): got %v, want t0+7s", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := Sleep(ctx, clk, time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Sleep with a cancelled context: got %v, want context.Canceled", err)
	}
}

// TestManualClockTimers: timers fire in deadline order, then set order;
// Stop and Reset take effect.
func TestManualClockTimers(t *testing.T) {
	clk := NewManualClock(t0)
	var got []string
	rec := func(s string) func() { return func() { got = append(got, s) } }
	clk.AfterFunc(2*time.Second, rec("b"))
	clk.AfterFunc(time.Second, rec("a"))
	clk.AfterFunc(2*time.Second, rec("c"))
	stopped := clk.AfterFunc(time.Second, rec("x"))
	moved := clk.AfterFunc(time.Second, rec("moved"))
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop: want true then false")
	}
	if !moved.Reset(5 * time.Second) {
		t.Error("Reset of a pending timer: want true")
	}
	if next, ok := clk.Next(); !ok || next != time.Second {
		t.Errorf("Next: got %v %v, want 1s", next, ok)
	}
	clk.Advance(2 * time.Second)
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("fired: got %v, want %v", got, want)
	}
	if clk.Pending() != 1 {
		t.Errorf("Pending: got %d, want 1", clk.Pending())
	}
	clk.Advance(3 * time.Second)
	if got[len(got)-1] != "moved" {
		t.Errorf("reset timer: fired %v", got)
	}
}

// TestSimIdleFootprint checks that an unused simulated board stays small,
// as the simulator runs thousands of them.
func TestSimIdleFootprint(t *testing.T) {
	clk := NewManualClock(t0)
	allocs := testing.AllocsPerRun(10, func() { _ = NewSim(clk, SimConfig{}) })
	if allocs > 1 {
		t.Errorf("NewSim: got %v allocations, want 1 (everything else lazy)", allocs)
	}
}
