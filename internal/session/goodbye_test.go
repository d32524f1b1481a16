package session_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// A gateway that closes a connection with input unread resets it, and a
// device still writing (a device announces itself as soon as its handshake
// ends) then fails its write before it reads the goodbye: it takes the
// session for lost, not refused, revoked or replaced. These tests leave
// input unread, make the gateway say goodbye, and check the device reads
// the goodbye and then a FIN, not a reset.

// expectGoodbye reads the goodbye, TLS's close_notify, and the end of the
// TCP stream below it.
func expectGoodbye(t *testing.T, d *device, reason protocol.DisconnectReason) {
	t.Helper()
	env, err := d.read()
	if err != nil {
		t.Fatalf("device read: %v, want the goodbye", err)
	}
	if m, ok := env.Message.(*protocol.Disconnect); !ok || m.Reason != reason {
		t.Fatalf("got %#v, want Disconnect %v", env.Message, reason)
	}
	if _, err := d.read(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the goodbye: got %v, want TLS's close_notify", err)
	}
	raw := d.conn.NetConn()
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("TCP end: got %v, want EOF (a FIN, no reset)", err)
	}
}

// TestGoodbyeSurvivesUnreadInput closes a live session with a goodbye while
// the device's last frames are unread.
func TestGoodbyeSurvivesUnreadInput(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			release := make(chan struct{})
			h.rec.mu.Lock()
			h.rec.handleFn = func(*session.Session, protocol.Envelope) { <-release }
			h.rec.mu.Unlock()
			defer close(release)
			d := h.dial(t, h.addr, "dev-1")
			var s *session.Session
			h.rec.waitFor(t, "the session", func() bool { s = h.rec.opened["dev-1"]; return s != nil })
			d.send(&protocol.Heartbeat{})
			d.mustRead() // the ack; the session now waits in Handle
			for range 4 {
				d.send(&protocol.MetricsReport{})
			}
			s.Close(session.CloseRevoked, &protocol.Disconnect{Reason: protocol.DisconnectRevoked})
			h.rec.waitFor(t, "the close", func() bool { return h.rec.closed["dev-1"] == session.CloseRevoked })
			expectGoodbye(t, d, protocol.DisconnectRevoked)
		})
	}
}

// TestRefusalSurvivesUnreadInput refuses a device that already announced
// itself.
func TestRefusalSurvivesUnreadInput(t *testing.T) {
	h := startHarness(t, session.Config{})
	h.rec.refuse["dev-x"] = &session.Refusal{Disconnect: protocol.DisconnectRevoked, Reason: "Revoked", Text: "device revoked"}
	entered, gate := make(chan struct{}), make(chan struct{})
	h.rec.openFn = func(*session.Session) {
		close(entered)
		<-gate
	}
	d := h.dial(t, h.addr, "dev-x")
	<-entered
	d.send(&protocol.Heartbeat{}) // unread: the gateway is still deciding
	close(gate)
	// Shutdown waits for the server's goroutines: the refusal is done.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expectGoodbye(t, d, protocol.DisconnectRevoked)
}
