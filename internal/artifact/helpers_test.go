package artifact

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/sandbox"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a platform (signing and sealing keys) and one device.
type fixture struct {
	signKey   ed25519.PrivateKey
	signer    *Signer
	platform  *ecdh.PrivateKey
	deviceKey *ecdh.PrivateKey
	sealer    *seal.Sealer
	opener    *seal.Opener
	verifier  *Verifier
	now       time.Time
}

func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func x25519Key(t testing.TB, b byte) *ecdh.PrivateKey {
	t.Helper()
	k, err := seal.ParsePrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{signKey: seedKey(1), now: t0}
	var err error
	if f.signer, err = NewSigner(f.signKey); err != nil {
		t.Fatal(err)
	}
	f.platform = x25519Key(t, 2)
	f.deviceKey = x25519Key(t, 3)
	if f.sealer, err = seal.NewSealer(f.platform, f.deviceKey.PublicKey(), seal.SealerOptions{}); err != nil {
		t.Fatal(err)
	}
	if f.opener, err = seal.NewOpener(f.deviceKey, []*ecdh.PublicKey{f.platform.PublicKey()}, seal.OpenerOptions{}); err != nil {
		t.Fatal(err)
	}
	f.verifier = f.newVerifier(t, f.signer.PublicKey())
	return f
}

func (f *fixture) newVerifier(t testing.TB, keys ...ed25519.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{
		DeviceID:    "dev-1",
		TrustedKeys: keys,
		Opener:      f.opener,
		Now:         func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// manifest returns a valid manifest for dev-1 issued at t0.
func manifest(opts ...func(*Manifest)) Manifest {
	m := Manifest{
		App:     "sensor",
		Version: "1.2.0",
		Limits: sandbox.Limits{
			MemoryLimit:      64 << 10,
			ExecutionTimeout: 250 * time.Millisecond,
			MaxStackSize:     8 << 10,
		},
		DeviceID: "dev-1",
		Sequence: 7,
		IssuedAt: t0,
		Expires:  t0.Add(24 * time.Hour),
	}
	for _, o := range opts {
		o(&m)
	}
	return m
}

// module is a small, valid-looking WebAssembly module.
var module = append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{0x42}, 200)...)

// sign signs m and module, sealed when confidential.
func (f *fixture) sign(t testing.TB, m Manifest, confidential bool) []byte {
	t.Helper()
	var opts SignOptions
	if confidential {
		opts.Sealer = f.sealer
	}
	data, _, err := f.signer.Sign(m, module, opts)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return data
}

// signRaw signs arbitrary manifest bytes with aad over payload, bypassing
// Sign's checks, as a signer with a bug (or an insider) could.
func signRaw(t testing.TB, key ed25519.PrivateKey, manifest, aad, payload []byte) []byte {
	t.Helper()
	s := &Signed{Manifest: manifest, Signature: ed25519.Sign(key, SigningMessage(manifest, aad)), Payload: payload}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeSigned decodes a copy of an artifact the tests produced.
func decodeSigned(t testing.TB, data []byte) *Signed {
	t.Helper()
	s, err := Unmarshal(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Unmarshal aliases data; the tests mutate what they decode.
	return &Signed{Manifest: bytes.Clone(s.Manifest), Signature: bytes.Clone(s.Signature), Payload: bytes.Clone(s.Payload), KeyMaterial: bytes.Clone(s.KeyMaterial)}
}

func (s *Signed) mustMarshal(t testing.TB) []byte {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// store is a SequenceStore with fixed marks.
type store map[string]uint64

func (s store) LastSequence(app string) (uint64, error) { return s[app], nil }

type ed25519PublicKey = ed25519.PublicKey

func (id KeyID) bytes() []byte { return id[:] }

func sumOf(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
