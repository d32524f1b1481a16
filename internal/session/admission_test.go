package session_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// openSilent opens n TCP connections from src that never send a byte: the
// start of a slow-handshake flood.
func openSilent(t *testing.T, src, addr string, n int) []net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood dial from %s: %v", src, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return conns
}

// TestSlowHandshakeFloodDoesNotStarveDevices fills the pending-connection
// allowance of several source addresses with connections that never send a
// ClientHello, and checks a legitimate device still connects at once; the
// flood's excess is refused by the per-source limit and counted.
func TestSlowHandshakeFloodDoesNotStarveDevices(t *testing.T) {
	const perSource = 8
	h := startHarness(t, session.Config{Limits: session.Limits{
		MaxPendingPerSource: perSource,
		MaxPendingConns:     64,
		HelloTimeout:        30 * time.Second, // longer than the test: the flood holds on
	}})
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		openSilent(t, src, h.addr, perSource+4)
	}
	waitCounter(t, h, "wasmbed_gateway_connections_refused_total", map[string]string{"limit": "per_source"}, 12)

	d := h.dial(t, h.addr, "dev-1")
	id := d.send(&protocol.Heartbeat{})
	if env := d.mustRead(); env.MessageID != id {
		t.Fatalf("got %+v, want the heartbeat's ack", env)
	}
}

// TestHelloTimeout checks that a connection that never sends a ClientHello
// is dropped after HelloTimeout and counted as a timed-out handshake.
func TestHelloTimeout(t *testing.T) {
	h := startHarness(t, session.Config{Limits: session.Limits{HelloTimeout: 200 * time.Millisecond}})
	c := openSilent(t, "127.0.0.1", h.addr, 1)[0]
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the gateway sent bytes to a connection without a ClientHello")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the silent connection was not dropped")
	}
	waitCounter(t, h, "wasmbed_gateway_handshakes_total", map[string]string{"result": "timeout"}, 1)
}

// TestHandshakeSlots shows the handshake-slot limit at work: with one slot
// held by a stalled handshake, a second ClientHello waits and is refused
// once HelloTimeout passes, and succeeds as soon as the slot is free.
func TestHandshakeSlots(t *testing.T) {
	h := startHarness(t, session.Config{Limits: session.Limits{MaxHandshakes: 1, HelloTimeout: 300 * time.Millisecond,
		HandshakeTimeout: 30 * time.Second}})
	// Take the slot: send a ClientHello, then stall before the client's
	// second flight. The server holds the slot while it waits.
	stalled, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	hello := clientHello(t, h)
	if _, err := stalled.Write(hello); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := h.tryDial(t, h.addr, "dev-1"); err == nil {
		t.Fatal("a handshake completed while the only slot was held")
	}
	waitCounter(t, h, "wasmbed_gateway_connections_refused_total", map[string]string{"limit": "handshake_slots"}, 1)
	_ = stalled.Close()
	time.Sleep(50 * time.Millisecond)
	h.dial(t, h.addr, "dev-2")
}

// clientHello captures the first flight of a device's handshake.
func clientHello(t *testing.T, h *harness) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cfg := h.pki.deviceTLS(t, "dev-hello")
	go func() {
		c := tls.Client(a, cfg)
		_ = c.HandshakeContext(context.Background())
	}()
	buf := make([]byte, 4096)
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestMaxSessions(t *testing.T) {
	h := startHarness(t, session.Config{Limits: session.Limits{MaxSessions: 2}})
	h.dial(t, h.addr, "dev-1")
	h.dial(t, h.addr, "dev-2")
	h.rec.waitFor(t, "two sessions", func() bool { return h.srv.Sessions() == 2 })
	if _, err := h.tryDial(t, h.addr, "dev-3"); err == nil {
		t.Fatal("a third session was accepted with MaxSessions 2")
	}
	waitCounter(t, h, "wasmbed_gateway_connections_refused_total", map[string]string{"limit": "max_sessions"}, 1)
}

func waitCounter(t *testing.T, h *harness, name string, labels map[string]string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := counter(t, h.reg, name, labels)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want at least %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
