package pki

import (
	"crypto/tls"
	"testing"
)

// TestKeyExchangePolicy checks the devices' key exchanges: the hybrid on a
// full handshake, X25519 alone on a resumption, X25519 throughout for
// devices restricted to it, and no ticket kept from a full handshake that
// ended without ML-KEM.
func TestKeyExchangePolicy(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	v, err := ca.DeviceVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	newServer := func() *testServer {
		cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
		if err != nil {
			t.Fatal(err)
		}
		return startServer(t, cfg)
	}
	srv, other := newServer(), newServer() // other has ticket keys of its own
	dev := mustDevice(t, ca, "kex-1", Ed25519)
	connect := func(s *testServer, cache tls.ClientSessionCache, x25519Only bool) tls.ConnectionState {
		t.Helper()
		cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, GatewayCA: ca.GatewayCA.Cert, Certificate: &dev,
			ServerName: "127.0.0.1", SessionCache: cache, Clock: clock.Now, X25519Only: x25519Only})
		if err != nil {
			t.Fatal(err)
		}
		cs, err := dial(t.Context(), s.ln.Addr().String(), cli)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	type step struct {
		srv        *testServer
		wantResume bool
		wantCurve  tls.CurveID
		wantTicket bool
	}
	tests := []struct {
		name       string
		x25519Only bool
		steps      []step
	}{
		{"hybrid then resumed with x25519", false, []step{
			{srv, false, tls.X25519MLKEM768, true},
			{srv, true, tls.X25519, true},
			{srv, true, tls.X25519, true},
		}},
		{"refused resumption leaves no ticket", false, []step{
			{srv, false, tls.X25519MLKEM768, true},
			{other, false, tls.X25519, false},
			{other, false, tls.X25519MLKEM768, true},
			{other, true, tls.X25519, true},
		}},
		{"x25519 only", true, []step{
			{srv, false, tls.X25519, true},
			{srv, true, tls.X25519, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(1)
			for i, s := range tc.steps {
				cs := connect(s.srv, cache, tc.x25519Only)
				if cs.DidResume != s.wantResume || cs.CurveID != s.wantCurve {
					t.Fatalf("step %d: got resumed %v with %v, want %v with %v", i, cs.DidResume, cs.CurveID, s.wantResume, s.wantCurve)
				}
				if _, ok := cache.Get("127.0.0.1"); ok != s.wantTicket {
					t.Fatalf("step %d: got a ticket kept %v, want %v", i, ok, s.wantTicket)
				}
			}
		})
	}
}
