package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// TestHandshakeValidity moves the shared clock so the device certificate is
// expired or not yet valid at the gateway.
func TestHandshakeValidity(t *testing.T) {
	clock := newTestClock()
	start := clock.Now()
	ca := newTestAuthority(t, clock, Ed25519)
	v, err := ca.DeviceVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, srvCfg)
	dev := mustDevice(t, ca, "dev", ECDSAP256)
	// The device's own clock stays at start so only the gateway refuses.
	devClock := newTestClock()
	cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: devClock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		at   time.Time
		want error
	}{
		{"expired", start.Add(DefaultDeviceLifetime + time.Minute), ErrExpired},
		{"not yet valid", start.Add(-time.Hour), ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(tt.at)
			defer clock.Set(start)
			if _, err := dial(t.Context(), srv.ln.Addr().String(), cli); err == nil {
				t.Fatal("client: got nil error, want refusal")
			}
			if r := srv.result(t); !errors.Is(r.err, tt.want) {
				t.Fatalf("server: got %v, want %v", r.err, tt.want)
			}
		})
	}
}

// TestClientRefusesGateway covers the device side: a gateway presenting a
// client certificate, a gateway from another CA, and a wrong server name.
func TestClientRefusesGateway(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	other := newTestAuthority(t, clock, Ed25519)
	dev := mustDevice(t, ca, "dev", Ed25519)
	tests := []struct {
		name       string
		serverCert tls.Certificate
		serverName string
		gatewayCA  *x509.Certificate // pinned when set
		want       error
	}{
		{"client cert as server", mustDevice(t, ca, "imposter", Ed25519), "127.0.0.1", nil, ErrKeyUsage},
		{"client cert as server, gateway CA pinned", mustDevice(t, ca, "imposter", Ed25519), "127.0.0.1", ca.GatewayCA.Cert, ErrUnknownAuthority},
		{"gateway from another CA", mustGateway(t, other), "127.0.0.1", nil, ErrUnknownAuthority},
		{"gateway from another CA, gateway CA pinned", mustGateway(t, other), "127.0.0.1", ca.GatewayCA.Cert, ErrUnknownAuthority},
		{"wrong server name", mustGateway(t, ca), "elsewhere.test", ca.GatewayCA.Cert, ErrNameMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A bare server that does not itself verify its own certificate.
			srvCfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{tt.serverCert}, ClientAuth: tls.RequestClientCert}
			srv := startServer(t, srvCfg)
			cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, GatewayCA: tt.gatewayCA, Certificate: &dev, ServerName: tt.serverName, Clock: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, err = dial(t.Context(), srv.ln.Addr().String(), cli)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestServerTLSConfigSettings(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	v, _ := ca.DeviceVerifier(nil)
	cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 || cfg.MaxVersion != tls.VersionTLS13 {
		t.Errorf("got versions %x-%x, want TLS 1.3 only", cfg.MinVersion, cfg.MaxVersion)
	}
	if cfg.ClientAuth != tls.RequireAnyClientCert || cfg.SessionTicketsDisabled {
		t.Errorf("got ClientAuth %v tickets disabled %v, want certificate required and tickets on", cfg.ClientAuth, cfg.SessionTicketsDisabled)
	}
	// A device certificate is not a usable gateway certificate.
	if _, err := ServerTLSConfig(ServerOptions{Certificate: mustDevice(t, ca, "d", Ed25519), Verifier: v}); !errors.Is(err, ErrKeyUsage) {
		t.Errorf("device cert as gateway: got %v, want ErrKeyUsage", err)
	}
	if _, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca)}); err == nil {
		t.Error("no verifier: got nil error")
	}
	// A verifier that does not pin the device CA would accept any client
	// certificate under the root.
	rootOnly, _ := NewVerifier(VerifierConfig{Root: ca.Root.Cert})
	if _, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: rootOnly}); err == nil {
		t.Error("verifier without the device CA pin: got nil error")
	}
	if _, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert}); err == nil {
		t.Error("client without server name: got nil error")
	}
}

func TestEnrollmentServer(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	rev := NewMemoryRevocation()
	v, _ := ca.DeviceVerifier(rev)
	cfg, err := EnrollmentServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	good := mustDevice(t, ca, "renewing", Ed25519)
	revoked := mustDevice(t, ca, "revoked", Ed25519)
	rev.RevokeCert(revoked.Leaf)
	tests := []struct {
		name    string
		cert    *tls.Certificate
		wantErr error
		wantID  string
	}{
		{"new device without certificate", nil, nil, ""},
		{"renewing device", &good, nil, "renewing"},
		{"revoked device", &revoked, ErrRevoked, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: tt.cert, ServerName: "127.0.0.1", Clock: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, dialErr := dial(t.Context(), srv.ln.Addr().String(), cli)
			r := srv.result(t)
			if tt.wantErr != nil {
				if dialErr == nil || !errors.Is(r.err, tt.wantErr) {
					t.Fatalf("got client %v server %v, want server %v", dialErr, r.err, tt.wantErr)
				}
				return
			}
			if dialErr != nil || r.err != nil {
				t.Fatalf("got client %v server %v, want success", dialErr, r.err)
			}
			id, err := IdentityFromConnectionState(r.state)
			if tt.wantID == "" {
				if !errors.Is(err, ErrNoCertificate) {
					t.Fatalf("got %v, want ErrNoCertificate", err)
				}
				return
			}
			if err != nil || id.DeviceID != tt.wantID {
				t.Fatalf("got (%v, %v), want %s", id, err, tt.wantID)
			}
		})
	}
}

// TestRevokedOnResumption: a session ticket obtained before a revocation
// must not let the device back in.
func TestRevokedOnResumption(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	rev := NewMemoryRevocation()
	v, _ := ca.DeviceVerifier(rev)
	cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	dev := mustDevice(t, ca, "dev", Ed25519)
	cli, _ := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: clock.Now})
	if _, err := dial(t.Context(), srv.ln.Addr().String(), cli); err != nil {
		t.Fatal(err)
	}
	if r := srv.result(t); r.err != nil {
		t.Fatal(r.err)
	}
	if err := rev.RevokeKey(dev.Leaf.PublicKey); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t.Context(), srv.ln.Addr().String(), cli); err == nil {
		t.Fatal("client: got nil error, want refusal")
	}
	r := srv.result(t)
	if !errors.Is(r.err, ErrRevoked) {
		t.Fatalf("server: got %v, want ErrRevoked", r.err)
	}
	if !r.state.DidResume {
		t.Error("the refused handshake was not a resumption; the test does not cover resumption")
	}
}

// TestSharedTicketKeys: two gateway replicas sharing ticket keys resume each
// other's sessions.
func TestSharedTicketKeys(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	v, _ := ca.DeviceVerifier(nil)
	ring := mustRing(t, clock.Now())
	var addrs []string
	var servers []*testServer
	for range 2 {
		cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v, TicketKeys: ring})
		if err != nil {
			t.Fatal(err)
		}
		s := startServer(t, cfg)
		servers = append(servers, s)
		addrs = append(addrs, s.ln.Addr().String())
	}
	dev := mustDevice(t, ca, "dev", Ed25519)
	// One cache for both replicas: they share the same server name.
	cli, _ := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: clock.Now})
	for i, wantResume := range []bool{false, true} {
		cs, err := dial(t.Context(), addrs[i], cli)
		if err != nil {
			t.Fatal(err)
		}
		if r := servers[i].result(t); r.err != nil {
			t.Fatal(r.err)
		}
		if cs.DidResume != wantResume {
			t.Errorf("replica %d: got DidResume %v, want %v", i, cs.DidResume, wantResume)
		}
	}
}

// TestHandshakeTimeout: a client that connects and never speaks is cut off.
func TestHandshakeTimeout(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	v, _ := ca.DeviceVerifier(nil)
	cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var d net.Dialer
	silent, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = Handshake(t.Context(), tls.Server(c, cfg), 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

// TestConcurrentHandshakesWithRevocation connects many devices concurrently
// while half of them are revoked; run with -race. Once a revocation has
// returned, that device must never get in again.
func TestConcurrentHandshakesWithRevocation(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	rev := NewMemoryRevocation()
	v, _ := ca.DeviceVerifier(rev)
	cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, ca), Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	const devices, rounds = 12, 4
	certs := make([]tls.Certificate, devices)
	for i := range certs {
		certs[i] = mustDevice(t, ca, fmt.Sprintf("dev-%d", i), Ed25519)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli, err := ClientTLSConfig(ClientOptions{Root: ca.Root.Cert, Certificate: &certs[i], ServerName: "127.0.0.1", Clock: clock.Now})
			if err != nil {
				t.Error(err)
				return
			}
			revoked := false
			for r := range rounds {
				if i%2 == 1 && r == rounds/2 {
					rev.RevokeCert(certs[i].Leaf)
					revoked = true
				}
				_, err := dial(t.Context(), srv.ln.Addr().String(), cli)
				if (err == nil) == revoked {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("device %d round %d: got err=%v, revoked=%v", i, r, err, revoked))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
}
