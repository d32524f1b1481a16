package pki

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

func TestResumable(t *testing.T) {
	clock := newTestClock()
	start := clock.Now()
	ca := newTestAuthority(t, clock, Ed25519)
	sibling, err := NewIntermediateCA(ca.Root, CAOptions{CommonName: "sibling", Clock: clock.Now,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	siblingCA := &Authority{Root: ca.Root, GatewayCA: ca.GatewayCA, DeviceCA: sibling, Clock: clock.Now}
	pinned, err := ca.DeviceVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	unpinned, err := NewVerifier(VerifierConfig{Root: ca.Root.Cert, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	dev := mustDevice(t, ca, "d", Ed25519)
	devChain := []*x509.Certificate{dev.Leaf, ca.DeviceCA.Cert}
	gw := mustGateway(t, ca)
	gwChain := []*x509.Certificate{gw.Leaf, ca.GatewayCA.Cert}
	sib := mustDevice(t, siblingCA, "s", Ed25519)

	tests := []struct {
		name       string
		v          *Verifier
		chain      []*x509.Certificate
		usage      x509.ExtKeyUsage
		serverName string
		at         time.Time
		want       bool
	}{
		{name: "pinned device", v: pinned, chain: devChain[:1], usage: x509.ExtKeyUsageClientAuth, want: true},
		{name: "unpinned device with chain", v: unpinned, chain: devChain, usage: x509.ExtKeyUsageClientAuth, want: true},
		{name: "unpinned device leaf only", v: unpinned, chain: devChain[:1], usage: x509.ExtKeyUsageClientAuth, want: false},
		{name: "gateway with name", v: unpinned, chain: gwChain, usage: x509.ExtKeyUsageServerAuth, serverName: "gateway.test", want: true},
		{name: "gateway wrong name", v: unpinned, chain: gwChain, usage: x509.ExtKeyUsageServerAuth, serverName: "other.test", want: false},
		{name: "wrong usage", v: pinned, chain: gwChain, usage: x509.ExtKeyUsageClientAuth, want: false},
		{name: "sibling intermediate", v: pinned, chain: []*x509.Certificate{sib.Leaf, sibling.Cert}, usage: x509.ExtKeyUsageClientAuth, want: false},
		{name: "expired", v: pinned, chain: devChain, usage: x509.ExtKeyUsageClientAuth, at: start.Add(48 * time.Hour), want: false},
		{name: "empty", v: pinned, chain: nil, usage: x509.ExtKeyUsageClientAuth, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.at.IsZero() {
				clock.Set(tt.at)
				defer clock.Set(start)
			}
			if _, got := tt.v.resumable(tt.chain, tt.usage, tt.serverName); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewVerifierIssuerNotUnderRoot(t *testing.T) {
	clock := newTestClock()
	a := newTestAuthority(t, clock, Ed25519)
	b := newTestAuthority(t, clock, Ed25519)
	_, err := NewVerifier(VerifierConfig{Root: a.Root.Cert, Issuer: b.DeviceCA.Cert})
	if !errors.Is(err, ErrUnknownAuthority) {
		t.Fatalf("got %v, want ErrUnknownAuthority", err)
	}
}

// TestTicketAfterCAChange: a session ticket from before the gateway changed
// its device CA (same ticket keys) must not resume into the new trust: the
// ticket is bound to the trust configuration it was issued under, so the
// new configuration refuses to resume it and verifies the chain in full.
func TestTicketAfterCAChange(t *testing.T) {
	clock := newTestClock()
	oldCA := newTestAuthority(t, clock, Ed25519)
	// The new device CA sits under the same root, so the device still
	// trusts the gateway; only the device CA changed.
	newDeviceCA, err := NewIntermediateCA(oldCA.Root, CAOptions{CommonName: "new device CA", Clock: clock.Now,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	newCA := &Authority{Root: oldCA.Root, GatewayCA: oldCA.GatewayCA, DeviceCA: newDeviceCA, Clock: clock.Now}
	ring := mustRing(t, clock.Now())
	start := func(a *Authority) *testServer {
		v, err := a.DeviceVerifier(nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ServerTLSConfig(ServerOptions{Certificate: mustGateway(t, a), Verifier: v, TicketKeys: ring})
		if err != nil {
			t.Fatal(err)
		}
		return startServer(t, cfg)
	}
	before, after := start(oldCA), start(newCA)
	dev := mustDevice(t, oldCA, "d", Ed25519)
	cli, err := ClientTLSConfig(ClientOptions{Root: oldCA.Root.Cert, Certificate: &dev, ServerName: "127.0.0.1", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t.Context(), before.ln.Addr().String(), cli); err != nil {
		t.Fatal(err)
	}
	if r := before.result(t); r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := dial(t.Context(), after.ln.Addr().String(), cli); err == nil {
		t.Fatal("client: got nil error, want refusal")
	}
	r := after.result(t)
	if !errors.Is(r.err, ErrUnknownAuthority) {
		t.Fatalf("server: got %v, want ErrUnknownAuthority", r.err)
	}
	if r.state.DidResume {
		t.Error("a ticket of the old trust configuration was resumed")
	}
}
