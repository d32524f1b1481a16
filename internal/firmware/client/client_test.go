package client_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// fakeApps records commands and answers with canned statuses.
type fakeApps struct {
	mu       sync.Mutex
	commands []string
	running  map[string]bool
}

func (f *fakeApps) record(cmd, app string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commands = append(f.commands, cmd+" "+app)
	if f.running == nil {
		f.running = map[string]bool{}
	}
	switch cmd {
	case "deploy", "start":
		f.running[app] = true
	case "stop", "remove":
		delete(f.running, app)
	}
}

func (f *fakeApps) Deploy(_ context.Context, m *protocol.Deploy) protocol.AppStatus {
	if string(m.Artifact) == "bad" {
		return protocol.AppStatus{App: m.App, State: protocol.StateRefused, Reason: protocol.ReasonBadSignature}
	}
	f.record("deploy", m.App)
	return protocol.AppStatus{App: m.App, Sequence: m.Sequence, State: protocol.StateRunning}
}

func (f *fakeApps) Update(_ context.Context, m *protocol.Update) protocol.AppStatus {
	f.record("update", m.App)
	return protocol.AppStatus{App: m.App, Sequence: m.Sequence, State: protocol.StateRunning}
}

func (f *fakeApps) Start(_ context.Context, m *protocol.Start) protocol.AppStatus {
	f.record("start", m.App)
	return protocol.AppStatus{App: m.App, State: protocol.StateRunning}
}

func (f *fakeApps) Stop(_ context.Context, m *protocol.Stop) protocol.AppStatus {
	f.record("stop", m.App)
	return protocol.AppStatus{App: m.App, State: protocol.StateStopped}
}

func (f *fakeApps) Remove(_ context.Context, m *protocol.Remove) protocol.AppStatus {
	f.record("remove", m.App)
	return protocol.AppStatus{App: m.App, State: protocol.StateRemoved}
}

func (f *fakeApps) Configure(_ context.Context, m *protocol.ConfigPush) error {
	if m.Values["bad"] != "" {
		return errors.New("invalid configuration")
	}
	f.record("config", m.App)
	return nil
}

func (f *fakeApps) Statuses(dst []protocol.AppStatus) []protocol.AppStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	for app := range f.running {
		dst = append(dst, protocol.AppStatus{App: app, State: protocol.StateRunning})
	}
	return dst
}

type device struct {
	id     *clienttest.MemIdentity
	apps   *fakeApps
	link   *link.Manager
	client *client.Client
	errc   chan error
	cancel context.CancelFunc
}

type deviceOpts struct {
	sessionEndpoints []string
	clock            hal.Clock
	heartbeat        time.Duration
	// wrap, when set, wraps the device's identity (to tamper with what it
	// sends).
	wrap func(*clienttest.MemIdentity) client.Identity
}

func startDevice(t *testing.T, srv *clienttest.Server, o deviceOpts) *device {
	t.Helper()
	if o.sessionEndpoints == nil {
		o.sessionEndpoints = []string{srv.SessionAddr()}
	}
	if o.clock == nil {
		o.clock = hal.SystemClock{}
	}
	if o.heartbeat == 0 {
		o.heartbeat = time.Hour
	}
	backoff := link.Backoff{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	r := rand.New(rand.NewPCG(1, 2))
	lm, err := link.New(link.Config{Endpoints: o.sessionEndpoints, Clock: o.clock, Rand: r, Backoff: backoff})
	if err != nil {
		t.Fatal(err)
	}
	em, err := link.New(link.Config{Endpoints: []string{srv.EnrollAddr()}, Clock: o.clock, Rand: r, Backoff: backoff})
	if err != nil {
		t.Fatal(err)
	}
	d := &device{id: clienttest.NewMemIdentity("esp32"), apps: &fakeApps{}, link: lm, errc: make(chan error, 1)}
	var ident client.Identity = d.id
	if o.wrap != nil {
		ident = o.wrap(d.id)
	}
	d.client, err = client.New(client.Config{
		Link: lm, EnrollLink: em, Identity: ident, Apps: d.apps, Root: srv.Root(),
		HeartbeatInterval: o.heartbeat, MetricsInterval: -1, Clock: o.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	d.cancel = cancel
	go func() { d.errc <- d.client.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-d.errc
	})
	return d
}

func startServer(t *testing.T, opts clienttest.Options) *clienttest.Server {
	t.Helper()
	srv, err := clienttest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEnrollmentThenSession(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := startDevice(t, srv, deviceOpts{})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatalf("no session: %v", err)
	}
	if got := d.id.DeviceID(); got != peer.DeviceID {
		t.Errorf("device id: got %q, want the certificate's %q", got, peer.DeviceID)
	}
	if srv.Enrolled() != 1 {
		t.Errorf("enrolled: got %d, want 1 (EnrollAck received)", srv.Enrolled())
	}
	if len(d.id.SigningKey()) != 32 {
		t.Errorf("pinned signing key: got %d bytes, want 32", len(d.id.SigningKey()))
	}
	// The session opens with a heartbeat and a metrics report.
	for _, typ := range []protocol.Type{protocol.TypeHeartbeat, protocol.TypeMetricsReport} {
		if _, err := srv.WaitRecord(ctx, func(r clienttest.Record) bool { return r.Env.Message.Type() == typ }); err != nil {
			t.Errorf("no %s: %v", typ, err)
		}
	}
	waitPhase(t, d.client, client.Online)
	if st := d.client.Status(); st.Enrollments != 1 || st.Sessions != 1 {
		t.Errorf("stats: got enrollments=%d sessions=%d, want 1 and 1", st.Enrollments, st.Sessions)
	}
}

func waitPhase(t *testing.T, c *client.Client, want client.Phase) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for c.Status().Phase != want {
		if time.Now().After(deadline) {
			t.Fatalf("phase: got %v, want %v", c.Status().Phase, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCommands(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := startDevice(t, srv, deviceOpts{})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		msg       protocol.Message
		wantType  protocol.Type
		wantState protocol.AppState
		wantCode  protocol.ErrorCode
	}{
		{"deploy", &protocol.Deploy{App: "blink", Sequence: 1, Artifact: []byte("ok"), Start: true}, protocol.TypeAppStatus, protocol.StateRunning, 0},
		{"deploy bad artifact", &protocol.Deploy{App: "evil", Sequence: 1, Artifact: []byte("bad")}, protocol.TypeAppStatus, protocol.StateRefused, 0},
		{"update", &protocol.Update{App: "blink", Sequence: 2, Artifact: []byte("ok")}, protocol.TypeAppStatus, protocol.StateRunning, 0},
		{"stop", &protocol.Stop{App: "blink"}, protocol.TypeAppStatus, protocol.StateStopped, 0},
		{"start", &protocol.Start{App: "blink"}, protocol.TypeAppStatus, protocol.StateRunning, 0},
		{"remove", &protocol.Remove{App: "blink"}, protocol.TypeAppStatus, protocol.StateRemoved, 0},
		{"config", &protocol.ConfigPush{App: "blink", Generation: 3, Values: map[string]string{"k": "v"}}, protocol.TypeConfigAck, 0, 0},
		{"bad config", &protocol.ConfigPush{App: "blink", Values: map[string]string{"bad": "1"}}, protocol.TypeError, 0, protocol.CodeRefused},
		{"enroll response in session", &protocol.EnrollResponse{DeviceID: "x", CertChain: [][]byte{{1}}, SigningKey: make([]byte, 32)}, protocol.TypeError, 0, protocol.CodeUnexpected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := peer.Send(ctx, tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if got := env.Message.Type(); got != tt.wantType {
				t.Fatalf("reply: got %s, want %s", got, tt.wantType)
			}
			switch m := env.Message.(type) {
			case *protocol.AppStatus:
				if m.State != tt.wantState {
					t.Errorf("state: got %v, want %v", m.State, tt.wantState)
				}
				if m.State == protocol.StateRefused && m.Reason != protocol.ReasonBadSignature {
					t.Errorf("reason: got %v, want %v", m.Reason, protocol.ReasonBadSignature)
				}
			case *protocol.ConfigAck:
				if m.Generation != 3 {
					t.Errorf("generation: got %d, want 3", m.Generation)
				}
			case *protocol.Error:
				if m.Code != tt.wantCode {
					t.Errorf("code: got %v, want %v", m.Code, tt.wantCode)
				}
			}
		})
	}
	// Application changes trigger metrics reports.
	if st := d.client.Status(); st.Reports < 2 {
		t.Errorf("reports: got %d, want >= 2 (initial + on change)", st.Reports)
	}
}

// rawFrame builds a frame for an envelope of any type with an empty body.
func rawFrame(id uint64, typ uint32) []byte {
	body := []byte{0x84, 0x01, 0x1b}
	body = binary.BigEndian.AppendUint64(body, id)
	body = append(body, 0x1a)
	body = binary.BigEndian.AppendUint32(body, typ)
	body = append(body, 0xa0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestUnknownMessageGetsUnsupported(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := startDevice(t, srv, deviceOpts{})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env, err := peer.SendFrame(ctx, 1000, rawFrame(1000, 999))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := env.Message.(*protocol.Error)
	if !ok || e.Code != protocol.CodeUnsupported {
		t.Fatalf("reply: got %#v, want Error{Unsupported}", env.Message)
	}
	// The session survives: a command still works.
	if env, err := peer.Send(ctx, &protocol.Start{App: "a"}); err != nil || env.Message.Type() != protocol.TypeAppStatus {
		t.Fatalf("after unsupported: got %v, %v; want an AppStatus", env.Message, err)
	}
	if st := d.client.Status(); st.ErrorsSent != 1 || st.Sessions != 1 {
		t.Errorf("stats: got errorsSent=%d sessions=%d, want 1 and 1", st.ErrorsSent, st.Sessions)
	}
}

func TestGracefulDisconnectOnShutdown(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := startDevice(t, srv, deviceOpts{})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, d.client, client.Online)
	d.cancel()
	select {
	case err := <-d.errc:
		d.errc <- err
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run: got %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	<-peer.Done()
	if srv.Goodbyes.Load() != 1 {
		t.Errorf("goodbyes: got %d, want 1", srv.Goodbyes.Load())
		for _, r := range srv.History() {
			t.Logf("%s %d %s", r.DeviceID, r.Env.MessageID, r.Env.Message.Type())
		}
		t.Logf("st %+v", d.client.Status())
	}
}

func TestRevokedStops(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	d := startDevice(t, srv, deviceOpts{})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peer.Disconnect(protocol.DisconnectRevoked)
	waitPhase(t, d.client, client.Revoked)
	if n := srv.Sessions.Load(); n != 1 {
		t.Errorf("sessions: got %d, want 1 (no reconnect after revocation)", n)
	}
}

func TestReconnectWithBackoffAfterDrop(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	clk := hal.NewManualClock(time.Now())
	d := startDevice(t, srv, deviceOpts{clock: clk})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, d.client, client.Online)
	peer.Drop()
	// The client must wait for a backoff timer before redialing.
	deadline := time.Now().Add(10 * time.Second)
	for d.link.Status().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("session loss not noticed")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !clk.WaitForTimers(1, 10*time.Second) {
		t.Fatal("no backoff timer armed")
	}
	if srv.Sessions.Load() != 1 {
		t.Fatalf("sessions before backoff elapsed: got %d, want 1", srv.Sessions.Load())
	}
	wait, _ := clk.Next()
	if wait > 10*time.Millisecond {
		t.Errorf("first backoff: got %v, want within the 10ms base", wait)
	}
	clk.Advance(wait)
	if _, err := srv.WaitRecord(ctx, func(clienttest.Record) bool { return srv.Sessions.Load() == 2 }); err != nil {
		t.Fatalf("no reconnect: %v", err)
	}
	if _, err := srv.AnyPeer(ctx); err != nil {
		t.Fatal(err)
	}
	if st := d.link.Status(); st.Reconnects < 1 {
		t.Errorf("link reconnects: got %d, want >= 1", st.Reconnects)
	}
}

func TestFailoverToSecondGateway(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()
	d := startDevice(t, srv, deviceOpts{sessionEndpoints: []string{deadAddr, srv.SessionAddr()}})
	ctx := waitCtx(t)
	if _, err := srv.AnyPeer(ctx); err != nil {
		t.Fatal(err)
	}
	if got := d.link.Status().Endpoint; got != srv.SessionAddr() {
		t.Errorf("endpoint: got %s, want %s", got, srv.SessionAddr())
	}
}

func TestHeartbeatsAndIntervalFromAck(t *testing.T) {
	srv := startServer(t, clienttest.Options{HeartbeatInterval: 2 * time.Second})
	clk := hal.NewManualClock(time.Now())
	d := startDevice(t, srv, deviceOpts{clock: clk, heartbeat: time.Minute})
	ctx := waitCtx(t)
	if _, err := srv.AnyPeer(ctx); err != nil {
		t.Fatal(err)
	}
	waitPhase(t, d.client, client.Online)
	// The first ack sets the interval to 2s: advancing 2s sends one more.
	deadline := time.Now().Add(10 * time.Second)
	for d.client.Status().HeartbeatAcks < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeat ack")
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := range 3 {
		before := srv.Heartbeats.Load()
		clk.Advance(2 * time.Second)
		for srv.Heartbeats.Load() == before {
			if time.Now().After(deadline) {
				t.Fatalf("heartbeat %d not sent after the 2s interval", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func TestLivenessTimeout(t *testing.T) {
	// A gateway that never answers heartbeats: after three intervals of
	// silence the client gives the session up.
	srv := startServer(t, clienttest.Options{NoHeartbeatAck: true})
	clk := hal.NewManualClock(time.Now())
	d := startDevice(t, srv, deviceOpts{clock: clk, heartbeat: 10 * time.Second})
	ctx := waitCtx(t)
	if _, err := srv.AnyPeer(ctx); err != nil {
		t.Fatal(err)
	}
	if !clk.WaitForTimers(1, 10*time.Second) {
		t.Fatal("heartbeat timer not armed")
	}
	deadline := time.Now().Add(10 * time.Second)
	// The initial heartbeat must be counted before the first tick, or the
	// loop below would take it for the tick's heartbeat.
	for srv.Heartbeats.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("initial heartbeat not received")
		}
		time.Sleep(time.Millisecond)
	}
	for tick := 1; d.link.Status().Failures == 0; tick++ {
		if time.Now().After(deadline) {
			t.Fatal("silent session not abandoned")
		}
		if tick > 4 {
			t.Fatalf("session alive after %d silent intervals, want it dropped after 3", tick-1)
		}
		before := srv.Heartbeats.Load()
		clk.Advance(10 * time.Second)
		// Wait until the tick is processed: a heartbeat or the session end.
		for srv.Heartbeats.Load() == before && d.link.Status().Failures == 0 {
			if time.Now().After(deadline) {
				t.Fatal("tick not processed")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if got := srv.Heartbeats.Load(); got != 3 {
		t.Errorf("heartbeats before giving up: got %d, want 3 (initial + 2 ticks)", got)
	}
}

func TestEnrollmentRefusedRetries(t *testing.T) {
	srv := startServer(t, clienttest.Options{RefuseEnrollment: true})
	d := startDevice(t, srv, deviceOpts{})
	deadline := time.Now().Add(10 * time.Second)
	for d.client.Status().ErrorsReceived < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("refusals seen: got %d, want >= 2 (retrying)", d.client.Status().ErrorsReceived)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d.id.DeviceID() != "" {
		t.Error("device enrolled although the gateway refused")
	}
}
