package pki

import (
	"bytes"
	"crypto/tls"
	"errors"
	"testing"
	"time"
)

func mustRing(t testing.TB, now time.Time) *TicketKeyRing {
	t.Helper()
	k, err := NewTicketKey(now)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewTicketKeyRing(k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ticketFixture is two gateway replicas sharing one ring and a device.
type ticketFixture struct {
	clock   *testClock
	v       *Verifier
	ring    *TicketKeyRing
	servers []*testServer
	cli     *tls.Config
}

func newTicketFixture(t *testing.T, lifetime time.Duration) *ticketFixture {
	t.Helper()
	f := &ticketFixture{clock: newTestClock()}
	ca := newTestAuthority(t, f.clock, Ed25519)
	f.v, _ = ca.DeviceVerifier(nil)
	f.ring = mustRing(t, f.clock.Now())
	for range 2 {
		cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: f.v, TicketKeys: f.ring, TicketLifetime: lifetime})
		if err != nil {
			t.Fatal(err)
		}
		f.servers = append(f.servers, startServer(t, cfg))
	}
	dev := mustDevice(t, ca, "dev", Ed25519)
	var err error
	f.cli, err = ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// connect dials replica i and reports whether the session resumed and how
// many full chain verifications the gateway ran for it.
func (f *ticketFixture) connect(t *testing.T, i int) (resumed bool, fullChecks uint64) {
	t.Helper()
	before := f.v.fullChecks.Load()
	cs, err := dial(t.Context(), f.servers[i].ln.Addr().String(), f.cli)
	if err != nil {
		t.Fatal(err)
	}
	if r := f.servers[i].result(t); r.err != nil {
		t.Fatal(r.err)
	}
	return cs.DidResume, f.v.fullChecks.Load() - before
}

// TestResumedSessionSkipsOnlyBoundChains: a resumed handshake on either
// replica skips the chain's signatures; every full handshake verifies it.
func TestResumedSessionSkipsOnlyBoundChains(t *testing.T) {
	f := newTicketFixture(t, 0)
	if resumed, checks := f.connect(t, 0); resumed || checks != 1 {
		t.Fatalf("first connection: got resumed=%v with %d full checks, want a full handshake with 1", resumed, checks)
	}
	for i := range 4 {
		if resumed, checks := f.connect(t, i%2); !resumed || checks != 0 {
			t.Fatalf("reconnection %d: got resumed=%v with %d full checks, want a resumption with 0", i, resumed, checks)
		}
	}
}

// TestTicketRotation: tickets of the previous key still resume; tickets of
// a key rotated out do not.
func TestTicketRotation(t *testing.T) {
	f := newTicketFixture(t, 0)
	f.connect(t, 0) // the client now holds a ticket of key 1
	k2, _ := NewTicketKey(f.clock.Now())
	if err := f.ring.Rotate(k2); err != nil {
		t.Fatal(err)
	}
	if resumed, _ := f.connect(t, 1); !resumed {
		t.Fatal("a ticket of the previous key did not resume")
	}
	// The session above handed out a ticket of key 2; rotate twice so that
	// neither key 1 nor key 2 is left.
	for range 2 {
		k, _ := NewTicketKey(f.clock.Now())
		if err := f.ring.Rotate(k); err != nil {
			t.Fatal(err)
		}
	}
	if resumed, checks := f.connect(t, 0); resumed || checks != 1 {
		t.Fatalf("after rotating the keys out: got resumed=%v with %d full checks, want a full handshake", resumed, checks)
	}
	if got := len(f.ring.Keys()); got != 2 {
		t.Fatalf("ring holds %d keys after rotation, want current and previous", got)
	}
}

// TestTicketLifetime: a ticket older than the configured lifetime is not
// resumed, even though crypto/tls would accept it for seven days.
func TestTicketLifetime(t *testing.T) {
	f := newTicketFixture(t, time.Hour)
	f.connect(t, 0)
	f.clock.Set(f.clock.Now().Add(59 * time.Minute))
	if resumed, _ := f.connect(t, 1); !resumed {
		t.Fatal("a ticket within its lifetime did not resume")
	}
	f.clock.Set(f.clock.Now().Add(61 * time.Minute))
	if resumed, _ := f.connect(t, 0); resumed {
		t.Fatal("a ticket past its lifetime resumed")
	}
}

// captureTicket runs one handshake of a device with a server built by
// ServerTLSConfig and returns the ticket the server issued.
func captureTicket(t *testing.T, clock *testClock, ca *Authority, ring *TicketKeyRing, dev tls.Certificate) []byte {
	t.Helper()
	v, _ := ca.DeviceVerifier(nil)
	cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v, TicketKeys: ring})
	if err != nil {
		t.Fatal(err)
	}
	tickets := make(chan []byte, 1)
	perHandshake := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := perHandshake(hello)
		if err != nil {
			return nil, err
		}
		wrap := c.WrapSession
		c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
			b, err := wrap(cs, ss)
			if err == nil {
				select {
				case tickets <- b:
				default:
				}
			}
			return b, err
		}
		return c, nil
	}
	srv := startServer(t, cfg)
	cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t.Context(), srv.ln.Addr().String(), cli); err != nil {
		t.Fatal(err)
	}
	if r := srv.result(t); r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case b := <-tickets:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no ticket issued")
		return nil
	}
}

// TestTicketerBinding exercises the binding check directly: a ticket is
// resumed only under the trust configuration it was issued under, and the
// fast path applies only to the leaf it was bound to.
func TestTicketerBinding(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	ring := mustRing(t, clock.Now())
	dev, other := mustDevice(t, ca, "a", Ed25519), mustDevice(t, ca, "b", Ed25519)
	ticket := captureTicket(t, clock, ca, ring, dev)
	v, _ := ca.DeviceVerifier(nil)
	tk := &ticketer{ring: ring, trust: v.trustID, lifetime: time.Hour, now: clock.Now}
	if ss, err := tk.unwrap(ticket, tls.ConnectionState{}); ss == nil || err != nil {
		t.Fatalf("same trust: got (%v, %v), want the session", ss, err)
	}
	if !tk.boundTo(dev.Leaf) || tk.boundTo(other.Leaf) {
		t.Fatal("binding does not name exactly the leaf it was issued for")
	}
	elsewhere := &ticketer{ring: ring, trust: [32]byte{1}, lifetime: time.Hour, now: clock.Now}
	if ss, _ := elsewhere.unwrap(ticket, tls.ConnectionState{}); ss != nil || elsewhere.boundTo(dev.Leaf) {
		t.Fatal("a ticket of another trust configuration was accepted")
	}
	for _, i := range []int{0, 9, 30, len(ticket) - 1} {
		tampered := bytes.Clone(ticket)
		tampered[i] ^= 1
		fresh := *tk
		fresh.bound = nil
		if ss, _ := fresh.unwrap(tampered, tls.ConnectionState{}); ss != nil {
			t.Fatalf("a ticket with byte %d flipped was accepted", i)
		}
	}
	if ss, _ := tk.unwrap(ticket[:20], tls.ConnectionState{}); ss != nil {
		t.Fatal("a truncated ticket was accepted")
	}
}

func TestTicketKeyRingRefusals(t *testing.T) {
	k, _ := NewTicketKey(time.Unix(1000, 0))
	tests := []struct {
		name string
		keys []TicketKey
	}{
		{"none", nil},
		{"too many", []TicketKey{k, k, k, k, k}},
		{"repeated", []TicketKey{k, k}},
		{"zero key", []TicketKey{{Created: time.Unix(1, 0)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewTicketKeyRing(tt.keys...); !errors.Is(err, ErrTicketKeys) {
				t.Fatalf("got %v, want ErrTicketKeys", err)
			}
		})
	}
}

func TestTicketKeysEncoding(t *testing.T) {
	a, _ := NewTicketKey(time.Unix(1_772_000_000, 0))
	b, _ := NewTicketKey(time.Unix(1_772_086_400, 0))
	enc, err := MarshalTicketKeys([]TicketKey{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != 2+2*40 {
		t.Fatalf("encoded %d bytes, want %d", len(enc), 2+2*40)
	}
	got, err := ParseTicketKeys(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Key != a.Key || !got[1].Created.Equal(b.Created) {
		t.Fatalf("round trip: got %+v", got)
	}
	for name, bad := range map[string][]byte{
		"empty":         nil,
		"version 2":     append([]byte{2}, enc[1:]...),
		"count 0":       {1, 0},
		"count 3":       append([]byte{1, 3}, enc[2:]...),
		"trailing byte": append(bytes.Clone(enc), 0),
		"count 5":       append([]byte{1, 5}, make([]byte, 200)...),
	} {
		if _, err := ParseTicketKeys(bad); !errors.Is(err, ErrTicketKeys) {
			t.Errorf("%s: got %v, want ErrTicketKeys", name, err)
		}
	}
}

// FuzzParseTicketKeys: whatever parses encodes back to the same bytes.
func FuzzParseTicketKeys(f *testing.F) {
	a, _ := NewTicketKey(time.Unix(1_772_000_000, 0))
	enc, _ := MarshalTicketKeys([]TicketKey{a})
	f.Add(enc)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseTicketKeys(b)
		if err != nil {
			return
		}
		again, err := MarshalTicketKeys(keys)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding gives %x (%v), want %x", again, err, b)
		}
	})
}

// BenchmarkTicketSealOpen measures the gateway's own work per session
// ticket: sealing one (a full or resumed handshake issues one) and opening
// it (a resumption), for a session state of 1 KiB.
func BenchmarkTicketSealOpen(b *testing.B) {
	ring := mustRing(b, time.Unix(1_772_000_000, 0))
	state := bytes.Repeat([]byte{7}, 1024)
	now := time.Unix(1_772_000_100, 0)
	b.ReportAllocs()
	for b.Loop() {
		ticket, err := ring.seal(state, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, ok := ring.open(ticket); !ok {
			b.Fatal("ticket does not open")
		}
	}
}
