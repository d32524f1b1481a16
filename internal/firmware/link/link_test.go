package link_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBackoffCeiling(t *testing.T) {
	b := link.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	tests := []struct {
		attempt int
		want    time.Duration
	}{
		{0, 0},
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{100, time.Second},
	}
	for _, tt := range tests {
		if got := b.Ceiling(tt.attempt); got != tt.want {
			t.Errorf("Ceiling(%d): got %v, want %v", tt.attempt, got, tt.want)
		}
	}
}

func TestBackoffDelayFullJitter(t *testing.T) {
	b := link.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	r := rand.New(rand.NewPCG(1, 2))
	var low, high int
	for range 1000 {
		d := b.Delay(4, r)
		if d < 0 || d > 800*time.Millisecond {
			t.Fatalf("Delay(4): got %v, want within [0, 800ms]", d)
		}
		if d < 400*time.Millisecond {
			low++
		} else {
			high++
		}
	}
	// Full jitter: both halves of the window are used.
	if low < 300 || high < 300 {
		t.Errorf("jitter distribution: got %d below / %d above the midpoint, want both >= 300", low, high)
	}
}

// fakeNet is a DialFunc whose endpoints are up or down.
type fakeNet struct {
	mu    sync.Mutex
	up    map[string]bool
	dials []string
}

func (f *fakeNet) dial(_ context.Context, _, addr string) (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials = append(f.dials, addr)
	if !f.up[addr] {
		return nil, errors.New("connection refused")
	}
	a, b := net.Pipe()
	go func() { // discard whatever the device sends
		buf := make([]byte, 64)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	return a, nil
}

func (f *fakeNet) set(addr string, up bool) {
	f.mu.Lock()
	f.up[addr] = up
	f.mu.Unlock()
}

func (f *fakeNet) dialed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.dials...)
}

func newManager(t *testing.T, fn *fakeNet, clk hal.Clock, eps ...string) *link.Manager {
	t.Helper()
	m, err := link.New(link.Config{
		Endpoints: eps,
		Dial:      fn.dial,
		Clock:     clk,
		Rand:      rand.New(rand.NewPCG(7, 7)),
		Backoff:   link.Backoff{Base: time.Second, Max: 8 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// connectAsync runs Connect in a goroutine and returns its result channel.
func connectAsync(ctx context.Context, m *link.Manager) <-chan *link.Conn {
	ch := make(chan *link.Conn, 1)
	go func() {
		c, err := m.Connect(ctx)
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// drive advances clk until ch yields or the real-time budget runs out.
func drive(t *testing.T, clk *hal.ManualClock, ch <-chan *link.Conn) *link.Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case c, ok := <-ch:
			if !ok {
				t.Fatal("Connect failed")
			}
			return c
		default:
		}
		if clk.WaitForTimers(1, 10*time.Millisecond) {
			d, _ := clk.Next()
			clk.Advance(d)
		}
	}
	t.Fatal("Connect did not return")
	return nil
}

func TestFailoverToSecondEndpoint(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{"gw-a:1": false, "gw-b:1": true}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "gw-a:1", "gw-b:1")
	c := drive(t, clk, connectAsync(t.Context(), m))
	if got, want := c.Endpoint(), "gw-b:1"; got != want {
		t.Fatalf("endpoint: got %s, want %s", got, want)
	}
	m.Established()
	// A lost session retries the working endpoint, not the dead one.
	m.Lost(errors.New("eof"))
	c = drive(t, clk, connectAsync(t.Context(), m))
	if got, want := c.Endpoint(), "gw-b:1"; got != want {
		t.Fatalf("endpoint after loss: got %s, want %s (sticky)", got, want)
	}
	if got, want := fn.dialed(), []string{"gw-a:1", "gw-b:1", "gw-b:1"}; !equal(got, want) {
		t.Errorf("dials: got %v, want %v", got, want)
	}
	st := m.Status()
	if st.Connects != 2 || st.Reconnects != 1 {
		t.Errorf("stats: got connects=%d reconnects=%d, want 2 and 1", st.Connects, st.Reconnects)
	}
}

func TestRejectRotates(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{"a:1": true, "b:1": true}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "a:1", "b:1")
	c := drive(t, clk, connectAsync(t.Context(), m))
	if c.Endpoint() != "a:1" {
		t.Fatalf("first endpoint: got %s, want a:1", c.Endpoint())
	}
	m.Reject(errors.New("handshake failure"))
	c = drive(t, clk, connectAsync(t.Context(), m))
	if got, want := c.Endpoint(), "b:1"; got != want {
		t.Fatalf("after reject: got %s, want %s", got, want)
	}
}

func TestBackoffWhenAllEndpointsDown(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "a:1", "b:1")
	ch := connectAsync(t.Context(), m)
	// Each round tries both endpoints, then waits; the waits' ceilings grow
	// 1s, 2s, 4s, 8s, 8s.
	var waited []time.Duration
	for round := range 5 {
		if !clk.WaitForTimers(1, 5*time.Second) {
			t.Fatalf("round %d: no backoff timer", round)
		}
		d, _ := clk.Next()
		waited = append(waited, d)
		clk.Advance(d)
	}
	ceil := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, d := range waited {
		if d < 0 || d > ceil[i] {
			t.Errorf("wait %d: got %v, want within [0, %v]", i, d, ceil[i])
		}
	}
	fn.set("b:1", true)
	c := drive(t, clk, ch)
	if c.Endpoint() != "b:1" {
		t.Errorf("endpoint: got %s, want b:1", c.Endpoint())
	}
	if got := len(fn.dialed()); got < 10 {
		t.Errorf("dials: got %d, want >= 10 (2 per round)", got)
	}
}

func TestFlapCutsAndHoldsDown(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{"a:1": true}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "a:1")
	c := drive(t, clk, connectAsync(t.Context(), m))
	m.Established()
	m.Flap(30 * time.Second)
	if _, err := c.Write([]byte("x")); !errors.Is(err, link.ErrLinkDropped) {
		t.Fatalf("write after flap: got %v, want ErrLinkDropped", err)
	}
	if st := m.Status(); st.State == link.Up || st.Flaps != 1 {
		t.Fatalf("status after flap: got state=%v flaps=%d, want not up and 1", st.State, st.Flaps)
	}
	m.Lost(link.ErrLinkDropped)
	ch := connectAsync(t.Context(), m)
	if !clk.WaitForTimers(1, 5*time.Second) {
		t.Fatal("Connect is not waiting for the flap to end")
	}
	if d, _ := clk.Next(); d != 30*time.Second {
		t.Errorf("wait: got %v, want 30s (rest of the flap)", d)
	}
	start := clk.Now()
	c = drive(t, clk, ch)
	if got := clk.Now().Sub(start); got < 30*time.Second {
		t.Errorf("reconnected after %v, want >= 30s", got)
	}
	if st := m.Status(); st.State != link.Up {
		t.Errorf("state: got %v, want up", st.State)
	}
	_ = c.Close()
}

func TestDropProbability(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{"a:1": true}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "a:1")
	m.SetConditions(link.Conditions{DropProbability: 1})
	c := drive(t, clk, connectAsync(t.Context(), m))
	if _, err := c.Write([]byte("hello")); !errors.Is(err, link.ErrLinkDropped) {
		t.Fatalf("write: got %v, want ErrLinkDropped", err)
	}
	if !c.Dropped() {
		t.Error("Dropped: got false, want true")
	}
	if st := m.Status(); st.Drops != 1 {
		t.Errorf("drops: got %d, want 1", st.Drops)
	}
}

func TestLatencyDelaysWrites(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{"a:1": true}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "a:1")
	m.SetConditions(link.Conditions{Latency: 50 * time.Millisecond})
	c := drive(t, clk, connectAsync(t.Context(), m))
	done := make(chan error, 1)
	go func() { _, err := c.Write([]byte("x")); done <- err }()
	if !clk.WaitForTimers(1, 5*time.Second) {
		t.Fatal("write is not waiting for latency")
	}
	select {
	case <-done:
		t.Fatal("write returned before the latency elapsed")
	default:
	}
	clk.Advance(50 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestStatusByMedium(t *testing.T) {
	tests := []struct {
		name    string
		medium  link.Medium
		cond    link.Conditions
		hasRSSI bool
	}{
		{"wifi", link.WiFi, link.Conditions{RSSI: -70, RSSISpread: 5}, true},
		{"wired", link.Wired, link.Conditions{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn := &fakeNet{up: map[string]bool{"a:1": true}}
			clk := hal.NewManualClock(epoch)
			m, err := link.New(link.Config{Medium: tt.medium, Endpoints: []string{"a:1"}, Dial: fn.dial,
				Clock: clk, Rand: rand.New(rand.NewPCG(1, 1)), Conditions: tt.cond})
			if err != nil {
				t.Fatal(err)
			}
			if st := m.Status(); st.State != link.Down || st.Quality != 0 {
				t.Errorf("before connect: got state=%v quality=%d, want down and 0", st.State, st.Quality)
			}
			drive(t, clk, connectAsync(t.Context(), m))
			for range 50 {
				st := m.Status()
				if st.HasRSSI != tt.hasRSSI {
					t.Fatalf("HasRSSI: got %v, want %v", st.HasRSSI, tt.hasRSSI)
				}
				if tt.hasRSSI && (st.RSSI < -75 || st.RSSI > -65) {
					t.Fatalf("RSSI: got %d, want within -70±5", st.RSSI)
				}
				if !tt.hasRSSI && st.Quality != 100 {
					t.Fatalf("wired quality: got %d, want 100", st.Quality)
				}
				if tt.hasRSSI && st.Quality != 2*(st.RSSI+100) {
					t.Fatalf("quality: got %d for RSSI %d, want %d", st.Quality, st.RSSI, 2*(st.RSSI+100))
				}
			}
		})
	}
}

func TestConnectCancelled(t *testing.T) {
	fn := &fakeNet{up: map[string]bool{}}
	clk := hal.NewManualClock(epoch)
	m := newManager(t, fn, clk, "a:1")
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { _, err := m.Connect(ctx); errc <- err }()
	if !clk.WaitForTimers(1, 5*time.Second) {
		t.Fatal("no backoff wait")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect: got %v, want context.Canceled", err)
	}
}

func TestLoopbackFailover(t *testing.T) {
	// A real dead port first, a real listener second.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	m, err := link.New(link.Config{Endpoints: []string{deadAddr, ln.Addr().String()},
		Backoff: link.Backoff{Base: time.Millisecond, Max: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := m.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, want := c.Endpoint(), ln.Addr().String(); got != want {
		t.Errorf("endpoint: got %s, want %s", got, want)
	}
}

func TestNoEndpoints(t *testing.T) {
	if _, err := link.New(link.Config{}); !errors.Is(err, link.ErrNoEndpoints) {
		t.Fatalf("New: got %v, want ErrNoEndpoints", err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
