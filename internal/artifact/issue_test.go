package artifact

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/seal"
)

// sealedContent encrypts the fixture module once, as a client does.
func sealedContent(t testing.TB) (*Content, []byte) {
	t.Helper()
	key, blob, err := seal.EncryptContent(module, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, plain, err := OpenSealedContent(blob, key)
	if err != nil {
		t.Fatalf("OpenSealedContent: %v", err)
	}
	if !bytes.Equal(plain, module) {
		t.Fatal("OpenSealedContent returned another module")
	}
	return c, blob
}

func (f *fixture) issue(t testing.TB, m Manifest, c *Content, payload []byte) []byte {
	t.Helper()
	iss, err := f.signer.Issue(m, c, f.deviceKey.PublicKey())
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	data, err := iss.Assemble(payload)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestIssueRoundTrip issues plaintext and confidential content and verifies
// the assembled artifacts as a device does.
func TestIssueRoundTrip(t *testing.T) {
	f := newFixture(t)
	plain, err := NewContent(module)
	if err != nil {
		t.Fatal(err)
	}
	sealed, blob := sealedContent(t)
	for _, tc := range []struct {
		name       string
		content    *Content
		payload    []byte
		wantFormat uint64
	}{
		{"plain", plain, module, FormatVersion},
		{"sealed content", sealed, blob, FormatSealedContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := f.issue(t, manifest(), tc.content, tc.payload)
			a, err := f.verifier.Verify(data, store{})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(a.Module, module) {
				t.Errorf("got module of %d bytes, want the %d issued", len(a.Module), len(module))
			}
			if a.Manifest.Format != tc.wantFormat || a.Manifest.Confidential != tc.content.Confidential() {
				t.Errorf("got format %d confidential %t, want %d %t", a.Manifest.Format, a.Manifest.Confidential, tc.wantFormat, tc.content.Confidential())
			}
			if _, err := f.verifier.Reverify(data); err != nil {
				t.Errorf("Reverify: %v", err)
			}
		})
	}
	// A verifier given only the device's sealing key (no Opener) opens
	// format 2.
	v, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, SealingKey: f.deviceKey, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(f.issue(t, manifest(), sealed, blob), store{}); err != nil {
		t.Errorf("Verify with SealingKey only: %v", err)
	}
}

// TestSealedContentRefusals: every way of handing a device format 2 key
// material or ciphertext it was not issued is refused.
func TestSealedContentRefusals(t *testing.T) {
	f := newFixture(t)
	sealed, blob := sealedContent(t)
	_, otherBlob := sealedContent(t)
	good := decodeSigned(t, f.issue(t, manifest(), sealed, blob))
	forDev2, err := f.signer.Issue(manifest(func(m *Manifest) { m.DeviceID = "dev-2" }), sealed, x25519Key(t, 9).PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	plainContent, _ := NewContent(module)
	plain := decodeSigned(t, f.issue(t, manifest(), plainContent, module))
	noKeyVerifier, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := x25519Key(t, 11)
	wrongKeyVerifier, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, SealingKey: wrongKey, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		signed   *Signed
		verifier *Verifier
		want     error
	}{
		{"key material of another device's artifact", with(good, func(s *Signed) { s.KeyMaterial = forDev2.KeyMaterial }), nil, ErrBadSignature},
		{"key material flipped", with(good, func(s *Signed) { s.KeyMaterial[40] ^= 1 }), nil, ErrBadSignature},
		{"key material dropped", with(good, func(s *Signed) { s.KeyMaterial = nil }), nil, ErrMalformed},
		{"key material added to format 1", with(plain, func(s *Signed) { s.KeyMaterial = good.KeyMaterial }), nil, ErrMalformed},
		{"payload of another version", with(good, func(s *Signed) { s.Payload = otherBlob }), nil, ErrHashMismatch},
		{"plaintext payload", with(good, func(s *Signed) { s.Payload = module }), nil, ErrHashMismatch},
		{"device without a sealing key", good, noKeyVerifier, ErrDecrypt},
		{"device with another sealing key", good, wrongKeyVerifier, ErrDecrypt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.verifier
			if v == nil {
				v = f.verifier
			}
			a, err := v.Verify(tc.signed.mustMarshal(t), store{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if a != nil {
				t.Error("got an artifact with the refusal")
			}
		})
	}
	if _, err := f.signer.Issue(manifest(), sealed, nil); err == nil {
		t.Error("Issue of confidential content without a recipient: got nil error")
	}
}

// with returns a copy of s changed by fn.
func with(s *Signed, fn func(*Signed)) *Signed {
	c := &Signed{Manifest: bytes.Clone(s.Manifest), Signature: bytes.Clone(s.Signature), Payload: bytes.Clone(s.Payload), KeyMaterial: bytes.Clone(s.KeyMaterial)}
	fn(c)
	return c
}

// TestVectorSealedContent verifies a format 2 artifact written by an earlier
// build from the fixture's fixed keys, so the format cannot change by
// accident. Run with -update to rewrite it.
func TestVectorSealedContent(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join("testdata", "vector-sealed-content-v2.cbor")
	if *update {
		sealed, blob := sealedContent(t)
		if err := os.WriteFile(path, f.issue(t, manifest(), sealed, blob), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.verifier.Verify(data, store{})
	if err != nil {
		t.Fatalf("Verify vector: %v", err)
	}
	if !bytes.Equal(a.Module, module) || a.Manifest.Format != FormatSealedContent {
		t.Errorf("got module %x format %d, want the fixture module in format %d", a.Module, a.Manifest.Format, FormatSealedContent)
	}
}

// TestFormat1ConfidentialStillVerifies: a device keeps accepting format 1
// confidential artifacts (sealed with the platform sealing key), so those
// already installed load after an upgrade.
func TestFormat1ConfidentialStillVerifies(t *testing.T) {
	f := newFixture(t)
	data := f.sign(t, manifest(), true)
	a, err := f.verifier.Verify(data, store{})
	if err != nil {
		t.Fatalf("Verify format 1 confidential: %v", err)
	}
	if a.Manifest.Format != FormatVersion || !a.Manifest.Confidential {
		t.Errorf("got format %d confidential %t, want format 1 confidential", a.Manifest.Format, a.Manifest.Confidential)
	}
}

func TestIssueRefusesFormat2Plaintext(t *testing.T) {
	m := manifest(func(m *Manifest) { m.Format = FormatSealedContent; m.ModuleSize = 1; m.KeyID = KeyID{1} })
	if _, err := m.Marshal(); !errors.Is(err, ErrMalformed) {
		t.Errorf("marshal a plaintext format 2 manifest: got %v, want ErrMalformed", err)
	}
}
