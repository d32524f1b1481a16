package session_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// TestListenerClosedByOwner: closing a listener ends its Serve call with
// net.ErrClosed instead of retrying, and the sessions it brought go on.
func TestListenerClosedByOwner(t *testing.T) {
	h := startHarness(t, session.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- h.srv.ServeSessions(ln, h.pki.serverTLS) }()
	d := h.dial(t, ln.Addr().String(), "dev-1")
	h.rec.waitFor(t, "the session", func() bool { return h.rec.opened["dev-1"] != nil })
	_ = ln.Close()
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ServeSessions returned %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeSessions still running after its listener was closed")
	}
	id := d.send(&protocol.Heartbeat{})
	if env := d.mustRead(); env.MessageID != id {
		t.Errorf("after the listener closed: got %+v, want the heartbeat's ack", env)
	}
}

// TestCloseThenShutdown: Close drops sessions without a goodbye, and a
// Shutdown after it only waits.
func TestCloseThenShutdown(t *testing.T) {
	h := startHarness(t, session.Config{})
	d := h.dial(t, h.addr, "dev-1")
	h.rec.waitFor(t, "the session", func() bool { return h.rec.opened["dev-1"] != nil })
	h.srv.Close()
	if env, err := d.read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after Close the device got %+v, %v; want the connection closed without a goodbye", env, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
}
