package certsign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
)

var (
	now     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	gateway = Requester{Username: "system:serviceaccount:wasmbed-system:wasmbed-gateway", Groups: []string{"system:serviceaccounts"}}
	policy  = Policy{GatewayUsers: []string{gateway.Username}, GatewayGroups: []string{"wasmbed:gateways"}}
	open    = pairing.Window{OpenUntil: now.Add(time.Minute)}
)

func deviceKey(t testing.TB, seed byte) ed25519.PrivateKey {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return ed25519.NewKeyFromSeed(s)
}

func deviceCSR(t testing.TB, key crypto.Signer, id string, mutate ...func(*x509.CertificateRequest)) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	if id != "" {
		tmpl.Subject, tmpl.URIs = pkix.Name{CommonName: id}, []*url.URL{pki.DeviceURI(id)}
	}
	for _, m := range mutate {
		m(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCSRPEM(der)
}

func deviceFor(t testing.TB, key ed25519.PrivateKey, id string) Device {
	t.Helper()
	enc, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return Device{Found: true, Name: "ns/" + id, DeviceID: id, PublicKey: enc}
}

func newCAs(t testing.TB) *pki.Authority {
	t.Helper()
	a, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// loaded returns the CA of kind as the controller loads it from its Secret.
func loaded(t testing.TB, a *pki.Authority, kind Kind) *pki.Authority {
	t.Helper()
	data, err := SecretData(kind, a)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(kind, data)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	return ca
}

func TestSignDevice(t *testing.T) {
	all := newCAs(t)
	ca := loaded(t, all, DeviceCA)
	key := deviceKey(t, 1)
	other := deviceKey(t, 2)
	dev := deviceFor(t, key, "esp32-0001")
	good := DeviceRequest{Requester: gateway, CSR: deviceCSR(t, key, "esp32-0001"), Usages: []string{"digital signature", "client auth"}, Purpose: PurposeEnroll}
	with := func(f func(*DeviceRequest)) DeviceRequest { r := good; f(&r); return r }
	revoked := dev
	revoked.Revoked = true
	tampered := deviceCSR(t, key, "esp32-0001")
	tampered[len(tampered)/2] ^= 0x04
	badKey := dev
	badKey.PublicKey = "not-a-key"
	longID := deviceFor(t, key, strings.Repeat("a", 64))
	for _, tc := range []struct {
		name   string
		req    DeviceRequest
		dev    Device
		window pairing.Window
		want   string
	}{
		{"enroll inside the window", good, dev, open, ""},
		{"enroll with a request that names nothing", with(func(r *DeviceRequest) {
			r.CSR = deviceCSR(t, key, "", func(c *x509.CertificateRequest) { c.URIs = nil })
		}), dev, open, ""},
		{"renew outside the window", with(func(r *DeviceRequest) { r.Purpose = PurposeRenew }), dev, pairing.Window{}, ""},
		{"requester in a gateway group", with(func(r *DeviceRequest) {
			r.Requester = Requester{Username: "gw-7", Groups: []string{"wasmbed:gateways"}}
		}), dev, open, ""},
		{"enroll with the window closed", good, dev, pairing.Window{}, ReasonPairingClosed},
		{"enroll after the window ended", good, dev, pairing.Window{OpenUntil: now.Add(-time.Second)}, ReasonPairingClosed},
		{"requester not a gateway", with(func(r *DeviceRequest) {
			r.Requester = Requester{Username: "alice", Groups: []string{"system:authenticated"}}
		}), dev, open, ReasonNotGateway},
		{"unknown purpose", with(func(r *DeviceRequest) { r.Purpose = "" }), dev, open, ReasonUnknownPurpose},
		{"server usage", with(func(r *DeviceRequest) { r.Usages = []string{"digital signature", "client auth", "server auth"} }), dev, open, ReasonBadUsages},
		{"no client auth", with(func(r *DeviceRequest) { r.Usages = []string{"digital signature"} }), dev, open, ReasonBadUsages},
		{"not a request", with(func(r *DeviceRequest) { r.CSR = []byte("hello") }), dev, open, ReasonMalformed},
		{"tampered request", with(func(r *DeviceRequest) { r.CSR = tampered }), dev, open, ReasonMalformed},
		{"device missing", good, Device{Name: "ns/esp32-0001"}, open, ReasonDeviceNotFound},
		{"device revoked", good, revoked, open, ReasonDeviceRevoked},
		{"device key unreadable", good, badKey, open, ReasonDeviceKeyInvalid},
		{"device id too long for a certificate", with(func(r *DeviceRequest) { r.CSR = deviceCSR(t, key, "") }), longID, open, ReasonInvalidDeviceID},
		{"key mismatch", with(func(r *DeviceRequest) { r.CSR = deviceCSR(t, other, "esp32-0001") }), dev, open, ReasonKeyMismatch},
		{"other device id", with(func(r *DeviceRequest) { r.CSR = deviceCSR(t, key, "esp32-0002") }), dev, open, ReasonDeviceIDMismatch},
		{"DNS name in a device request", with(func(r *DeviceRequest) {
			r.CSR = deviceCSR(t, key, "esp32-0001", func(c *x509.CertificateRequest) { c.DNSNames = []string{"gateway.example"} })
		}), dev, open, ReasonDeviceIDMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pem, d, err := policy.SignDevice(ca, tc.req, tc.dev, tc.window, now)
			switch {
			case err != nil:
				t.Fatalf("error %v", err)
			case tc.want == "" && d != nil:
				t.Fatalf("got denial %v, want a certificate", d)
			case tc.want == "":
				chain, err := pki.ParseCertificatesPEM(pem)
				if err != nil {
					t.Fatal(err)
				}
				v, err := all.DeviceVerifier(nil)
				if err != nil {
					t.Fatal(err)
				}
				if id, err := v.VerifyDevice(t.Context(), chain); err != nil || id.DeviceID != tc.dev.DeviceID || id.EncodedKey != tc.dev.PublicKey {
					t.Fatalf("certificate: %+v, %v; want %s with its key", id, err, tc.dev.DeviceID)
				}
			case d == nil || d.Reason != tc.want:
				t.Fatalf("got %v, want reason %s", d, tc.want)
			}
		})
	}
}

func gatewayCSR(t testing.TB, cn string, dns []string, ips []net.IP) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips}, deviceKey(t, 9))
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCSRPEM(der)
}

func TestSignGateway(t *testing.T) {
	all := newCAs(t)
	ca := loaded(t, all, GatewayCA)
	usages := []string{"digital signature", "server auth"}
	names := policy
	names.GatewayDNSNames, names.GatewayIPs = []string{"gw.wasmbed.svc", "gw.local"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, tc := range []struct {
		name string
		pol  Policy
		req  GatewayRequest
		want string
	}{
		{"gateway", names, GatewayRequest{Requester: gateway, CSR: gatewayCSR(t, "gw-0", []string{"gw.local"}, []net.IP{net.IPv4(127, 0, 0, 1)}), Usages: usages}, ""},
		{"not a gateway", names, GatewayRequest{Requester: Requester{Username: "mallory"}, CSR: gatewayCSR(t, "gw-0", []string{"gw.local"}, nil), Usages: usages}, ReasonNotGateway},
		{"client usage", names, GatewayRequest{Requester: gateway, CSR: gatewayCSR(t, "gw-0", []string{"gw.local"}, nil), Usages: []string{"client auth"}}, ReasonBadUsages},
		{"a name it may not have", names, GatewayRequest{Requester: gateway, CSR: gatewayCSR(t, "gw-0", []string{"bank.example"}, nil), Usages: usages}, ReasonBadNames},
		{"no common name", names, GatewayRequest{Requester: gateway, CSR: gatewayCSR(t, "", []string{"gw.local"}, nil), Usages: usages}, ReasonBadNames},
		{"no names configured", policy, GatewayRequest{Requester: gateway, CSR: gatewayCSR(t, "gw-0", []string{"gw.local"}, nil), Usages: usages}, ReasonNoGatewayNames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pem, d, err := tc.pol.SignGateway(ca, tc.req)
			switch {
			case err != nil:
				t.Fatalf("error %v", err)
			case tc.want == "" && d != nil:
				t.Fatalf("got denial %v, want a certificate", d)
			case tc.want == "":
				chain, err := pki.ParseCertificatesPEM(pem)
				if err != nil {
					t.Fatal(err)
				}
				v, err := all.GatewayVerifier()
				if err != nil {
					t.Fatal(err)
				}
				if err := v.VerifyGateway(t.Context(), chain, "gw.wasmbed.svc"); err != nil {
					t.Fatalf("VerifyGateway: %v", err)
				}
			case d == nil || d.Reason != tc.want:
				t.Fatalf("got %v, want reason %s", d, tc.want)
			}
		})
	}
}

func TestLoadCARefusals(t *testing.T) {
	a, b := newCAs(t), newCAs(t)
	good, err := SecretData(DeviceCA, a)
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := SecretData(GatewayCA, a)
	other, _ := SecretData(DeviceCA, b)
	for _, tc := range []struct {
		name string
		kind Kind
		data map[string][]byte
	}{
		{"gateway CA loaded as the device CA", DeviceCA, gw},
		{"key of another CA", DeviceCA, map[string][]byte{SecretCertKey: good[SecretCertKey], SecretKeyKey: other[SecretKeyKey], SecretRootKey: good[SecretRootKey]}},
		{"root of another authority", DeviceCA, map[string][]byte{SecretCertKey: good[SecretCertKey], SecretKeyKey: good[SecretKeyKey], SecretRootKey: other[SecretRootKey]}},
		{"no key", DeviceCA, map[string][]byte{SecretCertKey: good[SecretCertKey], SecretRootKey: good[SecretRootKey]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadCA(tc.kind, tc.data); !errors.Is(err, ErrBadCA) {
				t.Errorf("got %v, want ErrBadCA", err)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	ask := func(s int32) *int32 { return &s }
	for _, tc := range []struct {
		requested *int32
		want      time.Duration
	}{
		{nil, 24 * time.Hour},
		{ask(3600), time.Hour},
		{ask(60), MinLifetime},
		{ask(7 * 24 * 3600), 24 * time.Hour},
	} {
		if got := Lifetime(tc.requested, 24*time.Hour); got != tc.want {
			t.Errorf("Lifetime(%v): got %s, want %s", tc.requested, got, tc.want)
		}
	}
}

// BenchmarkSignDevice measures the controller's work per device
// certificate: check the request against the Device and sign it with an
// Ed25519 device CA. It reports certificates per second.
func BenchmarkSignDevice(b *testing.B) {
	ca := loaded(b, newCAs(b), DeviceCA)
	key := deviceKey(b, 1)
	dev := deviceFor(b, key, "dev-1")
	req := DeviceRequest{Requester: gateway, CSR: deviceCSR(b, key, "dev-1"), Usages: deviceUsages, Purpose: PurposeEnroll}
	b.ReportAllocs()
	for b.Loop() {
		if _, d, err := policy.SignDevice(ca, req, dev, open, now); d != nil || err != nil {
			b.Fatal(d, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}
