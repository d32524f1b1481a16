package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

func TestAuthorityCAs(t *testing.T) {
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			clock := newTestClock()
			ca := newTestAuthority(t, clock, alg)
			if err := ca.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			root, inter := ca.Root.Cert, ca.Intermediate.Cert
			tests := []struct {
				name       string
				cert       *x509.Certificate
				maxPathLen int
				lifetime   time.Duration
			}{
				{"root", root, 1, DefaultRootLifetime},
				{"intermediate", inter, 0, DefaultIntermediateLifetime},
			}
			for _, tt := range tests {
				c := tt.cert
				if !c.IsCA || !c.BasicConstraintsValid {
					t.Errorf("%s: got IsCA=%v BasicConstraintsValid=%v, want both true", tt.name, c.IsCA, c.BasicConstraintsValid)
				}
				if c.MaxPathLen != tt.maxPathLen || (tt.maxPathLen == 0 && !c.MaxPathLenZero) {
					t.Errorf("%s: got MaxPathLen %d (zero=%v), want %d", tt.name, c.MaxPathLen, c.MaxPathLenZero, tt.maxPathLen)
				}
				if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
					t.Errorf("%s: got KeyUsage %v, want %v", tt.name, c.KeyUsage, want)
				}
				if len(c.SubjectKeyId) != 20 {
					t.Errorf("%s: got SubjectKeyId of %d bytes, want 20", tt.name, len(c.SubjectKeyId))
				}
				if got := c.NotAfter.Sub(clock.Now()); got != tt.lifetime {
					t.Errorf("%s: got lifetime %s, want %s", tt.name, got, tt.lifetime)
				}
				if got := KeyAlgorithmName(c.PublicKey); (alg == Ed25519) != (got == "Ed25519") {
					t.Errorf("%s: got key %s for algorithm %s", tt.name, got, alg)
				}
			}
			if !bytes.Equal(inter.AuthorityKeyId, root.SubjectKeyId) {
				t.Errorf("intermediate AuthorityKeyId %x, want root SubjectKeyId %x", inter.AuthorityKeyId, root.SubjectKeyId)
			}
			if err := inter.CheckSignatureFrom(root); err != nil {
				t.Errorf("intermediate signature: %v", err)
			}
		})
	}
}

func TestIntermediateCappedByRoot(t *testing.T) {
	clock := newTestClock()
	ca, err := NewAuthority(AuthorityOptions{Clock: clock.Now, RootLifetime: time.Hour, IntermediateLifetime: 10 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ca.Intermediate.Cert.NotAfter, ca.Root.Cert.NotAfter; !got.Equal(want) {
		t.Fatalf("got intermediate NotAfter %s, want capped at root's %s", got, want)
	}
}

func TestIssueDevice(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	tests := []struct {
		name     string
		alg      KeyAlgorithm
		lifetime time.Duration
		want     time.Duration
	}{
		{"ed25519 default lifetime", Ed25519, 0, DefaultDeviceLifetime},
		{"p256 one hour", ECDSAP256, time.Hour, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := mustKey(t, tt.alg)
			c, err := ca.IssueDevice(key.Public(), DeviceOptions{DeviceID: "esp32-0001", Lifetime: tt.lifetime})
			if err != nil {
				t.Fatal(err)
			}
			l := c.Leaf
			if l.Subject.CommonName != "esp32-0001" {
				t.Errorf("got CN %q, want esp32-0001", l.Subject.CommonName)
			}
			if len(l.URIs) != 1 || l.URIs[0].String() != "urn:wasmbed:device:esp32-0001" {
				t.Errorf("got URIs %v, want [urn:wasmbed:device:esp32-0001]", l.URIs)
			}
			if len(l.ExtKeyUsage) != 1 || l.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("got ExtKeyUsage %v, want [ClientAuth]", l.ExtKeyUsage)
			}
			if l.IsCA || l.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("got IsCA=%v KeyUsage=%v, want leaf with digital signature", l.IsCA, l.KeyUsage)
			}
			if got := l.NotAfter.Sub(clock.Now()); got != tt.want {
				t.Errorf("got lifetime %s, want %s", got, tt.want)
			}
			if got := clock.Now().Sub(l.NotBefore); got != ClockSkew {
				t.Errorf("got NotBefore backdated %s, want %s", got, ClockSkew)
			}
			if !bytes.Equal(l.AuthorityKeyId, ca.Intermediate.Cert.SubjectKeyId) {
				t.Errorf("got AuthorityKeyId %x, want intermediate SubjectKeyId", l.AuthorityKeyId)
			}
			if l.SerialNumber.BitLen() > 128 || l.SerialNumber.Sign() <= 0 {
				t.Errorf("got serial %x, want positive 128-bit", l.SerialNumber)
			}
			id, err := DeviceIDFromCert(l)
			if err != nil || id != "esp32-0001" {
				t.Errorf("DeviceIDFromCert: got (%q, %v), want esp32-0001", id, err)
			}
		})
	}
}

func TestIssueDeviceRefusals(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	noKey := &Authority{Root: ca.Root, Intermediate: &CA{Cert: ca.Intermediate.Cert}, Clock: clock.Now}
	ok := mustKey(t, Ed25519).Public()
	tests := []struct {
		name string
		a    *Authority
		pub  any
		id   string
		want error
	}{
		{"rsa 1024", ca, &rsa1024.PublicKey, "d", ErrUnsupportedKey},
		{"p224", ca, &p224.PublicKey, "d", ErrUnsupportedKey},
		{"nil key", ca, nil, "d", ErrUnsupportedKey},
		{"empty id", ca, ok, "", ErrInvalidDeviceID},
		{"id with slash", ca, ok, "a/b", ErrInvalidDeviceID},
		{"id with leading dash", ca, ok, "-a", ErrInvalidDeviceID},
		{"id too long", ca, ok, string(bytes.Repeat([]byte("a"), 65)), ErrInvalidDeviceID},
		{"no intermediate key", noKey, ok, "d", ErrNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.a.IssueDevice(tt.pub, DeviceOptions{DeviceID: tt.id})
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	var uke *UnsupportedKeyError
	if _, err := ca.IssueDevice(&rsa1024.PublicKey, DeviceOptions{DeviceID: "d"}); !errors.As(err, &uke) || uke.Algorithm != "RSA-1024" {
		t.Fatalf("got %v, want *UnsupportedKeyError for RSA-1024", err)
	}
}

func TestIssueDeviceFromCSR(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			key := mustKey(t, alg)
			der, err := NewDeviceCSR(key, "from-csr")
			if err != nil {
				t.Fatal(err)
			}
			csr, err := ParseCSR(EncodeCSRPEM(der))
			if err != nil {
				t.Fatal(err)
			}
			c, err := ca.IssueDeviceFromCSR(csr, DeviceOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if c.Leaf.Subject.CommonName != "from-csr" {
				t.Errorf("got CN %q, want from-csr", c.Leaf.Subject.CommonName)
			}
			if !keysEqual(key.Public(), c.Leaf.PublicKey) {
				t.Error("certificate key differs from request key")
			}
			// Override the id: the gateway assigns ids at enrollment.
			c, err = ca.IssueDeviceFromCSR(csr, DeviceOptions{DeviceID: "assigned"})
			if err != nil || c.Leaf.Subject.CommonName != "assigned" {
				t.Errorf("override: got (%v, %v), want CN assigned", c, err)
			}

			// Flip a bit in the signature: the request must be refused.
			bad := bytes.Clone(der)
			bad[len(bad)-3] ^= 0x01
			badCSR, err := ParseCSR(bad)
			if err != nil {
				t.Fatalf("parse tampered request: %v", err)
			}
			if _, err := ca.IssueDeviceFromCSR(badCSR, DeviceOptions{}); !errors.Is(err, ErrCSRSignature) {
				t.Fatalf("tampered: got %v, want ErrCSRSignature", err)
			}
		})
	}
}

func TestIssueGateway(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, ECDSAP256)
	gw, err := ca.IssueGateway(GatewayOptions{Name: "gw-0", DNSNames: []string{"gw-0.gw.svc"}, IPAddresses: []net.IP{net.ParseIP("::1")}})
	if err != nil {
		t.Fatal(err)
	}
	l := gw.Leaf
	if len(l.ExtKeyUsage) != 1 || l.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("got ExtKeyUsage %v, want [ServerAuth]", l.ExtKeyUsage)
	}
	if len(l.DNSNames) != 1 || len(l.IPAddresses) != 1 {
		t.Errorf("got SANs %v %v, want one DNS name and one IP", l.DNSNames, l.IPAddresses)
	}
	if got := l.NotAfter.Sub(clock.Now()); got != DefaultGatewayLifetime {
		t.Errorf("got lifetime %s, want %s", got, DefaultGatewayLifetime)
	}
	if gw.Key == nil || len(gw.Chain) != 1 {
		t.Fatalf("got key %v chain %d, want key and intermediate", gw.Key, len(gw.Chain))
	}
	if _, err := ca.IssueGateway(GatewayOptions{Name: "no-sans"}); err == nil {
		t.Error("no SANs: got nil error, want refusal")
	}
}

func TestSerialsUnique(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		s, err := NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if s.Sign() <= 0 || s.BitLen() > 128 {
			t.Fatalf("got serial %x, want positive and at most 128 bits", s)
		}
		if seen[s.String()] {
			t.Fatalf("serial %x repeated", s)
		}
		seen[s.String()] = true
	}
}

func TestRenewal(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	c, err := ca.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d", Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	nb := c.Leaf.NotBefore
	renew := RenewAt(c.Leaf)
	if want := nb.Add(c.Leaf.NotAfter.Sub(nb) * 2 / 3); !renew.Equal(want) {
		t.Fatalf("got RenewAt %s, want %s", renew, want)
	}
	tests := []struct {
		at   time.Time
		want bool
	}{
		{nb, false},
		{renew.Add(-time.Second), false},
		{renew, true},
		{c.Leaf.NotAfter, true},
		{c.Leaf.NotAfter.Add(time.Hour), true},
	}
	for _, tt := range tests {
		if got := NeedsRenewal(c.Leaf, tt.at); got != tt.want {
			t.Errorf("NeedsRenewal at %s: got %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestValidityStatus(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	c, err := ca.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at   time.Time
		want string
	}{
		{c.Leaf.NotBefore.Add(-time.Second), "not yet valid"},
		{clock.Now(), "valid"},
		{RenewAt(c.Leaf), "renewal due"},
		{c.Leaf.NotAfter.Add(time.Second), "expired"},
	}
	for _, tt := range tests {
		if got := ValidityStatus(c.Leaf, tt.at); got != tt.want {
			t.Errorf("at %s: got %q, want %q", tt.at, got, tt.want)
		}
	}
	if got := ValidityStatus(ca.Root.Cert, clock.Now().Add(9*365*24*time.Hour)); got != "valid" {
		t.Errorf("root late in life: got %q, want valid (CAs are not renewed this way)", got)
	}
}
