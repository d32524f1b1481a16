package session_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// testPKI is a certificate authority with the gateway's TLS configurations.
type testPKI struct {
	ca        *pki.Authority
	serverTLS *tls.Config
	enrollTLS *tls.Config
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := ca.IssueGateway(pki.GatewayOptions{Name: "gw", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := gw.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	v, err := ca.DeviceVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := pki.ServerTLSConfig(pki.ServerOptions{Certificate: cert, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	enr, err := pki.EnrollmentServerTLSConfig(pki.ServerOptions{Certificate: cert, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, serverTLS: srv, enrollTLS: enr}
}

// deviceTLS returns a device's client configuration with a certificate for
// id (none when id is empty).
func (p *testPKI) deviceTLS(t testing.TB, id string) *tls.Config {
	t.Helper()
	var certp *tls.Certificate
	if id != "" {
		pub, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := p.ca.IssueDevice(pub, pki.DeviceOptions{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := pki.NewTLSCertificate(key, c.Leaf, c.Chain...)
		if err != nil {
			t.Fatal(err)
		}
		certp = &cert
	}
	cfg, err := pki.ClientTLSConfig(pki.ClientOptions{Root: p.ca.Root.Cert, GatewayCA: p.ca.GatewayCA.Cert, Certificate: certp, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// recorder is a Handler that records what it sees.
type recorder struct {
	mu       sync.Mutex
	refuse   map[string]error // device id → refusal
	opened   map[string]*session.Session
	handled  []protocol.Envelope
	closed   map[string]session.CloseReason
	changed  chan struct{}
	handleFn func(*session.Session, protocol.Envelope)
	openFn   func(*session.Session) // when set, called first by Open
}

func newRecorder() *recorder {
	return &recorder{refuse: map[string]error{}, opened: map[string]*session.Session{},
		closed: map[string]session.CloseReason{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) Open(_ context.Context, s *session.Session) error {
	if r.openFn != nil {
		r.openFn(s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refuse[s.DeviceID()]; err != nil {
		return err
	}
	r.opened[s.DeviceID()] = s
	r.notify()
	return nil
}

func (r *recorder) Handle(s *session.Session, env protocol.Envelope) {
	r.mu.Lock()
	r.handled = append(r.handled, env)
	fn := r.handleFn
	r.notify()
	r.mu.Unlock()
	if fn != nil {
		fn(s, env)
	}
}

func (r *recorder) Closed(s *session.Session, reason session.CloseReason, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed[s.DeviceID()] = reason
	r.notify()
}

func (r *recorder) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor polls cond whenever the recorder changes, for up to 10 seconds.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// mode runs a test with idle sessions parked in the poller and with a
// goroutine per session.
var modes = []struct {
	name      string
	goroutine bool
}{{"parked", false}, {"goroutine", true}}

// harness is a running server with its listeners.
type harness struct {
	pki    *testPKI
	srv    *session.Server
	rec    *recorder
	reg    *prometheus.Registry
	addr   string
	enroll string
}

func startHarness(t *testing.T, cfg session.Config) *harness {
	t.Helper()
	h := &harness{pki: newTestPKI(t), rec: newRecorder(), reg: prometheus.NewRegistry()}
	if cfg.Handler == nil {
		cfg.Handler = h.rec
	}
	m, err := session.NewMetrics(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics = m
	h.srv, err = session.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr, h.enroll = ln.Addr().String(), eln.Addr().String()
	served := make(chan error, 2)
	go func() { served <- h.srv.ServeSessions(ln, h.pki.serverTLS) }()
	go func() { served <- h.srv.ServeEnrollment(eln, h.pki.enrollTLS) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for range 2 {
			if err := <-served; !errors.Is(err, session.ErrServerClosed) {
				t.Errorf("serve returned %v, want ErrServerClosed", err)
			}
		}
	})
	return h
}

// device is a protocol-level device client over real TLS.
type device struct {
	t    testing.TB
	conn *tls.Conn
	r    *protocol.Reader
	w    *protocol.Writer
	ids  *protocol.IDs
}

var deviceCodec = func() *protocol.Codec {
	c, err := protocol.NewCodec(protocol.Device, protocol.Limits{})
	if err != nil {
		panic(err)
	}
	return c
}()

// dial connects a device with a certificate for id to addr.
func (h *harness) dial(t testing.TB, addr, id string) *device {
	t.Helper()
	d, err := h.tryDial(t, addr, id)
	if err != nil {
		t.Fatalf("dial %s as %q: %v", addr, id, err)
	}
	return d
}

func (h *harness) tryDial(t testing.TB, addr, id string) (*device, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(raw, h.pki.deviceTLS(t, id))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = tc.Close() })
	ids, _ := protocol.NewIDs(protocol.Device)
	return &device{t: t, conn: tc, r: protocol.NewReader(tc, deviceCodec), w: protocol.NewWriter(tc, deviceCodec), ids: ids}, nil
}

func (d *device) send(m protocol.Message) uint64 {
	d.t.Helper()
	id := d.ids.Next()
	d.reply(id, m)
	return id
}

func (d *device) reply(id uint64, m protocol.Message) {
	d.t.Helper()
	if err := d.w.WriteEnvelope(protocol.Envelope{Version: protocol.Version, MessageID: id, Message: m}); err != nil {
		d.t.Fatalf("device write: %v", err)
	}
}

func (d *device) read() (protocol.Envelope, error) {
	_ = d.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return d.r.ReadEnvelope()
}

func (d *device) mustRead() protocol.Envelope {
	d.t.Helper()
	env, err := d.read()
	if err != nil {
		d.t.Fatalf("device read: %v", err)
	}
	return env
}

// counter returns the value of a counter (or gauge) with labels.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}
