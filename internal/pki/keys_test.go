package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/wasmbed/wasmbed/internal/edkey"
)

func TestPublicKeyEncoding(t *testing.T) {
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		t.Run(string(alg), func(t *testing.T) {
			pub := mustKey(t, alg).Public()
			s, err := EncodePublicKey(pub)
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(s, "=+/") {
				t.Errorf("got %q, want unpadded base64url", s)
			}
			got, err := ParsePublicKey(s)
			if err != nil {
				t.Fatal(err)
			}
			if !keysEqual(pub, got) {
				t.Error("round trip changed the key")
			}
			fp1, _ := Fingerprint(pub)
			fp2, _ := Fingerprint(got)
			if fp1 != fp2 || len(fp1) != 64 {
				t.Errorf("got fingerprints %q and %q, want equal 64-hex", fp1, fp2)
			}
		})
	}
}

func TestParsePublicKeyRefusals(t *testing.T) {
	pub := mustKey(t, Ed25519).Public()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"padded", base64.URLEncoding.EncodeToString(der), nil},
		{"std alphabet", base64.StdEncoding.EncodeToString(append(der, 0xfb, 0xff)), nil},
		{"trailing bytes", base64.RawURLEncoding.EncodeToString(append(der, 0)), nil},
		{"too long", strings.Repeat("A", MaxEncodedKeyLen+1), ErrTooLarge},
		{"rsa 2048", base64.RawURLEncoding.EncodeToString(rsaDER), ErrUnsupportedKey},
		{"p384", base64.RawURLEncoding.EncodeToString(p384DER), ErrUnsupportedKey},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicKey(tt.in)
			if err == nil {
				t.Fatal("got nil error, want refusal")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckPublicKey(t *testing.T) {
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name    string
		pub     any
		wantAlg string // "" = accepted
		weak    bool
	}{
		{"ed25519", mustKey(t, Ed25519).Public(), "", false},
		{"p256", mustKey(t, ECDSAP256).Public(), "", false},
		{"rsa 1024", &rsa1024.PublicKey, "RSA-1024", true},
		{"rsa 2048", &rsa2048.PublicKey, "RSA-2048", false},
		{"p384", &p384.PublicKey, "ECDSA P-384", false},
		{"short ed25519", make([]byte, 31), "[]uint8", false},
		// The identity point: Go's verifier accepts forged signatures under it.
		{"small-order ed25519", ed25519.PublicKey(append([]byte{1}, make([]byte, 31)...)), "Ed25519", true},
		{"off-curve ed25519", ed25519.PublicKey(append([]byte{2}, make([]byte, 31)...)), "Ed25519", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckPublicKey(tt.pub)
			if tt.wantAlg == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			var uke *UnsupportedKeyError
			if !errors.As(err, &uke) || !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("got %v, want *UnsupportedKeyError", err)
			}
			if uke.Algorithm != tt.wantAlg {
				t.Errorf("got algorithm %q, want %q", uke.Algorithm, tt.wantAlg)
			}
			if got := strings.Contains(uke.Reason, "weak"); got != tt.weak {
				t.Errorf("got reason %q, want weak=%v", uke.Reason, tt.weak)
			}
		})
	}
}

func TestParseKeyAlgorithm(t *testing.T) {
	for in, want := range map[string]KeyAlgorithm{"": Ed25519, "ed25519": Ed25519, "ECDSA-P256": ECDSAP256, "p256": ECDSAP256} {
		if got, err := ParseKeyAlgorithm(in); err != nil || got != want {
			t.Errorf("ParseKeyAlgorithm(%q): got (%q, %v), want %q", in, got, err, want)
		}
	}
	if _, err := ParseKeyAlgorithm("rsa"); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("ParseKeyAlgorithm(rsa): got %v, want ErrUnsupportedKey", err)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	for _, alg := range []KeyAlgorithm{Ed25519, ECDSAP256} {
		k, err := GenerateKey(alg)
		if err != nil {
			f.Fatal(err)
		}
		s, _ := EncodePublicKey(k.Public())
		f.Add(s)
	}
	f.Add("")
	f.Add("MCowBQYDK2VwAyEA")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		// Canonical: an accepted encoding re-encodes to itself.
		again, err := EncodePublicKey(pub)
		if err != nil {
			t.Fatalf("re-encode accepted key: %v", err)
		}
		if again != s {
			t.Fatalf("got re-encoding %q, want %q", again, s)
		}
	})
}

// TestWeakEd25519KeysRefusedEverywhere checks that a small-order key is
// refused on every path a key enters the package: Device spec text, PEM
// files, CSRs and issuance.
func TestWeakEd25519KeysRefusedEverywhere(t *testing.T) {
	weak := ed25519.PublicKey(append([]byte{1}, make([]byte, 31)...)) // the identity
	der, err := x509.MarshalPKIXPublicKey(weak)
	if err != nil {
		t.Fatal(err)
	}
	text := base64.RawURLEncoding.EncodeToString(der)
	if _, err := ParsePublicKey(text); !errors.Is(err, edkey.ErrSmallOrder) || !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("ParsePublicKey: got %v, want ErrUnsupportedKey and edkey.ErrSmallOrder", err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if _, err := ParsePublicKeyFile(pemKey); !errors.Is(err, edkey.ErrSmallOrder) {
		t.Errorf("ParsePublicKeyFile: got %v, want edkey.ErrSmallOrder", err)
	}
	if _, err := EncodePublicKey(weak); !errors.Is(err, edkey.ErrSmallOrder) {
		t.Errorf("EncodePublicKey: got %v, want edkey.ErrSmallOrder", err)
	}
	a := newTestAuthority(t, newTestClock(), Ed25519)
	if _, err := a.IssueDevice(weak, DeviceOptions{DeviceID: "d1"}); !errors.Is(err, edkey.ErrSmallOrder) {
		t.Errorf("IssueDevice: got %v, want edkey.ErrSmallOrder", err)
	}
}
