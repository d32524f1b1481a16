package artifact

import (
	"bytes"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/seal"
)

// TestVerifyRefusals gives every refusal of Verify its own case.
func TestVerifyRefusals(t *testing.T) {
	f := newFixture(t)
	plain := f.sign(t, manifest(), false)
	conf := f.sign(t, manifest(), true)

	otherSigner, err := NewSigner(seedKey(9))
	if err != nil {
		t.Fatal(err)
	}
	byStranger, _, err := otherSigner.Sign(manifest(), module, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}

	badSig := decodeSigned(t, plain)
	badSig.Signature[10] ^= 0x04

	swapped := decodeSigned(t, plain)
	swapped.Payload = bytes.Clone(swapped.Payload)
	swapped.Payload[len(swapped.Payload)-1] ^= 1

	shorter := decodeSigned(t, plain)
	shorter.Payload = shorter.Payload[:len(shorter.Payload)-1]

	sealedSwap := decodeSigned(t, conf)
	sealedSwap.Payload = decodeSigned(t, f.sign(t, manifest(), true)).Payload // same size, other nonce

	// A signed manifest whose module hash does not match what was sealed:
	// only the plaintext check after decryption can catch it.
	lying := manifest()
	lying.Confidential = true
	lying.KeyID = f.signer.KeyID()
	lying.ModuleSize = uint64(len(module))
	lying.ModuleHash = sha256.Sum256([]byte("something else"))
	lyingAAD, err := lying.AAD()
	if err != nil {
		t.Fatal(err)
	}
	lyingBlob, err := f.sealer.Seal(seal.PurposeModule, module, lyingAAD)
	if err != nil {
		t.Fatal(err)
	}
	lying.CiphertextHash = sha256.Sum256(lyingBlob)
	lyingBytes, err := lying.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	lyingArtifact := signRaw(t, f.signKey, lyingBytes, lyingAAD, lyingBlob)

	// A confidential artifact for this device, opened by a device with
	// another sealing key (re-enrolled, or the sealer used the wrong key).
	otherOpener, err := seal.NewOpener(x25519Key(t, 11), []*ecdh.PublicKey{f.platform.PublicKey()}, seal.OpenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vOtherKey, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, Opener: otherOpener, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	vNoOpener, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	vSmall, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, Now: func() time.Time { return t0 }, MaxSize: 100})
	if err != nil {
		t.Fatal(err)
	}

	bigManifest := signRaw(t, f.signKey, make([]byte, MaxManifestSize+1), nil, module)
	seqZero := func() []byte {
		m := manifest()
		w := m.wire()
		w.KeyID = f.signer.KeyID().bytes()
		w.ModuleHash = sumOf(module)
		w.ModuleSize = uint64(len(module))
		w.Sequence = 0
		b, err := encMode.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		return signRaw(t, f.signKey, b, nil, module)
	}()

	for _, tc := range []struct {
		name     string
		v        *Verifier
		data     []byte
		seqs     SequenceStore
		want     error
		manifest bool // whether the error carries the manifest
	}{
		{"oversized input", vSmall, plain, store{}, ErrTooLarge, false},
		{"oversized manifest", f.verifier, bigManifest, store{}, ErrTooLarge, false},
		{"garbage", f.verifier, []byte("not cbor at all"), store{}, ErrMalformed, false},
		{"empty", f.verifier, nil, store{}, ErrMalformed, false},
		{"sequence zero", f.verifier, seqZero, store{}, ErrMalformed, false},
		{"unknown signer", f.verifier, byStranger, store{}, ErrUnknownSigner, false},
		{"bad signature", f.verifier, badSig.mustMarshal(t), store{}, ErrBadSignature, false},
		{"different target device", f.verifier, f.sign(t, manifest(func(m *Manifest) { m.DeviceID = "dev-2" }), false), store{}, ErrWrongDevice, true},
		{"replayed sequence", f.verifier, plain, store{"sensor": 7}, ErrReplay, true},
		{"older sequence", f.verifier, plain, store{"sensor": 8}, ErrDowngrade, true},
		{"expired", f.verifier, f.sign(t, manifest(func(m *Manifest) { m.IssuedAt, m.Expires = t0.Add(-2*time.Hour), t0.Add(-time.Second) }), false), store{}, ErrExpired, true},
		{"not yet valid", f.verifier, f.sign(t, manifest(func(m *Manifest) { m.IssuedAt, m.Expires = t0.Add(time.Hour), t0.Add(2*time.Hour) }), false), store{}, ErrNotYetValid, true},
		{"module bytes differ", f.verifier, swapped.mustMarshal(t), store{}, ErrHashMismatch, true},
		{"module size differs", f.verifier, shorter.mustMarshal(t), store{}, ErrHashMismatch, true},
		{"sealed module swapped", f.verifier, sealedSwap.mustMarshal(t), store{}, ErrHashMismatch, true},
		{"decrypted module differs", f.verifier, lyingArtifact, store{}, ErrHashMismatch, true},
		{"decryption fails", vOtherKey, conf, store{}, ErrDecrypt, true},
		{"no sealing key", vNoOpener, conf, store{}, ErrDecrypt, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.v.Verify(tc.data, tc.seqs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
			if a != nil {
				t.Errorf("got an artifact with the error")
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T, want *Error", err)
			}
			if got := e.Manifest != nil; got != tc.manifest {
				t.Errorf("got manifest in error %t, want %t", got, tc.manifest)
			}
			for _, other := range allSentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

var allSentinels = []error{ErrTooLarge, ErrMalformed, ErrUnknownSigner, ErrBadSignature, ErrWrongDevice,
	ErrReplay, ErrDowngrade, ErrExpired, ErrNotYetValid, ErrHashMismatch, ErrDecrypt}

// TestAADBinding: a sealed module re-signed under a manifest that differs in
// any AAD field does not open, even with a valid signature over the exact
// ciphertext. Only the signing key could build such an artifact; the check
// shows that the ciphertext itself is bound to its manifest.
func TestAADBinding(t *testing.T) {
	f := newFixture(t)
	orig := decodeSigned(t, f.sign(t, manifest(), true))
	for _, tc := range []struct {
		name   string
		change func(*Manifest)
	}{
		{"device id", func(m *Manifest) { m.DeviceID = "dev-1x" }},
		{"app", func(m *Manifest) { m.App = "sensor2" }},
		{"version", func(m *Manifest) { m.Version = "1.2.1" }},
		{"sequence", func(m *Manifest) { m.Sequence = 8 }},
		{"memory limit (manifest hash)", func(m *Manifest) { m.Limits.MemoryLimit++ }},
		{"expiry (manifest hash)", func(m *Manifest) { m.Expires = m.Expires.Add(time.Hour) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest(orig.Manifest)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(m)
			aad, err := m.AAD()
			if err != nil {
				t.Fatal(err)
			}
			mb, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			data := signRaw(t, f.signKey, mb, aad, orig.Payload)
			v := f.verifier
			if m.DeviceID != "dev-1" {
				v, err = NewVerifier(VerifierConfig{DeviceID: m.DeviceID, TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, Opener: f.opener, Now: func() time.Time { return t0 }})
				if err != nil {
					t.Fatal(err)
				}
			}
			if _, err := v.Verify(data, store{}); !errors.Is(err, ErrDecrypt) {
				t.Errorf("got %v, want ErrDecrypt", err)
			}
		})
	}
}

// TestTamper flips one bit in every byte of each region of a confidential
// artifact (manifest, signature, and the sealed module's sender id,
// ephemeral key, nonce, ciphertext and tag); each must be refused, by the
// check responsible for that region.
func TestTamper(t *testing.T) {
	f := newFixture(t)
	orig := decodeSigned(t, f.sign(t, manifest(), true))
	n := len(orig.Payload)
	type region struct {
		name       string
		field      func(*Signed) []byte
		start, end int
		want       []error
	}
	regions := []region{
		{"manifest", func(s *Signed) []byte { return s.Manifest }, 0, len(orig.Manifest), []error{ErrMalformed, ErrBadSignature, ErrUnknownSigner}},
		{"signature", func(s *Signed) []byte { return s.Signature }, 0, SignatureSize, []error{ErrBadSignature}},
		{"sealed version and purpose", func(s *Signed) []byte { return s.Payload }, 0, 2, []error{ErrHashMismatch}},
		{"sealed sender key id", func(s *Signed) []byte { return s.Payload }, 2, 10, []error{ErrHashMismatch}},
		{"sealed ephemeral key", func(s *Signed) []byte { return s.Payload }, 10, 42, []error{ErrHashMismatch}},
		{"sealed nonce", func(s *Signed) []byte { return s.Payload }, 42, 54, []error{ErrHashMismatch}},
		{"sealed ciphertext", func(s *Signed) []byte { return s.Payload }, 54, n - seal.TagSize, []error{ErrHashMismatch}},
		{"sealed tag", func(s *Signed) []byte { return s.Payload }, n - seal.TagSize, n, []error{ErrHashMismatch}},
	}
	for _, r := range regions {
		t.Run(r.name, func(t *testing.T) {
			for i := r.start; i < r.end; i++ {
				c := &Signed{Manifest: bytes.Clone(orig.Manifest), Signature: bytes.Clone(orig.Signature), Payload: bytes.Clone(orig.Payload)}
				r.field(c)[i] ^= 1 << (i % 8)
				a, err := f.verifier.Verify(c.mustMarshal(t), store{})
				if err == nil || a != nil {
					t.Fatalf("byte %d: got accepted, want refusal", i)
				}
				if !isOneOf(err, r.want) {
					t.Fatalf("byte %d: got %v, want one of %v", i, err, r.want)
				}
			}
		})
	}
	if _, err := f.verifier.Verify(orig.mustMarshal(t), store{}); err != nil {
		t.Fatalf("untampered: got %v, want nil", err)
	}
}

func isOneOf(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestKeyRotation: while both keys are trusted, artifacts by either verify;
// once the old key is dropped its artifacts — new or installed — are refused.
func TestKeyRotation(t *testing.T) {
	f := newFixture(t)
	newSigner, err := NewSigner(seedKey(5))
	if err != nil {
		t.Fatal(err)
	}
	byOld := f.sign(t, manifest(), false)
	byNew, _, err := newSigner.Sign(manifest(), module, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	both := f.newVerifier(t, f.signer.PublicKey(), newSigner.PublicKey())
	newOnly := f.newVerifier(t, newSigner.PublicKey())
	for _, tc := range []struct {
		name string
		v    *Verifier
		data []byte
		want error
	}{
		{"old key, both trusted", both, byOld, nil},
		{"new key, both trusted", both, byNew, nil},
		{"new key, new trusted", newOnly, byNew, nil},
		{"old key, old dropped", newOnly, byOld, ErrUnknownSigner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.v.Verify(tc.data, store{}); !errors.Is(err, tc.want) {
				t.Errorf("Verify: got %v, want %v", err, tc.want)
			}
			if _, err := tc.v.Reverify(tc.data); !errors.Is(err, tc.want) {
				t.Errorf("Reverify: got %v, want %v", err, tc.want)
			}
		})
	}
	if f.signer.KeyID() == newSigner.KeyID() {
		t.Errorf("got equal key ids for different keys")
	}
}

// TestClockSkew checks the validity window's edges.
func TestClockSkew(t *testing.T) {
	f := newFixture(t)
	issued := func(d time.Duration) Manifest {
		return manifest(func(m *Manifest) { m.IssuedAt, m.Expires = t0.Add(d), t0.Add(d+time.Hour) })
	}
	expires := func(d time.Duration) Manifest {
		return manifest(func(m *Manifest) { m.IssuedAt, m.Expires = t0.Add(-time.Hour), t0.Add(d) })
	}
	for _, tc := range []struct {
		name string
		skew time.Duration
		m    Manifest
		want error
	}{
		{"issued in the past", 0, issued(-time.Minute), nil},
		{"issued within default skew", 0, issued(DefaultClockSkew - time.Second), nil},
		{"issued at default skew", 0, issued(DefaultClockSkew), nil},
		{"issued past default skew", 0, issued(DefaultClockSkew + time.Second), ErrNotYetValid},
		{"issued within custom skew", time.Hour, issued(59 * time.Minute), nil},
		{"issued past custom skew", time.Hour, issued(61 * time.Minute), ErrNotYetValid},
		{"no skew allowed, issued now", -1, issued(0), nil},
		{"no skew allowed, issued 1s ahead", -1, issued(time.Second), ErrNotYetValid},
		{"expires in 1s", 0, expires(time.Second), nil},
		{"expires now", 0, expires(0), ErrExpired},
		{"expired 1s ago, skew does not extend expiry", time.Hour, expires(-time.Second), ErrExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{f.signer.PublicKey()}, Now: func() time.Time { return t0 }, ClockSkew: tc.skew})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(f.sign(t, tc.m, false), store{}); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSequenceMarks: the marks are per application; equal is a replay,
// lower a downgrade, and Verify requires a store.
func TestSequenceMarks(t *testing.T) {
	f := newFixture(t)
	marks := store{"sensor": 7, "other": 100}
	for _, tc := range []struct {
		seq  uint64
		want error
	}{{3, ErrDowngrade}, {7, ErrReplay}, {8, nil}} {
		if _, err := f.verifier.Verify(f.sign(t, manifest(func(m *Manifest) { m.Sequence = tc.seq }), false), marks); !errors.Is(err, tc.want) {
			t.Errorf("sequence %d: got %v, want %v", tc.seq, err, tc.want)
		}
	}
	if _, err := f.verifier.Verify(f.sign(t, manifest(func(m *Manifest) { m.App = "fresh"; m.Sequence = 1 }), false), marks); err != nil {
		t.Errorf("first artifact of another application: %v", err)
	}
	if _, err := f.verifier.Verify(nil, nil); err == nil {
		t.Errorf("Verify with a nil SequenceStore: got nil error")
	}
}

func TestPeerMessage(t *testing.T) {
	crypto := []error{
		&Error{Err: ErrBadSignature, Detail: "signature by key 0102 does not verify"},
		&Error{Err: ErrUnknownSigner, Detail: "signing key 0304 is not trusted"},
		&Error{Err: ErrHashMismatch, Detail: "sealed module SHA-256 differs"},
	}
	want := PeerMessage(crypto[0])
	for _, err := range crypto {
		if got := PeerMessage(err); got != want {
			t.Errorf("PeerMessage(%v): got %q, want %q like the other authentication failures", err, got, want)
		}
		if bytes.Contains([]byte(PeerMessage(err)), []byte("key")) {
			t.Errorf("PeerMessage(%v) = %q names the failing check", err, PeerMessage(err))
		}
	}
	seen := map[string]error{}
	for _, s := range []error{ErrTooLarge, ErrMalformed, ErrWrongDevice, ErrExpired, ErrNotYetValid, ErrDecrypt} {
		msg := PeerMessage(&Error{Err: s})
		if prev, dup := seen[msg]; dup {
			t.Errorf("%v and %v share peer message %q", prev, s, msg)
		}
		seen[msg] = s
	}
}

func TestVerifyOK(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name         string
		confidential bool
		seqs         SequenceStore
	}{
		{"plain, first install", false, store{}},
		{"plain, upgrade", false, store{"sensor": 6}},
		{"plain, other app's mark higher", false, store{"other": 100}},
		{"confidential", true, store{"sensor": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := f.sign(t, manifest(), tc.confidential)
			a, err := f.verifier.Verify(data, tc.seqs)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(a.Module, module) {
				t.Errorf("got a different module")
			}
			r, err := f.verifier.Reverify(data)
			if err != nil {
				t.Fatalf("Reverify: %v", err)
			}
			if r.Manifest != a.Manifest {
				t.Errorf("Reverify manifest: got %+v, want %+v", r.Manifest, a.Manifest)
			}
		})
	}
}

// TestReverifyIgnoresTimeAndSequence: an installed artifact stays valid after
// expiry and after its mark has been recorded.
func TestReverifyIgnoresTimeAndSequence(t *testing.T) {
	f := newFixture(t)
	data := f.sign(t, manifest(), true)
	f.now = t0.Add(365 * 24 * time.Hour)
	if _, err := f.verifier.Verify(data, store{}); !errors.Is(err, ErrExpired) {
		t.Fatalf("Verify a year later: got %v, want ErrExpired", err)
	}
	if _, err := f.verifier.Reverify(data); err != nil {
		t.Errorf("Reverify a year later: got %v, want nil", err)
	}
}

func TestNextSequence(t *testing.T) {
	ms := uint64(t0.UnixMilli())
	for _, tc := range []struct {
		name string
		last uint64
		now  time.Time
		want uint64
	}{
		{"first, from the clock", 0, t0, ms},
		{"clock ahead of last", 5, t0, ms},
		{"same millisecond", ms, t0, ms + 1},
		{"clock went back", ms + 100, t0, ms + 101},
		{"clock before the epoch", 3, time.Unix(-10, 0), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NextSequence(tc.last, tc.now); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
