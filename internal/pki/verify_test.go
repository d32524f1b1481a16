package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// rawLeaf signs a leaf for pub with the device CA, bypassing the
// package's key checks, to build certificates it would refuse to issue.
func rawLeaf(t *testing.T, a *Authority, pub crypto.PublicKey, eku x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	tmpl, err := baseTemplate("dev-raw", "", pub, a.Clock, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{eku}
	tmpl.URIs = append(tmpl.URIs, DeviceURI("dev-raw"))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.DeviceCA.Cert, pub, a.DeviceCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifier(t *testing.T) {
	clock := newTestClock()
	start := clock.Now()
	ca := newTestAuthority(t, clock, Ed25519)
	other := newTestAuthority(t, clock, Ed25519)
	// A second device CA under the same root: chains to the root, may
	// issue client certificates, but is not the pinned device CA.
	sibling, err := NewIntermediateCA(ca.Root, CAOptions{CommonName: "sibling", Clock: clock.Now,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	siblingCA := &Authority{Root: ca.Root, GatewayCA: ca.GatewayCA, DeviceCA: sibling, Clock: clock.Now}

	rev := NewMemoryRevocation()
	v, err := ca.DeviceVerifier(rev)
	if err != nil {
		t.Fatal(err)
	}
	gv, err := ca.GatewayVerifier()
	if err != nil {
		t.Fatal(err)
	}
	rootOnly, err := NewVerifier(VerifierConfig{Root: ca.Root.Cert, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	device := func(a *Authority, id string, alg KeyAlgorithm) []*x509.Certificate {
		c, err := a.IssueDevice(mustKey(t, alg).Public(), DeviceOptions{DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		return append([]*x509.Certificate{c.Leaf}, c.Chain...)
	}
	gateway := func(a *Authority) []*x509.Certificate {
		c, err := a.IssueGateway(GatewayOptions{Name: "gw", DNSNames: []string{"gw.test"}})
		if err != nil {
			t.Fatal(err)
		}
		return append([]*x509.Certificate{c.Leaf}, c.Chain...)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	revokedChain := device(ca, "revoked", Ed25519)
	rev.RevokeCert(revokedChain[0])
	revokedKeyChain := device(ca, "revoked-key", ECDSAP256)
	if err := rev.RevokeKey(revokedKeyChain[0].PublicKey); err != nil {
		t.Fatal(err)
	}
	okDevice := device(ca, "dev-1", Ed25519)

	tests := []struct {
		name     string
		chain    []*x509.Certificate
		asServer bool
		at       time.Time
		want     error
		v        *Verifier // v (device CA pinned) or gv (gateway CA pinned) when nil
	}{
		{name: "device ed25519 ok", chain: okDevice},
		{name: "device p256 ok", chain: device(ca, "dev-2", ECDSAP256)},
		{name: "device leaf only ok", chain: okDevice[:1]},
		{name: "gateway ok", chain: gateway(ca), asServer: true},
		{name: "wrong CA leaf only", chain: device(other, "dev-x", Ed25519)[:1], want: ErrUnknownAuthority},
		{name: "wrong CA with its intermediate", chain: device(other, "dev-x", Ed25519), want: ErrUnknownAuthority},
		{name: "sibling intermediate", chain: device(siblingCA, "dev-s", Ed25519), want: ErrUnknownAuthority},
		{name: "expired", chain: okDevice, at: start.Add(25 * time.Hour), want: ErrExpired},
		{name: "not yet valid", chain: okDevice, at: start.Add(-time.Hour), want: ErrNotYetValid},
		{name: "revoked serial", chain: revokedChain, want: ErrRevoked},
		{name: "revoked key", chain: revokedKeyChain, want: ErrRevoked},
		{name: "server cert used as client", chain: gateway(ca), want: ErrUnknownAuthority},
		{name: "client cert used as server", chain: okDevice, asServer: true, want: ErrUnknownAuthority},
		{name: "server cert used as client, root pinned", chain: gateway(ca), want: ErrKeyUsage, v: rootOnly},
		{name: "client cert used as server, root pinned", chain: okDevice, asServer: true, want: ErrKeyUsage, v: rootOnly},
		{name: "gateway ok, root pinned", chain: gateway(ca), asServer: true, v: rootOnly},
		{name: "rsa device key", chain: []*x509.Certificate{rawLeaf(t, ca, &rsaKey.PublicKey, x509.ExtKeyUsageClientAuth)}, want: ErrUnsupportedKey},
		{name: "p384 device key", chain: []*x509.Certificate{rawLeaf(t, ca, &p384.PublicKey, x509.ExtKeyUsageClientAuth)}, want: ErrUnsupportedKey},
		// Mis-issued for the identity point: refused on the handshake path too.
		{name: "small-order device key", chain: []*x509.Certificate{rawLeaf(t, ca, ed25519.PublicKey(append([]byte{1}, make([]byte, 31)...)), x509.ExtKeyUsageClientAuth)}, want: ErrUnsupportedKey},
		{name: "empty chain", chain: nil, want: ErrNoCertificate},
		{name: "chain too long", chain: append(okDevice, okDevice[1], okDevice[1], okDevice[1], okDevice[1]), want: ErrInvalidCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.at.IsZero() {
				clock.Set(tt.at)
				defer clock.Set(start)
			}
			var err error
			switch {
			case tt.asServer && tt.v != nil:
				err = tt.v.VerifyGateway(t.Context(), tt.chain, "")
			case tt.asServer:
				err = gv.VerifyGateway(t.Context(), tt.chain, "")
			case tt.v != nil:
				_, err = tt.v.VerifyDevice(t.Context(), tt.chain)
			default:
				_, err = v.VerifyDevice(t.Context(), tt.chain)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var ce *CertificateError
			if tt.want != ErrNoCertificate && !errors.As(err, &ce) {
				t.Errorf("got %T, want *CertificateError", err)
			}
		})
	}
}

func TestVerifyGatewayName(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, ECDSAP256)
	gw, err := ca.IssueGateway(GatewayOptions{Name: "gw", DNSNames: []string{"gw.test"}, IPAddresses: loopbackIPs()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := ca.GatewayVerifier()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want error
	}{
		{"gw.test", nil},
		{"127.0.0.1", nil},
		{"other.test", ErrNameMismatch},
		{"127.0.0.2", ErrNameMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := v.VerifyGateway(t.Context(), []*x509.Certificate{gw.Leaf}, tt.name)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifierRevocationError(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	boom := errors.New("lookup failed")
	v, err := ca.DeviceVerifier(RevocationCheckerFunc(func(context.Context, *x509.Certificate) (bool, error) {
		return false, boom
	}))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := ca.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.VerifyDevice(t.Context(), []*x509.Certificate{dev.Leaf})
	if !errors.Is(err, ErrRevoked) || !errors.Is(err, boom) {
		t.Fatalf("got %v, want ErrRevoked wrapping the checker error (fail closed)", err)
	}
}

func TestVerifierCheck(t *testing.T) {
	clock := newTestClock()
	start := clock.Now()
	ca := newTestAuthority(t, clock, Ed25519)
	rev := NewMemoryRevocation()
	v, err := ca.DeviceVerifier(rev)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := ca.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Check(t.Context(), dev.Leaf); err != nil {
		t.Fatalf("fresh: got %v, want nil", err)
	}
	clock.Set(start.Add(2 * time.Hour))
	if err := v.Check(t.Context(), dev.Leaf); !errors.Is(err, ErrExpired) {
		t.Fatalf("later: got %v, want ErrExpired", err)
	}
	clock.Set(start)
	rev.RevokeCert(dev.Leaf)
	if err := v.Check(t.Context(), dev.Leaf); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: got %v, want ErrRevoked", err)
	}
}

func TestPinsFromCertificates(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	other := newTestAuthority(t, clock, Ed25519)
	p, err := PinsFromCertificates([]*x509.Certificate{ca.DeviceCA.Cert, ca.Root.Cert, ca.GatewayCA.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if p.Root != ca.Root.Cert || p.GatewayCA != ca.GatewayCA.Cert || p.DeviceCA != ca.DeviceCA.Cert {
		t.Fatalf("got %+v, want root, gateway CA and device CA in place", p)
	}
	if p, err := PinsFromCertificates([]*x509.Certificate{ca.Root.Cert}); err != nil || p.GatewayCA != nil || p.DeviceCA != nil {
		t.Fatalf("root alone: got (%+v, %v)", p, err)
	}
	dev := mustDevice(t, ca, "d", Ed25519)
	for name, certs := range map[string][]*x509.Certificate{
		"no root":                   {ca.GatewayCA.Cert},
		"two roots":                 {ca.Root.Cert, other.Root.Cert},
		"intermediate of another":   {ca.Root.Cert, other.DeviceCA.Cert},
		"two device CAs":            {ca.Root.Cert, ca.DeviceCA.Cert, ca.DeviceCA.Cert},
		"a leaf":                    {ca.Root.Cert, dev.Leaf},
		"unrestricted intermediate": {ca.Root.Cert, must(NewIntermediateCA(ca.Root, CAOptions{CommonName: "any", Clock: clock.Now})).Cert},
	} {
		if _, err := PinsFromCertificates(certs); err == nil {
			t.Errorf("%s: got nil error", name)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestVerifierPinnedPath checks that a leaf of the pinned issuer is
// verified with one signature check, and that what that path does not
// accept still goes through x509.Verify and is refused.
func TestVerifierPinnedPath(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	other := newTestAuthority(t, clock, Ed25519) // same subject names, other keys
	v, err := ca.DeviceVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(a *Authority) *x509.Certificate {
		c, err := a.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "pinned-1"})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	good := issue(ca)
	// The same certificate with its signature's last byte changed.
	raw := bytes.Clone(good.Raw)
	raw[len(raw)-1] ^= 1
	tampered, err := x509.ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		leaf       *x509.Certificate
		at         time.Time
		wantErr    error
		wantPinned uint64
	}{
		{"valid", good, clock.Now(), nil, 1},
		{"bad signature", tampered, clock.Now(), ErrUnknownAuthority, 0},
		{"other authority", issue(other), clock.Now(), ErrUnknownAuthority, 0},
		{"expired", good, good.NotAfter.Add(time.Hour), ErrExpired, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Set(tc.at)
			defer clock.Set(newTestClock().Now())
			pinned0, full0 := v.pinnedChecks.Load(), v.fullChecks.Load()
			_, err := v.VerifyDevice(t.Context(), []*x509.Certificate{tc.leaf})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if got := v.pinnedChecks.Load() - pinned0; got != tc.wantPinned {
				t.Errorf("got %d pinned-path verifications, want %d", got, tc.wantPinned)
			}
			if got := v.fullChecks.Load() - full0; got != 1 {
				t.Errorf("got %d full verifications, want 1", got)
			}
		})
	}
}
