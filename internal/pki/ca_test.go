package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"slices"
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
			root := ca.Root.Cert
			tests := []struct {
				name       string
				cert       *x509.Certificate
				maxPathLen int
				lifetime   time.Duration
				eku        []x509.ExtKeyUsage
			}{
				{"root", root, 1, DefaultRootLifetime, nil},
				{"gateway CA", ca.GatewayCA.Cert, 0, DefaultIntermediateLifetime, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
				{"device CA", ca.DeviceCA.Cert, 0, DefaultIntermediateLifetime, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
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
				if !slices.Equal(c.ExtKeyUsage, tt.eku) {
					t.Errorf("%s: got ExtKeyUsage %v, want %v", tt.name, c.ExtKeyUsage, tt.eku)
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
				if c == root {
					continue
				}
				if !bytes.Equal(c.AuthorityKeyId, root.SubjectKeyId) {
					t.Errorf("%s: AuthorityKeyId %x, want root SubjectKeyId %x", tt.name, c.AuthorityKeyId, root.SubjectKeyId)
				}
				if err := c.CheckSignatureFrom(root); err != nil {
					t.Errorf("%s: signature: %v", tt.name, err)
				}
			}
			if keysEqual(ca.GatewayCA.Cert.PublicKey, ca.DeviceCA.Cert.PublicKey) {
				t.Error("gateway CA and device CA share a key")
			}
		})
	}
}

// TestValidateShape: an authority whose intermediates can issue the other
// kind of leaf, or share a key, is refused.
func TestValidateShape(t *testing.T) {
	clock := newTestClock()
	good := newTestAuthority(t, clock, Ed25519)
	unrestricted, err := NewIntermediateCA(good.Root, CAOptions{CommonName: "any", Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	swapped := *good
	swapped.GatewayCA, swapped.DeviceCA = good.DeviceCA, good.GatewayCA
	loose := *good
	loose.DeviceCA = unrestricted
	shared := *good
	sharedKey, err := NewIntermediateCA(good.Root, CAOptions{CommonName: "same key", Key: good.GatewayCA.Key, Clock: clock.Now,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	shared.DeviceCA = sharedKey
	foreign := *good
	foreign.DeviceCA = newTestAuthority(t, clock, Ed25519).DeviceCA
	for name, a := range map[string]*Authority{"swapped": &swapped, "unrestricted device CA": &loose, "shared key": &shared, "foreign device CA": &foreign} {
		if err := a.Validate(); err == nil {
			t.Errorf("%s: got nil, want refusal", name)
		}
	}
}

// TestIntermediatesChainOnlyTheirKind: a certificate the device CA signed
// for server authentication, or the gateway CA for client authentication
// (a mis-issuance, or a compromised intermediate), is refused by the
// extended key usage of its issuer alone, even by a verifier that pins
// only the root.
func TestIntermediatesChainOnlyTheirKind(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	misissue := func(issuer *CA, usage x509.ExtKeyUsage) []*x509.Certificate {
		key := mustKey(t, Ed25519)
		tmpl, err := baseTemplate("dev-1", "", key.Public(), clock.Now, time.Hour, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		tmpl.URIs = append(tmpl.URIs, DeviceURI("dev-1"))
		tmpl.DNSNames = []string{"gateway.test"}
		leaf, err := sign(tmpl, issuer.Cert, key.Public(), issuer.Key)
		if err != nil {
			t.Fatal(err)
		}
		return []*x509.Certificate{leaf, issuer.Cert}
	}
	rootOnly, err := NewVerifier(VerifierConfig{Root: ca.Root.Cert, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	devV, _ := ca.DeviceVerifier(nil)
	gwV, _ := ca.GatewayVerifier()
	serverFromDeviceCA := misissue(ca.DeviceCA, x509.ExtKeyUsageServerAuth)
	clientFromGatewayCA := misissue(ca.GatewayCA, x509.ExtKeyUsageClientAuth)
	if err := rootOnly.VerifyGateway(t.Context(), serverFromDeviceCA, "gateway.test"); !errors.Is(err, ErrKeyUsage) {
		t.Errorf("server certificate from the device CA, root pinned: got %v, want ErrKeyUsage", err)
	}
	if _, err := rootOnly.VerifyDevice(t.Context(), clientFromGatewayCA); !errors.Is(err, ErrKeyUsage) {
		t.Errorf("client certificate from the gateway CA, root pinned: got %v, want ErrKeyUsage", err)
	}
	if err := gwV.VerifyGateway(t.Context(), serverFromDeviceCA, "gateway.test"); err == nil {
		t.Error("server certificate from the device CA, gateway CA pinned: accepted")
	}
	if _, err := devV.VerifyDevice(t.Context(), clientFromGatewayCA); err == nil {
		t.Error("client certificate from the gateway CA, device CA pinned: accepted")
	}
	// Properly issued certificates pass all of them.
	if err := rootOnly.VerifyGateway(t.Context(), misissue(ca.GatewayCA, x509.ExtKeyUsageServerAuth), "gateway.test"); err != nil {
		t.Errorf("gateway certificate: %v", err)
	}
	if _, err := devV.VerifyDevice(t.Context(), misissue(ca.DeviceCA, x509.ExtKeyUsageClientAuth)); err != nil {
		t.Errorf("device certificate: %v", err)
	}
}

func TestIntermediateCappedByRoot(t *testing.T) {
	clock := newTestClock()
	ca, err := NewAuthority(AuthorityOptions{Clock: clock.Now, RootLifetime: time.Hour, IntermediateLifetime: 10 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, inter := range []*CA{ca.GatewayCA, ca.DeviceCA} {
		if got, want := inter.Cert.NotAfter, ca.Root.Cert.NotAfter; !got.Equal(want) {
			t.Fatalf("%s: got NotAfter %s, want capped at root's %s", inter.Cert.Subject.CommonName, got, want)
		}
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
			if !bytes.Equal(l.AuthorityKeyId, ca.DeviceCA.Cert.SubjectKeyId) {
				t.Errorf("got AuthorityKeyId %x, want device CA SubjectKeyId", l.AuthorityKeyId)
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
	noKey := &Authority{Root: ca.Root, GatewayCA: ca.GatewayCA, DeviceCA: &CA{Cert: ca.DeviceCA.Cert}, Clock: clock.Now}
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
		{"id with trailing dot", ca, ok, "a.", ErrInvalidDeviceID},
		{"id too long for a label value", ca, ok, string(bytes.Repeat([]byte("a"), 64)), ErrInvalidDeviceID},
		{"no device CA key", noKey, ok, "d", ErrNoKey},
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
			csrFor := func(k crypto.Signer, id string) *x509.CertificateRequest {
				der, err := NewDeviceCSR(k, id)
				if err != nil {
					t.Fatal(err)
				}
				csr, err := ParseCSR(EncodeCSRPEM(der))
				if err != nil {
					t.Fatal(err)
				}
				return csr
			}
			anonymous, named := csrFor(key, ""), csrFor(key, "dev-1")
			for _, csr := range []*x509.CertificateRequest{anonymous, named} {
				c, err := ca.IssueDeviceFromCSR(csr, DeviceRequest{DeviceID: "dev-1", PublicKey: key.Public()})
				if err != nil {
					t.Fatal(err)
				}
				if id, err := DeviceIDFromCert(c.Leaf); err != nil || id != "dev-1" {
					t.Errorf("got device id (%q, %v), want dev-1", id, err)
				}
				if !keysEqual(key.Public(), c.Leaf.PublicKey) {
					t.Error("certificate key differs from request key")
				}
			}
			tampered := func() *x509.CertificateRequest {
				der := bytes.Clone(named.Raw)
				der[len(der)-3] ^= 0x01
				csr, err := ParseCSR(der)
				if err != nil {
					t.Fatalf("parse tampered request: %v", err)
				}
				return csr
			}()
			other := mustKey(t, alg)
			withSAN := func() *x509.CertificateRequest {
				der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"gateway.test"}}, key)
				if err != nil {
					t.Fatal(err)
				}
				csr, _ := x509.ParseCertificateRequest(der)
				return csr
			}()
			tests := []struct {
				name string
				csr  *x509.CertificateRequest
				want DeviceRequest
				err  error
			}{
				{"no expected key", named, DeviceRequest{DeviceID: "dev-1"}, ErrMissingExpectation},
				{"no expected id", anonymous, DeviceRequest{PublicKey: key.Public()}, ErrInvalidDeviceID},
				{"no request", nil, DeviceRequest{DeviceID: "dev-1", PublicKey: key.Public()}, ErrMissingExpectation},
				{"key of another device", named, DeviceRequest{DeviceID: "dev-1", PublicKey: other.Public()}, ErrKeyMismatch},
				{"request names another device", named, DeviceRequest{DeviceID: "dev-2", PublicKey: key.Public()}, ErrRequestedName},
				{"request names a host", withSAN, DeviceRequest{DeviceID: "dev-1", PublicKey: key.Public()}, ErrRequestedName},
				{"bad signature", tampered, DeviceRequest{DeviceID: "dev-1", PublicKey: key.Public()}, ErrCSRSignature},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					c, err := ca.IssueDeviceFromCSR(tt.csr, tt.want)
					var re *RequestError
					if c != nil || !errors.As(err, &re) || !errors.Is(err, tt.err) {
						t.Fatalf("got (%v, %v), want a *RequestError matching %v", c, err, tt.err)
					}
				})
			}
		})
	}
	// A request by a holder of a small-order key would verify without a
	// private key; the key is refused before the signature is looked at.
	weak := ed25519.PublicKey(append([]byte{1}, make([]byte, 31)...))
	csr := &x509.CertificateRequest{PublicKey: weak}
	if _, err := ca.IssueDeviceFromCSR(csr, DeviceRequest{DeviceID: "dev-1", PublicKey: weak}); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("small-order request key: got %v, want ErrUnsupportedKey", err)
	}
}

func TestIssueGatewayFromCSR(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	key := mustKey(t, Ed25519)
	want := GatewayRequest{Name: "gw-0", DNSNames: []string{"gw.test", "gw-0.gw.test"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	req := func(name string, dns []string, ips []net.IP) *x509.CertificateRequest {
		der, err := NewGatewayCSR(key, name, dns, ips)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := ParseCSR(der)
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	c, err := ca.IssueGatewayFromCSR(req("gw-0", []string{"gw.test"}, nil), want)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Leaf.DNSNames, want.DNSNames) || len(c.Leaf.IPAddresses) != 1 || c.Leaf.Subject.CommonName != "gw-0" {
		t.Errorf("got names %v %v %q, want the expected ones", c.Leaf.DNSNames, c.Leaf.IPAddresses, c.Leaf.Subject.CommonName)
	}
	if got := c.Leaf.NotAfter.Sub(clock.Now()); got != DefaultGatewayLifetime {
		t.Errorf("got lifetime %s, want %s", got, DefaultGatewayLifetime)
	}
	if !c.Chain[0].Equal(ca.GatewayCA.Cert) || c.Key != nil {
		t.Errorf("got chain %v and key %v, want the gateway CA and no key", c.Chain[0].Subject, c.Key)
	}
	gwV, _ := ca.GatewayVerifier()
	if err := gwV.VerifyGateway(t.Context(), append([]*x509.Certificate{c.Leaf}, c.Chain...), "gw-0.gw.test"); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
	tests := []struct {
		name string
		csr  *x509.CertificateRequest
		want GatewayRequest
		err  error
	}{
		{"no names expected", req("gw-0", nil, nil), GatewayRequest{Name: "gw-0"}, ErrMissingExpectation},
		{"another replica", req("gw-1", nil, nil), want, ErrRequestedName},
		{"unexpected DNS name", req("gw-0", []string{"evil.test"}, nil), want, ErrRequestedName},
		{"unexpected IP", req("gw-0", nil, []net.IP{net.ParseIP("10.0.0.1")}), want, ErrRequestedName},
		{"expected key differs", req("gw-0", nil, nil), GatewayRequest{Name: "gw-0", DNSNames: []string{"gw.test"}, PublicKey: mustKey(t, Ed25519).Public()}, ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ca.IssueGatewayFromCSR(tt.csr, tt.want); !errors.Is(err, tt.err) {
				t.Fatalf("got %v, want %v", err, tt.err)
			}
		})
	}
	noKey := &Authority{Root: ca.Root, GatewayCA: &CA{Cert: ca.GatewayCA.Cert}, DeviceCA: ca.DeviceCA}
	if _, err := noKey.IssueGatewayFromCSR(req("gw-0", nil, nil), want); !errors.Is(err, ErrNoKey) {
		t.Fatalf("without the gateway CA key: got %v, want ErrNoKey", err)
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
	if gw.Key == nil || len(gw.Chain) != 1 || !gw.Chain[0].Equal(ca.GatewayCA.Cert) {
		t.Fatalf("got key %v chain %d, want key and the gateway CA", gw.Key, len(gw.Chain))
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
