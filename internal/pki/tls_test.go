package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func loopbackIPs() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} }

// testServer accepts TLS connections on 127.0.0.1, runs the handshake,
// echoes one byte and reports the server-side handshake result.
type testServer struct {
	ln      net.Listener
	results chan serverResult
}

type serverResult struct {
	err   error
	state tls.ConnectionState
}

func startServer(t testing.TB, cfg *tls.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &testServer{ln: ln, results: make(chan serverResult, 64)}
	ctx := t.Context()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, cfg)
				err := Handshake(ctx, tc, 5*time.Second)
				if err == nil {
					var b [1]byte
					if _, err = io.ReadFull(tc, b[:]); err == nil {
						_, err = tc.Write(b[:])
					}
				}
				select {
				case s.results <- serverResult{err: err, state: tc.ConnectionState()}:
				default:
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *testServer) result(t testing.TB) serverResult {
	t.Helper()
	select {
	case r := <-s.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no server result")
		return serverResult{}
	}
}

// dial connects, handshakes and does one round trip (the round trip makes
// TLS 1.3 client certificate refusals visible on the client side).
func dial(ctx context.Context, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer raw.Close()
	c := tls.Client(raw, cfg)
	if err := Handshake(ctx, c, 5*time.Second); err != nil {
		return tls.ConnectionState{}, err
	}
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return tls.ConnectionState{}, err
	}
	if _, err := c.Write([]byte{1}); err != nil {
		return tls.ConnectionState{}, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func TestHandshakeEndToEnd(t *testing.T) {
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		for _, devAlg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
			t.Run(string(alg)+"/device-"+string(devAlg), func(t *testing.T) {
				clock := newTestClock()
				ca := newTestAuthority(t, clock, alg)
				v, err := ca.DeviceVerifier(NewMemoryRevocation())
				if err != nil {
					t.Fatal(err)
				}
				srvCfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
				if err != nil {
					t.Fatal(err)
				}
				srv := startServer(t, srvCfg)
				devCert := mustDevice(t, ca, "dev-1", devAlg)
				cliCfg, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &devCert, ServerName: "127.0.0.1", Clock: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				for i, wantResume := range []bool{false, true} {
					cs, err := dial(t.Context(), srv.ln.Addr().String(), cliCfg)
					if err != nil {
						t.Fatalf("dial %d: %v", i, err)
					}
					r := srv.result(t)
					if r.err != nil {
						t.Fatalf("server %d: %v", i, r.err)
					}
					if cs.Version != tls.VersionTLS13 {
						t.Errorf("dial %d: got version %x, want TLS 1.3", i, cs.Version)
					}
					if cs.DidResume != wantResume || r.state.DidResume != wantResume {
						t.Errorf("dial %d: got DidResume client=%v server=%v, want %v", i, cs.DidResume, r.state.DidResume, wantResume)
					}
					id, err := IdentityFromConnectionState(r.state)
					if err != nil {
						t.Fatalf("identity %d: %v", i, err)
					}
					want, _ := EncodePublicKey(devCert.Leaf.PublicKey)
					if id.DeviceID != "dev-1" || id.EncodedKey != want {
						t.Errorf("identity %d: got (%q, %q), want (dev-1, %q)", i, id.DeviceID, id.EncodedKey, want)
					}
				}
			})
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	other := newTestAuthority(t, clock, Ed25519)
	rev := NewMemoryRevocation()
	v, err := ca.DeviceVerifier(rev)
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, srvCfg)

	good := mustDevice(t, ca, "good", Ed25519)
	revoked := mustDevice(t, ca, "revoked", Ed25519)
	rev.RevokeCert(revoked.Leaf)
	foreign := mustDevice(t, other, "foreign", Ed25519)
	gwAsClient := mustGateway(t, ca)

	client := func(cert *tls.Certificate, mutate func(*tls.Config)) *tls.Config {
		cfg, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: cert, ServerName: "127.0.0.1", Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		if mutate != nil {
			mutate(cfg)
		}
		return cfg
	}
	tests := []struct {
		name      string
		cfg       *tls.Config
		wantSrv   error // server-side handshake error
		wantNoSrv bool  // server fails at the protocol level, no typed error
	}{
		{name: "revoked device", cfg: client(&revoked, nil), wantSrv: ErrRevoked},
		{name: "device from another CA", cfg: client(&foreign, nil), wantSrv: ErrUnknownAuthority},
		// Issued by the gateway CA, not the device CA the gateway pins.
		{name: "server certificate used as client", cfg: client(&gwAsClient, nil), wantSrv: ErrUnknownAuthority},
		{name: "no client certificate", cfg: client(nil, nil), wantNoSrv: true},
		{name: "TLS 1.2 client", cfg: client(&good, func(c *tls.Config) {
			c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		}), wantNoSrv: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := dial(t.Context(), srv.ln.Addr().String(), tt.cfg); err == nil {
				t.Fatal("client: got nil error, want handshake refused")
			}
			r := srv.result(t)
			if r.err == nil {
				t.Fatal("server: got nil error, want refusal")
			}
			if tt.wantSrv != nil && !errors.Is(r.err, tt.wantSrv) {
				t.Errorf("server: got %v, want %v", r.err, tt.wantSrv)
			}
		})
	}
	// The good device still gets in on the same server.
	if _, err := dial(t.Context(), srv.ln.Addr().String(), client(&good, nil)); err != nil {
		t.Fatalf("good device: %v", err)
	}
	if r := srv.result(t); r.err != nil {
		t.Fatalf("good device server side: %v", r.err)
	}
}
