package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSaveLoadCA(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, ECDSAP256)
	dir := filepath.Join(t.TempDir(), "ca")
	if err := SaveCA(dir, ca, false); err != nil {
		t.Fatal(err)
	}
	wantModes := map[string]os.FileMode{
		RootCertFile:      0o644,
		RootKeyFile:       0o600,
		GatewayCACertFile: 0o644,
		GatewayCAKeyFile:  0o600,
		DeviceCACertFile:  0o644,
		DeviceCAKeyFile:   0o600,
	}
	for name, want := range wantModes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: got mode %o, want %o", name, got, want)
		}
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != DirMode {
		t.Errorf("dir: got %v (%v), want mode %o", fi.Mode().Perm(), err, DirMode)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Root.Cert.Equal(ca.Root.Cert) || !loaded.GatewayCA.Cert.Equal(ca.GatewayCA.Cert) || !loaded.DeviceCA.Cert.Equal(ca.DeviceCA.Cert) {
		t.Error("loaded certificates differ")
	}
	if !keysEqual(loaded.DeviceCA.Key.Public(), ca.DeviceCA.Key.Public()) || !keysEqual(loaded.GatewayCA.Key.Public(), ca.GatewayCA.Key.Public()) {
		t.Error("loaded intermediate keys differ")
	}

	// Refuse to overwrite, and leave the files untouched.
	before, _ := os.ReadFile(filepath.Join(dir, RootKeyFile))
	other := newTestAuthority(t, clock, Ed25519)
	if err := SaveCA(dir, other, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second save: got %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, RootKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("refused save modified root.key")
	}
	if err := SaveCA(dir, other, true); err != nil {
		t.Fatalf("forced save: %v", err)
	}
	fi, _ := os.Stat(filepath.Join(dir, DeviceCAKeyFile))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("forced save: got key mode %o, want 600", fi.Mode().Perm())
	}
	loaded, err = LoadCA(dir)
	if err != nil || !loaded.Root.Cert.Equal(other.Root.Cert) {
		t.Fatalf("after force: got (%v), want the new root", err)
	}

	// Offline root: no root.key, still loads, can issue.
	if err := os.Remove(filepath.Join(dir, RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	loaded, err = LoadCA(dir)
	if err != nil || loaded.Root.Key != nil {
		t.Fatalf("offline root: got (%v, key %v), want loaded without root key", err, loaded.Root.Key)
	}
	if _, err := loaded.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d"}); err != nil {
		t.Fatalf("issue with offline root: %v", err)
	}

	// A gateway's directory: certificates only. It verifies, it cannot issue.
	for _, k := range []string{GatewayCAKeyFile, DeviceCAKeyFile} {
		if err := os.Remove(filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	loaded, err = LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.IssueDevice(mustKey(t, Ed25519).Public(), DeviceOptions{DeviceID: "d"}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("issue without the device CA key: got %v, want ErrNoKey", err)
	}
	if _, err := loaded.DeviceVerifier(nil); err != nil {
		t.Fatalf("verifier without keys: %v", err)
	}
}

// TestLoadCAOldLayout: a directory of the single-intermediate layout is
// refused with a message that says what to do.
func TestLoadCAOldLayout(t *testing.T) {
	clock := newTestClock()
	a := newTestAuthority(t, clock, Ed25519)
	dir := t.TempDir()
	for name, c := range map[string]*x509.Certificate{RootCertFile: a.Root.Cert, "intermediate.crt": a.DeviceCA.Cert} {
		if err := WriteFile(filepath.Join(dir, name), EncodeCertificatesPEM(c), CertFileMode, false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "separate gateway and device CAs") {
		t.Fatalf("got %v, want the old layout explained", err)
	}
}

func TestLoadCAMismatch(t *testing.T) {
	clock := newTestClock()
	a := newTestAuthority(t, clock, Ed25519)
	b := newTestAuthority(t, clock, Ed25519)
	dir := t.TempDir()
	if err := SaveCA(dir, a, false); err != nil {
		t.Fatal(err)
	}
	// An intermediate from another root.
	if err := WriteFile(filepath.Join(dir, DeviceCACertFile), EncodeCertificatesPEM(b.DeviceCA.Cert), CertFileMode, true); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil {
		t.Fatal("got nil error, want mismatch refused")
	}
}

func TestParseBounded(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	good := EncodeCertificatesPEM(ca.Root.Cert, ca.DeviceCA.Cert)
	keyPEM, err := EncodePrivateKeyPEM(ca.Root.Key)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("A"), MaxInputSize+1)
	tests := []struct {
		name  string
		parse func([]byte) error
		in    []byte
		want  error
	}{
		{"certs ok", parseCerts, good, nil},
		{"certs too large", parseCerts, big, ErrTooLarge},
		{"certs empty", parseCerts, nil, ErrMalformedPEM},
		{"certs garbage", parseCerts, []byte("hello"), ErrMalformedPEM},
		{"certs trailing garbage", parseCerts, append(bytes.Clone(good), "junk"...), ErrMalformedPEM},
		{"certs wrong type", parseCerts, keyPEM, ErrMalformedPEM},
		{"certs bad DER", parseCerts, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ErrMalformedPEM},
		{"key ok", parseKey, keyPEM, nil},
		{"key too large", parseKey, big, ErrTooLarge},
		{"key is cert", parseKey, good, ErrMalformedPEM},
		{"csr too large", parseCSR, big, ErrTooLarge},
		{"csr garbage", parseCSR, []byte{0x30, 0x03, 0x02, 0x01, 0x00}, ErrMalformedPEM},
		{"pub too large", parsePub, big, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func parseCerts(b []byte) error { _, err := ParseCertificatesPEM(b); return err }
func parseKey(b []byte) error   { _, err := ParsePrivateKeyPEM(b); return err }
func parseCSR(b []byte) error   { _, err := ParseCSR(b); return err }
func parsePub(b []byte) error   { _, err := ParsePublicKeyFile(b); return err }

func TestReadFileTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.pem")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x"), MaxInputSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCertificates(path); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestSaveCertificate(t *testing.T) {
	clock := newTestClock()
	ca := newTestAuthority(t, clock, Ed25519)
	gw, err := ca.IssueGateway(GatewayOptions{Name: "gw", DNSNames: []string{"gw.test"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	if err := SaveCertificate(gw, crt, key, false); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("got key mode %o, want 600", fi.Mode().Perm())
	}
	tc, err := LoadTLSCertificate(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(tc.Certificate) != 2 {
		t.Errorf("got chain of %d, want leaf and intermediate", len(tc.Certificate))
	}
	if err := SaveCertificate(gw, crt, key, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second save: got %v, want ErrExists", err)
	}
	// The public key PEM round-trips through ParsePublicKeyFile too.
	pubPEM, err := EncodePublicKeyPEM(gw.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKeyFile(pubPEM)
	if err != nil || !keysEqual(pub, gw.Key.Public()) {
		t.Fatalf("public key PEM: got (%v), want the key", err)
	}
	// A mismatched key is refused.
	other := mustKey(t, Ed25519)
	otherPEM, _ := EncodePrivateKeyPEM(other)
	if err := WriteFile(key, otherPEM, KeyFileMode, true); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTLSCertificate(crt, key); err == nil {
		t.Fatal("mismatched key: got nil error")
	}
}

func FuzzParseCertificatesPEM(f *testing.F) {
	clock := newTestClock()
	ca := newTestAuthority(f, clock, Ed25519)
	f.Add(EncodeCertificatesPEM(ca.Root.Cert, ca.DeviceCA.Cert))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificatesPEM(data)
		if err != nil {
			return
		}
		if len(certs) == 0 {
			t.Fatal("got no certificates and no error")
		}
		// Accepted input re-encodes to certificates that parse to the same DER.
		again, err := ParseCertificatesPEM(EncodeCertificatesPEM(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-parse: got (%d, %v), want %d", len(again), err, len(certs))
		}
		for i := range certs {
			if !certs[i].Equal(again[i]) {
				t.Fatalf("certificate %d changed on re-encoding", i)
			}
		}
	})
}

func TestParsePublicKeyFileText(t *testing.T) {
	pub := mustKey(t, ECDSAP256).Public()
	enc, err := EncodePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePublicKeyFile([]byte("  " + enc + "\n"))
	if err != nil || !keysEqual(got, pub) {
		t.Fatalf("got (%v), want the key back from its spec.publicKey text", err)
	}
}
