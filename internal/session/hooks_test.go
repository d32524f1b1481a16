package session_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// The options and methods tested here exist for the firmware's test
// gateway; each leaves the product's behaviour unchanged when not used.

// observed collects what Config.Observe is shown.
type observed struct {
	mu   sync.Mutex
	envs []protocol.Envelope
}

func (o *observed) observe(_ *session.Session, env protocol.Envelope) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.envs = append(o.envs, env)
}

func (o *observed) types() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, env := range o.envs {
		out = append(out, env.Message.Type().String())
	}
	return out
}

// TestObserveSeesEveryMessage: heartbeats, replies to requests, statuses,
// renewal requests and the goodbye are all shown, in the order they came.
func TestObserveSeesEveryMessage(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			obs := &observed{}
			h := startHarness(t, session.Config{Observe: obs.observe, Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			d := h.dial(t, h.addr, "dev-1")
			d.send(&protocol.Heartbeat{})
			d.mustRead() // the ack
			var s *session.Session
			h.rec.waitFor(t, "the session", func() bool { s = h.rec.opened["dev-1"]; return s != nil })
			got := make(chan error, 1)
			go func() {
				_, err := s.Request(t.Context(), &protocol.Start{App: "a"})
				got <- err
			}()
			req := d.mustRead()
			d.reply(req.MessageID, &protocol.AppStatus{App: "a", State: protocol.StateRunning})
			if err := <-got; err != nil {
				t.Fatalf("Request: %v", err)
			}
			d.send(&protocol.MetricsReport{})
			d.send(&protocol.RenewRequest{CSR: []byte("csr")})
			d.mustRead() // Error(unsupported): no Renewer
			d.send(&protocol.Disconnect{Reason: protocol.DisconnectShutdown})
			h.rec.waitFor(t, "the goodbye", func() bool { return h.rec.closed["dev-1"] == session.CloseGoodbye })
			want := []string{"Heartbeat", "AppStatus", "MetricsReport", "RenewRequest", "Disconnect"}
			gotTypes := obs.types()
			if len(gotTypes) != len(want) {
				t.Fatalf("observed %v, want %v", gotTypes, want)
			}
			for i := range want {
				if gotTypes[i] != want[i] {
					t.Fatalf("observed %v, want %v", gotTypes, want)
				}
			}
			if obs.envs[1].MessageID != req.MessageID {
				t.Errorf("observed reply id %d, want the request's %d", obs.envs[1].MessageID, req.MessageID)
			}
		})
	}
}

// TestNoHeartbeatAck: the heartbeat reaches the handler, and the first
// frame the device gets after it is the gateway's next request, not an ack.
func TestNoHeartbeatAck(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			h := startHarness(t, session.Config{NoHeartbeatAck: true, Limits: session.Limits{GoroutinePerSession: mode.goroutine}})
			d := h.dial(t, h.addr, "dev-1")
			d.send(&protocol.Heartbeat{})
			var s *session.Session
			h.rec.waitFor(t, "the heartbeat to reach the handler", func() bool {
				s = h.rec.opened["dev-1"]
				return s != nil && len(h.rec.handled) == 1
			})
			if err := s.Send(&protocol.Stop{App: "a"}); err != nil {
				t.Fatal(err)
			}
			if env := d.mustRead(); env.Message.Type() != protocol.TypeStop {
				t.Fatalf("device got %s first, want the Stop (no heartbeat ack)", env.Message.Type())
			}
			if n := counter(t, h.reg, "wasmbed_gateway_heartbeats_total", nil); n != 0 {
				t.Errorf("heartbeats_total = %v, want 0 answered", n)
			}
		})
	}
}

// TestRenewerNoReply: a Renewer's ErrNoReply sends nothing; the session
// goes on.
func TestRenewerNoReply(t *testing.T) {
	r := &renewer{refuse: session.ErrNoReply, got: make(chan []byte, 1)}
	h := startHarness(t, session.Config{Renewer: r})
	d := h.dial(t, h.addr, "dev-1")
	d.send(&protocol.RenewRequest{CSR: []byte("csr")})
	<-r.got
	waitCounter(t, h, "wasmbed_gateway_renewals_total", map[string]string{"result": "unanswered"}, 1)
	hb := d.send(&protocol.Heartbeat{})
	env := d.mustRead()
	if _, ok := env.Message.(*protocol.HeartbeatAck); !ok || env.MessageID != hb {
		t.Fatalf("device got %+v (%#v) first, want the heartbeat's ack (the renewal unanswered)", env, env.Message)
	}
	if n := counter(t, h.reg, "wasmbed_gateway_renewals_total", map[string]string{"result": "refused"}); n != 0 {
		t.Errorf("renewals_total{result=refused} = %v, want 0", n)
	}
}

// TestRequestFrame sends a message type the device does not know and gets
// the device's refusal back as the reply.
func TestRequestFrame(t *testing.T) {
	h := startHarness(t, session.Config{})
	d := h.dial(t, h.addr, "dev-1")
	var s *session.Session
	h.rec.waitFor(t, "the session", func() bool { s = h.rec.opened["dev-1"]; return s != nil })
	body := []byte{0x84, 0x01, 0x19, 0x03, 0xe8, 0x18, 0x63, 0xa0} // version 1, id 1000, type 99, {}
	type result struct {
		env protocol.Envelope
		err error
	}
	got := make(chan result, 1)
	go func() {
		env, err := s.RequestFrame(t.Context(), 1000, body)
		got <- result{env, err}
	}()
	frame, err := d.r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if string(frame) != string(body) {
		t.Fatalf("device got frame %x, want %x", frame, body)
	}
	d.reply(1000, &protocol.Error{Code: protocol.CodeUnsupported})
	res := <-got
	var perr *protocol.Error
	if !errors.As(res.err, &perr) || perr.Code != protocol.CodeUnsupported || res.env.MessageID != 1000 {
		t.Fatalf("RequestFrame: got %+v, %v; want the Error(unsupported) reply to 1000", res.env, res.err)
	}
	if _, err := s.RequestFrame(t.Context(), 1001, body); !errors.Is(err, session.ErrMessageID) {
		t.Errorf("RequestFrame with a device id: got %v, want ErrMessageID", err)
	}
}
