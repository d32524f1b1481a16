package session_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// enroller issues a fixed identity, or refuses.
type enroller struct {
	mu       sync.Mutex
	refuse   error
	exporter []byte
	acked    []string
}

func (e *enroller) Enroll(_ context.Context, en *session.Enrollment) (*protocol.EnrollResponse, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.refuse != nil {
		return nil, e.refuse
	}
	x, err := en.State.ExportKeyingMaterial("EXPORTER-test", nil, 32)
	if err != nil {
		return nil, err
	}
	e.exporter = x
	en.Value = "kept"
	return &protocol.EnrollResponse{DeviceID: en.Request.DeviceType + "-1", CertChain: [][]byte{{1}}, SigningKey: make([]byte, 32)}, nil
}

func (e *enroller) Enrolled(_ context.Context, en *session.Enrollment, ack *protocol.EnrollAck) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if en.Value != "kept" {
		return errors.New("enrollment value lost")
	}
	e.acked = append(e.acked, ack.DeviceID)
	return nil
}

func TestEnrollmentExchange(t *testing.T) {
	e := &enroller{}
	h := startHarness(t, session.Config{Enroller: e})
	d := h.dial(t, h.enroll, "")
	req := d.send(&protocol.EnrollRequest{PublicKey: make([]byte, 32), KeyAlgorithm: protocol.KeyEd25519, DeviceType: "esp32", CSR: []byte{1}})
	env := d.mustRead()
	resp, ok := env.Message.(*protocol.EnrollResponse)
	if !ok || env.MessageID != req || resp.DeviceID != "esp32-1" {
		t.Fatalf("got %+v (%#v), want EnrollResponse for esp32-1", env, env.Message)
	}
	// The exporter the Enroller saw is the one of this connection.
	cs := d.conn.ConnectionState()
	want, err := cs.ExportKeyingMaterial("EXPORTER-test", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	if string(e.exporter) != string(want) {
		t.Error("the Enroller's exporter value differs from the device's")
	}
	ack := d.send(&protocol.EnrollAck{DeviceID: "esp32-1"})
	if env := d.mustRead(); env.MessageID != ack {
		t.Fatalf("got %+v, want Ack of the EnrollAck", env)
	} else if _, ok := env.Message.(*protocol.Ack); !ok {
		t.Fatalf("got %#v, want Ack", env.Message)
	}
	if len(e.acked) != 1 || e.acked[0] != "esp32-1" {
		t.Errorf("Enrolled calls: got %v, want [esp32-1]", e.acked)
	}
	d.send(&protocol.Disconnect{Reason: protocol.DisconnectEnrolled})
	waitCounter(t, h, "wasmbed_gateway_enrollments_total", map[string]string{"result": "ok"}, 1)
}

func TestEnrollmentRefusals(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*session.Config)
		send  func(d *device)
		code  protocol.ErrorCode
		count string
	}{
		{
			name: "no enroller",
			cfg:  func(c *session.Config) { c.Enroller = nil },
			send: func(d *device) {
				d.send(&protocol.EnrollRequest{PublicKey: make([]byte, 32), KeyAlgorithm: protocol.KeyEd25519, DeviceType: "esp32", CSR: []byte{1}})
			},
			code:  protocol.CodeUnauthorized,
			count: "PairingClosed",
		},
		{
			name: "pairing closed",
			cfg: func(c *session.Config) {
				c.Enroller = &enroller{refuse: &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "PairingClosed", Text: "no pairing window open"}}
			},
			send: func(d *device) {
				d.send(&protocol.EnrollRequest{PublicKey: make([]byte, 32), KeyAlgorithm: protocol.KeyEd25519, DeviceType: "esp32", CSR: []byte{1}})
			},
			code:  protocol.CodeUnauthorized,
			count: "PairingClosed",
		},
		{
			name: "internal error stays internal",
			cfg:  func(c *session.Config) { c.Enroller = &enroller{refuse: errors.New("etcd on fire")} },
			send: func(d *device) {
				d.send(&protocol.EnrollRequest{PublicKey: make([]byte, 32), KeyAlgorithm: protocol.KeyEd25519, DeviceType: "esp32", CSR: []byte{1}})
			},
			code:  protocol.CodeInternal,
			count: "Internal",
		},
		{
			name:  "session message on the enrollment port",
			cfg:   func(c *session.Config) { c.Enroller = &enroller{} },
			send:  func(d *device) { d.send(&protocol.Heartbeat{}) },
			code:  protocol.CodeUnexpected,
			count: "",
		},
		{
			name:  "ack without enrollment",
			cfg:   func(c *session.Config) { c.Enroller = &enroller{} },
			send:  func(d *device) { d.send(&protocol.EnrollAck{DeviceID: "esp32-1"}) },
			code:  protocol.CodeUnexpected,
			count: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg session.Config
			tt.cfg(&cfg)
			h := startHarness(t, cfg)
			d := h.dial(t, h.enroll, "")
			tt.send(d)
			env := d.mustRead()
			e, ok := env.Message.(*protocol.Error)
			if !ok || e.Code != tt.code {
				t.Fatalf("got %#v, want Error %v", env.Message, tt.code)
			}
			if e.Code == protocol.CodeInternal && e.Text != "internal error" {
				t.Errorf("internal detail leaked to the device: %q", e.Text)
			}
			if _, err := d.read(); err == nil {
				t.Error("the enrollment connection stayed open after the refusal")
			}
			if tt.count != "" {
				waitCounter(t, h, "wasmbed_gateway_enrollments_total", map[string]string{"result": tt.count}, 1)
			}
		})
	}
}

// blockingEnroller holds every Enroll call until release is closed.
type blockingEnroller struct {
	enroller
	entered chan struct{}
	release chan struct{}
}

func (e *blockingEnroller) Enroll(ctx context.Context, en *session.Enrollment) (*protocol.EnrollResponse, error) {
	e.entered <- struct{}{}
	<-e.release
	return e.enroller.Enroll(ctx, en)
}

// TestEnrollmentSlots checks Limits.MaxEnrollments and EnrollWait: with the
// one slot taken, a further EnrollRequest waits for it and is answered once
// it frees up, or is refused "unavailable" (counted as Busy) when the wait
// runs out first.
func TestEnrollmentSlots(t *testing.T) {
	req := func() *protocol.EnrollRequest {
		return &protocol.EnrollRequest{PublicKey: make([]byte, 32), KeyAlgorithm: protocol.KeyEd25519, DeviceType: "esp32", CSR: []byte{1}}
	}
	start := func(t *testing.T, wait time.Duration) (*harness, *blockingEnroller, func()) {
		e := &blockingEnroller{entered: make(chan struct{}, 4), release: make(chan struct{})}
		h := startHarness(t, session.Config{Enroller: e, Limits: session.Limits{MaxEnrollments: 1, EnrollWait: wait}})
		var once sync.Once
		release := func() { once.Do(func() { close(e.release) }) }
		t.Cleanup(release) // before the harness stops: a failed check must not leave Enroll blocked
		return h, e, release
	}
	t.Run("the wait runs out", func(t *testing.T) {
		h, e, release := start(t, 50*time.Millisecond)
		first := h.dial(t, h.enroll, "")
		first.send(req())
		<-e.entered
		second := h.dial(t, h.enroll, "")
		second.send(req())
		env := second.mustRead()
		if m, ok := env.Message.(*protocol.Error); !ok || m.Code != protocol.CodeUnavailable {
			t.Fatalf("second enrollment while the only slot is taken: got %#v, want Error unavailable (MaxEnrollments)", env.Message)
		}
		waitCounter(t, h, "wasmbed_gateway_enrollments_total", map[string]string{"result": session.ReasonBusy}, 1)
		release()
		if _, ok := first.mustRead().Message.(*protocol.EnrollResponse); !ok {
			t.Fatal("the first enrollment was not answered")
		}
	})
	t.Run("the slot frees up", func(t *testing.T) {
		h, e, release := start(t, time.Minute)
		first := h.dial(t, h.enroll, "")
		first.send(req())
		<-e.entered
		second := h.dial(t, h.enroll, "")
		second.send(req())
		waitCounter(t, h, "wasmbed_gateway_enrollments_waiting", nil, 1)
		release()
		for i, d := range []*device{first, second} {
			if env := d.mustRead(); env.Message.Type() != protocol.TypeEnrollResponse {
				t.Fatalf("enrollment %d: got %#v, want EnrollResponse", i+1, env.Message)
			}
		}
		if n := counter(t, h.reg, "wasmbed_gateway_enrollments_total", map[string]string{"result": session.ReasonBusy}); n != 0 {
			t.Errorf("enrollments_total{Busy} = %v, want 0", n)
		}
	})
}

// renewer answers with a fixed chain or refuses.
type renewer struct {
	refuse error
	got    chan []byte
}

func (r *renewer) Renew(_ context.Context, s *session.Session, csr []byte) ([][]byte, error) {
	r.got <- csr
	if r.refuse != nil {
		return nil, r.refuse
	}
	return [][]byte{[]byte(s.DeviceID())}, nil
}

func TestRenewal(t *testing.T) {
	r := &renewer{got: make(chan []byte, 2)}
	h := startHarness(t, session.Config{Renewer: r})
	d := h.dial(t, h.addr, "dev-1")
	id := d.send(&protocol.RenewRequest{CSR: []byte("csr")})
	env := d.mustRead()
	resp, ok := env.Message.(*protocol.RenewResponse)
	if !ok || env.MessageID != id || string(resp.CertChain[0]) != "dev-1" {
		t.Fatalf("got %+v (%#v), want RenewResponse for dev-1", env, env.Message)
	}
	if got := <-r.got; string(got) != "csr" {
		t.Errorf("Renewer got CSR %q", got)
	}
	r.refuse = &session.Refusal{Code: protocol.CodeRefused, Reason: "KeyMismatch", Text: "key change not allowed"}
	id = d.send(&protocol.RenewRequest{CSR: []byte("other")})
	env = d.mustRead()
	if e, ok := env.Message.(*protocol.Error); !ok || e.Code != protocol.CodeRefused || env.MessageID != id {
		t.Fatalf("got %+v (%#v), want Error refused", env, env.Message)
	}
	// The session survives a refused renewal.
	hb := d.send(&protocol.Heartbeat{})
	if env := d.mustRead(); env.MessageID != hb {
		t.Errorf("after the refusal: got %+v, want the heartbeat's ack", env)
	}
}

func TestRenewalWithoutRenewer(t *testing.T) {
	h := startHarness(t, session.Config{})
	d := h.dial(t, h.addr, "dev-1")
	d.send(&protocol.RenewRequest{CSR: []byte("csr")})
	if e, ok := d.mustRead().Message.(*protocol.Error); !ok || e.Code != protocol.CodeUnsupported {
		t.Fatalf("got %#v, want Error unsupported", e)
	}
}
