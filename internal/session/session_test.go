package session_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

func TestRequestReplyAndHeartbeat(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine},
				HeartbeatInterval: 15 * time.Second})
			if got := h.srv.Parked(); got == mode.goroutine {
				t.Fatalf("Parked() = %v in %s mode", got, mode.name)
			}
			d := h.dial(t, h.addr, "dev-1")
			hb := d.send(&protocol.Heartbeat{UptimeSeconds: 5})
			env := d.mustRead()
			ack, ok := env.Message.(*protocol.HeartbeatAck)
			if !ok || env.MessageID != hb || ack.IntervalSeconds != 15 {
				t.Fatalf("heartbeat reply: got %+v (%#v), want HeartbeatAck{interval 15} for id %d", env, env.Message, hb)
			}
			var s *session.Session
			h.rec.waitFor(t, "the heartbeat to reach the handler", func() bool {
				s = h.rec.opened["dev-1"]
				return s != nil && len(h.rec.handled) == 1
			})

			got := make(chan error, 1)
			go func() {
				env, err := s.Request(t.Context(), &protocol.Start{App: "blinky"})
				if err == nil {
					if st, ok := env.Message.(*protocol.AppStatus); !ok || st.State != protocol.StateRunning {
						err = fmt.Errorf("got %#v, want AppStatus running", env.Message)
					}
				}
				got <- err
			}()
			req := d.mustRead()
			if _, ok := req.Message.(*protocol.Start); !ok || !protocol.Owns(protocol.Gateway, req.MessageID) {
				t.Fatalf("device got %+v, want Start with a gateway id", req)
			}
			d.reply(req.MessageID, &protocol.AppStatus{App: "blinky", State: protocol.StateRunning})
			if err := <-got; err != nil {
				t.Fatalf("Request: %v", err)
			}

			// A refusal comes back as *protocol.Error.
			go func() {
				_, err := s.Request(t.Context(), &protocol.Stop{App: "missing"})
				got <- err
			}()
			req = d.mustRead()
			d.reply(req.MessageID, &protocol.Error{Code: protocol.CodeNotFound, Text: "missing"})
			var perr *protocol.Error
			if err := <-got; !errors.As(err, &perr) || perr.Code != protocol.CodeNotFound {
				t.Fatalf("Request refused: got %v, want *protocol.Error not found", err)
			}
		})
	}
}

// TestFramesInOneRecordAreAllServed sends two frames in one write: the
// second sits in crypto/tls's buffer, where epoll cannot see it, and must be
// served without waiting for more bytes.
func TestFramesInOneRecordAreAllServed(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			d := h.dial(t, h.addr, "dev-1")
			var frames []byte
			for i := range 3 {
				b, err := protocol.AppendFrame(nil, protocol.Envelope{Version: protocol.Version, MessageID: uint64(2*i + 1),
					Message: &protocol.AppStatus{App: fmt.Sprint("app", i), State: protocol.StateRunning}})
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, b...)
			}
			if _, err := d.conn.Write(frames); err != nil {
				t.Fatal(err)
			}
			h.rec.waitFor(t, "three statuses", func() bool { return len(h.rec.handled) == 3 })
		})
	}
}

func TestRefusedDevice(t *testing.T) {
	tests := []struct {
		name    string
		refusal *session.Refusal
		check   func(t *testing.T, env protocol.Envelope)
	}{
		{
			name:    "unknown",
			refusal: &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "UnknownDevice", Text: "unknown device"},
			check: func(t *testing.T, env protocol.Envelope) {
				if e, ok := env.Message.(*protocol.Error); !ok || e.Code != protocol.CodeUnauthorized {
					t.Errorf("got %#v, want Error unauthorized", env.Message)
				}
			},
		},
		{
			name:    "revoked",
			refusal: &session.Refusal{Disconnect: protocol.DisconnectRevoked, Reason: "Revoked", Text: "device revoked"},
			check: func(t *testing.T, env protocol.Envelope) {
				if d, ok := env.Message.(*protocol.Disconnect); !ok || d.Reason != protocol.DisconnectRevoked {
					t.Errorf("got %#v, want Disconnect revoked", env.Message)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startHarness(t, session.Config{})
			h.rec.refuse["dev-x"] = tt.refusal
			d := h.dial(t, h.addr, "dev-x")
			tt.check(t, d.mustRead())
			if _, err := d.read(); !errors.Is(err, io.EOF) {
				t.Errorf("after the refusal: got %v, want the connection closed", err)
			}
			if n := counter(t, h.reg, "wasmbed_gateway_sessions_refused_total", map[string]string{"reason": tt.refusal.Reason}); n != 1 {
				t.Errorf("sessions_refused_total{reason=%s} = %v, want 1", tt.refusal.Reason, n)
			}
			if h.srv.Sessions() != 0 {
				t.Errorf("Sessions() = %d after a refusal, want 0", h.srv.Sessions())
			}
		})
	}
}

// TestBadFrameEndsOnlyItsSession sends each kind of bad input on one
// session and checks the device gets an Error, the session ends with the
// protocol reason, and a second device's session is untouched.
func TestBadFrameEndsOnlyItsSession(t *testing.T) {
	tests := []struct {
		name   string
		send   func(d *device)
		code   protocol.ErrorCode
		metric string
	}{
		{
			name:   "malformed body",
			send:   func(d *device) { _ = d.w.WriteFrame([]byte{0x84, 0x01, 0x03, 0x07, 0xa1, 0x01}) }, // truncated map
			code:   protocol.CodeMalformed,
			metric: "malformed",
		},
		{
			name:   "oversized frame",
			send:   func(d *device) { _, _ = d.conn.Write([]byte{0xff, 0xff, 0xff, 0xff}) },
			code:   protocol.CodeTooLarge,
			metric: "too_large",
		},
		{
			name:   "gateway-only message",
			send:   func(d *device) { _ = d.w.WriteFrame(mustEncode(d.t, 1, &protocol.HeartbeatAck{ServerTime: 1})) },
			code:   protocol.CodeUnexpected,
			metric: "direction",
		},
		{
			name:   "enrollment inside a session",
			send:   func(d *device) { d.send(&protocol.EnrollAck{DeviceID: "dev-bad"}) },
			code:   protocol.CodeUnexpected,
			metric: "unexpected",
		},
		{
			name:   "reply to no request",
			send:   func(d *device) { d.reply(42, &protocol.ConfigAck{App: "a"}) },
			code:   protocol.CodeUnexpected,
			metric: "unexpected",
		},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
				good := h.dial(t, h.addr, "dev-good")
				bad := h.dial(t, h.addr, "dev-bad")
				h.rec.waitFor(t, "both sessions", func() bool { return len(h.rec.opened) == 2 })
				tt.send(bad)
				env := bad.mustRead()
				if e, ok := env.Message.(*protocol.Error); !ok || e.Code != tt.code {
					t.Fatalf("reply to bad input: got %#v, want Error %v", env.Message, tt.code)
				}
				h.rec.waitFor(t, "the bad session to close", func() bool { return h.rec.closed["dev-bad"] != "" })
				if got := h.rec.closed["dev-bad"]; got != session.CloseProtocol {
					t.Errorf("close reason: got %q, want %q", got, session.CloseProtocol)
				}
				if n := counter(t, h.reg, "wasmbed_gateway_frames_rejected_total", map[string]string{"reason": tt.metric}); n != 1 {
					t.Errorf("frames_rejected_total{reason=%s} = %v, want 1", tt.metric, n)
				}
				// The other session still works.
				id := good.send(&protocol.Heartbeat{})
				if env := good.mustRead(); env.MessageID != id {
					t.Errorf("other session: got %+v, want the heartbeat's ack", env)
				}
				if _, ok := h.rec.closed["dev-good"]; ok {
					t.Error("the good session was closed")
				}
			})
		}
	}
}

func mustEncode(t testing.TB, id uint64, m protocol.Message) []byte {
	t.Helper()
	b, err := protocol.Encode(protocol.Envelope{Version: protocol.Version, MessageID: id, Message: m})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnknownTypeKeepsSession checks the compatibility rule: a message type
// the gateway does not know gets Error(unsupported) and the session goes on.
func TestUnknownTypeKeepsSession(t *testing.T) {
	h := startHarness(t, session.Config{})
	d := h.dial(t, h.addr, "dev-1")
	if err := d.w.WriteFrame([]byte{0x84, 0x01, 0x18, 0x2b, 0x18, 0x63, 0xa0}); err != nil { // id 43, type 99
		t.Fatal(err)
	}
	env := d.mustRead()
	if e, ok := env.Message.(*protocol.Error); !ok || e.Code != protocol.CodeUnsupported || env.MessageID != 43 {
		t.Fatalf("got %+v (%#v), want Error unsupported for id 43", env, env.Message)
	}
	id := d.send(&protocol.Heartbeat{})
	if env := d.mustRead(); env.MessageID != id {
		t.Errorf("after the unknown type: got %+v, want the heartbeat's ack", env)
	}
}

func TestIdleSessionEnds(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine, IdleTimeout: 300 * time.Millisecond}})
			d := h.dial(t, h.addr, "dev-1")
			env := d.mustRead() // silent device: the gateway gives up
			if m, ok := env.Message.(*protocol.Disconnect); !ok || m.Reason != protocol.DisconnectTimeout {
				t.Fatalf("got %#v, want Disconnect timeout", env.Message)
			}
			h.rec.waitFor(t, "the close", func() bool { return h.rec.closed["dev-1"] == session.CloseIdle })
		})
	}
}

func TestGoodbye(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			d := h.dial(t, h.addr, "dev-1")
			d.send(&protocol.Disconnect{Reason: protocol.DisconnectShutdown})
			h.rec.waitFor(t, "the close", func() bool { return h.rec.closed["dev-1"] == session.CloseGoodbye })
			if n := counter(t, h.reg, "wasmbed_gateway_sessions", nil); n != 0 {
				t.Errorf("sessions gauge = %v after the goodbye, want 0", n)
			}
		})
	}
}

func TestCloseSendsGoodbyeAndFailsRequests(t *testing.T) {
	h := startHarness(t, session.Config{})
	d := h.dial(t, h.addr, "dev-1")
	var s *session.Session
	h.rec.waitFor(t, "the session", func() bool { s = h.rec.opened["dev-1"]; return s != nil })
	pending := make(chan error, 1)
	go func() {
		_, err := s.Request(t.Context(), &protocol.Start{App: "a"})
		pending <- err
	}()
	d.mustRead() // the Start, never answered
	s.Close(session.CloseReplaced, &protocol.Disconnect{Reason: protocol.DisconnectReplaced})
	env := d.mustRead()
	if m, ok := env.Message.(*protocol.Disconnect); !ok || m.Reason != protocol.DisconnectReplaced {
		t.Fatalf("got %#v, want Disconnect replaced", env.Message)
	}
	if err := <-pending; !errors.Is(err, session.ErrClosed) {
		t.Errorf("pending Request: got %v, want ErrClosed", err)
	}
	if err := s.Send(&protocol.Stop{App: "a"}); !errors.Is(err, session.ErrClosed) {
		t.Errorf("Send after close: got %v, want ErrClosed", err)
	}
	h.rec.waitFor(t, "the close", func() bool { return h.rec.closed["dev-1"] == session.CloseReplaced })
}

func TestShutdownSaysGoodbye(t *testing.T) {
	h := startHarness(t, session.Config{})
	d := h.dial(t, h.addr, "dev-1")
	h.rec.waitFor(t, "the session", func() bool { return h.rec.opened["dev-1"] != nil })
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(t.Context()) }()
	env := d.mustRead()
	if m, ok := env.Message.(*protocol.Disconnect); !ok || m.Reason != protocol.DisconnectShutdown {
		t.Fatalf("got %#v, want Disconnect shutdown", env.Message)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := h.tryDial(t, h.addr, "dev-2"); err == nil {
		t.Error("a device connected after Shutdown")
	}
}

// TestParkedSessionsHoldNoGoroutine bounds the goroutines of idle sessions:
// parked, a session holds none; with a goroutine per session, one each.
func TestParkedSessionsHoldNoGoroutine(t *testing.T) {
	const n = 40
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			before := runtime.NumGoroutine()
			devs := make([]*device, n)
			for i := range devs {
				devs[i] = h.dial(t, h.addr, fmt.Sprint("dev-", i))
				id := devs[i].send(&protocol.Heartbeat{})
				if env := devs[i].mustRead(); env.MessageID != id {
					t.Fatalf("device %d: got %+v, want the heartbeat's ack", i, env)
				}
			}
			h.rec.waitFor(t, "all sessions", func() bool { return len(h.rec.opened) == n })
			time.Sleep(50 * time.Millisecond) // let finished handshake goroutines exit
			grown := runtime.NumGoroutine() - before
			if mode.goroutine {
				if grown < 3*n/4 {
					t.Errorf("goroutine per session: %d more goroutines for %d sessions, want about one each", grown, n)
				}
				return
			}
			if grown > n/4 {
				t.Errorf("parked: %d more goroutines for %d idle sessions, want at most %d", grown, n, n/4)
			}
		})
	}
}

// TestConcurrentRequests hammers sessions with requests from many
// goroutines while devices send heartbeats and answer (run with -race).
func TestConcurrentRequests(t *testing.T) {
	const devices, requests = 8, 40
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			devs := make([]*device, devices)
			var wg sync.WaitGroup
			for i := range devs {
				devs[i] = h.dial(t, h.addr, fmt.Sprint("dev-", i))
				d := devs[i]
				wg.Go(func() { // the device: answer every command, heartbeat in between
					for {
						env, err := d.read()
						if err != nil {
							return
						}
						if st, ok := env.Message.(*protocol.Start); ok {
							d.reply(env.MessageID, &protocol.AppStatus{App: st.App, State: protocol.StateRunning})
							d.send(&protocol.Heartbeat{})
						}
					}
				})
			}
			h.rec.waitFor(t, "all sessions", func() bool { return len(h.rec.opened) == devices })
			var reqs sync.WaitGroup
			h.srv.Range(func(s *session.Session) bool {
				for i := range requests {
					reqs.Go(func() {
						app := fmt.Sprint("app-", i)
						env, err := s.Request(t.Context(), &protocol.Start{App: app})
						if err != nil {
							t.Errorf("%s %s: %v", s.DeviceID(), app, err)
							return
						}
						if st := env.Message.(*protocol.AppStatus); st.App != app {
							t.Errorf("%s: reply for %s routed to %s", s.DeviceID(), st.App, app)
						}
					})
				}
				return true
			})
			reqs.Wait()
			for _, d := range devs {
				_ = d.conn.Close()
			}
			wg.Wait()
		})
	}
}
