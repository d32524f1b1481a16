package artifact

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/edkey"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// DefaultClockSkew is how far ahead of the device clock an artifact's issue
// time may be before it is refused as not yet valid.
const DefaultClockSkew = 5 * time.Minute

// MaxTrustedKeys bounds the number of signing keys a device trusts at once
// (the current key and those being rotated in or out).
const MaxTrustedKeys = 4

// SequenceStore gives the replay-protection high-water marks a Verifier checks
// against: per application, the highest sequence the device accepted. The
// device's security manager keeps each mark in a flash value of its own and
// raises it in the same flash transaction as the install
// (internal/firmware/security).
type SequenceStore interface {
	// LastSequence returns the highest sequence accepted for app on this
	// device, or 0 if none was ever accepted.
	LastSequence(app string) (uint64, error)
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// DeviceID is the device's own id; artifacts for others are refused.
	DeviceID string
	// TrustedKeys are the pinned platform signing keys (at most
	// MaxTrustedKeys). Keys internal/edkey refuses (small order, non
	// canonical, off the curve) make NewVerifier fail.
	TrustedKeys []ed25519.PublicKey
	// Opener opens confidential format 1 modules, and, when SealingKey is
	// nil, unwraps the content keys of format 2 ones. Without either,
	// confidential artifacts are refused with ErrDecrypt.
	Opener *seal.Opener
	// SealingKey is the device's X25519 sealing key, which unwraps the
	// content keys of format 2 artifacts.
	SealingKey *ecdh.PrivateKey
	// Now is the device clock; nil means time.Now.
	Now func() time.Time
	// ClockSkew is the allowance for an issue time ahead of Now. Zero
	// means DefaultClockSkew; negative means none.
	ClockSkew time.Duration
	// MaxSize bounds an encoded artifact; zero means DefaultMaxSize.
	MaxSize int
}

// Verifier checks deploy artifacts on a device. It does not change any state:
// after installing a verified artifact the caller raises the application's
// mark in its SequenceStore in the same flash transaction as the install.
// It is safe for concurrent use.
type Verifier struct {
	deviceID string
	sealing  *ecdh.PrivateKey
	keys     map[KeyID]ed25519.PublicKey
	opener   *seal.Opener
	now      func() time.Time
	skew     time.Duration
	maxSize  int
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if err := checkName("device id", cfg.DeviceID, MaxNameLen); err != nil {
		return nil, fmt.Errorf("artifact: verifier: %w", err)
	}
	if len(cfg.TrustedKeys) == 0 {
		return nil, fmt.Errorf("artifact: verifier: no trusted signing key")
	}
	if len(cfg.TrustedKeys) > MaxTrustedKeys {
		return nil, fmt.Errorf("artifact: verifier: %d trusted keys, limit %d", len(cfg.TrustedKeys), MaxTrustedKeys)
	}
	v := &Verifier{
		deviceID: cfg.DeviceID,
		keys:     make(map[KeyID]ed25519.PublicKey, len(cfg.TrustedKeys)),
		opener:   cfg.Opener,
		sealing:  cfg.SealingKey,
		now:      cfg.Now,
		skew:     cfg.ClockSkew,
		maxSize:  cfg.MaxSize,
	}
	for i, k := range cfg.TrustedKeys {
		// A small-order key would let anyone forge artifacts: Go's
		// verifier accepts signatures under it made without a private key.
		if err := edkey.Check(k); err != nil {
			return nil, fmt.Errorf("artifact: verifier: trusted key %d: %w", i, err)
		}
		v.keys[KeyIDOf(k)] = append(ed25519.PublicKey(nil), k...)
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case v.skew == 0:
		v.skew = DefaultClockSkew
	case v.skew < 0:
		v.skew = 0
	}
	if v.maxSize <= 0 {
		v.maxSize = DefaultMaxSize
	}
	return v, nil
}

// Artifact is a verified deploy artifact.
type Artifact struct {
	// Manifest is the verified manifest.
	Manifest Manifest
	// Module is the plaintext WebAssembly module.
	Module []byte
}

// Verify checks an encoded artifact against the pinned keys, this device's
// id, the clock and the replay state, and returns the verified manifest and
// plaintext module. Checks run in this order, each refusal an *Error matching
// one sentinel:
//
//  1. size (ErrTooLarge) and encoding (ErrMalformed), before any crypto;
//  2. signer (ErrUnknownSigner) and signature (ErrBadSignature);
//  3. target device (ErrWrongDevice);
//  4. validity window (ErrNotYetValid, ErrExpired);
//  5. sequence against seqs (ErrReplay, ErrDowngrade);
//  6. payload against the signed hashes (ErrHashMismatch), then decryption
//     of a confidential module (ErrDecrypt) and the plaintext hash.
//
// Verify changes nothing; see Verifier. seqs must not be nil.
func (v *Verifier) Verify(data []byte, seqs SequenceStore) (*Artifact, error) {
	if seqs == nil {
		return nil, errors.New("artifact: verify: nil SequenceStore")
	}
	s, m, aad, err := v.authenticate(data)
	if err != nil {
		return nil, err
	}
	if m.DeviceID != v.deviceID {
		return nil, withManifest(refuse(ErrWrongDevice, "artifact for device %q, this is %q", m.DeviceID, v.deviceID), m)
	}
	now := v.now()
	if now.Add(v.skew).Before(m.IssuedAt) {
		return nil, withManifest(refuse(ErrNotYetValid, "issued at %s, device clock %s, allowed skew %s", m.IssuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.skew), m)
	}
	if !now.Before(m.Expires) {
		return nil, withManifest(refuse(ErrExpired, "expired at %s, device clock %s", m.Expires.Format(time.RFC3339), now.UTC().Format(time.RFC3339)), m)
	}
	last, err := seqs.LastSequence(m.App)
	if err != nil {
		return nil, fmt.Errorf("artifact: read last sequence of %q: %w", m.App, err)
	}
	switch {
	case m.Sequence == last:
		return nil, withManifest(refuse(ErrReplay, "app %q sequence %d already accepted", m.App, m.Sequence), m)
	case m.Sequence < last:
		return nil, withManifest(refuse(ErrDowngrade, "app %q sequence %d below last accepted %d", m.App, m.Sequence, last), m)
	}
	module, err := v.payload(s, m, aad)
	if err != nil {
		return nil, withManifest(err, m)
	}
	return &Artifact{Manifest: *m, Module: module}, nil
}

// Reverify checks an artifact already installed, e.g. at boot: encoding,
// signer, signature, target device and payload, but not the validity window
// or the sequence, which applied when it was installed. An artifact whose key
// is no longer trusted fails, so dropping a key from the trusted set also
// revokes what it signed.
func (v *Verifier) Reverify(data []byte) (*Artifact, error) {
	s, m, aad, err := v.authenticate(data)
	if err != nil {
		return nil, err
	}
	if m.DeviceID != v.deviceID {
		return nil, withManifest(refuse(ErrWrongDevice, "artifact for device %q, this is %q", m.DeviceID, v.deviceID), m)
	}
	module, err := v.payload(s, m, aad)
	if err != nil {
		return nil, withManifest(err, m)
	}
	return &Artifact{Manifest: *m, Module: module}, nil
}

// authenticate decodes data and checks its signature. It returns the sealing
// AAD for a confidential manifest.
func (v *Verifier) authenticate(data []byte) (*Signed, *Manifest, []byte, error) {
	s, err := Unmarshal(data, v.maxSize)
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := ParseManifest(s.Manifest)
	if err != nil {
		return nil, nil, nil, err
	}
	pub, ok := v.keys[m.KeyID]
	if !ok {
		return nil, nil, nil, refuse(ErrUnknownSigner, "signing key %s is not trusted", m.KeyID)
	}
	var aad, msg []byte
	switch {
	case m.Format == FormatSealedContent:
		if len(s.KeyMaterial) == 0 {
			return nil, nil, nil, refuse(ErrMalformed, "format %d artifact without key material", FormatSealedContent)
		}
		msg = SigningMessageSealedContent(s.Manifest, s.KeyMaterial)
	case len(s.KeyMaterial) != 0:
		return nil, nil, nil, refuse(ErrMalformed, "key material in a format %d artifact", m.Format)
	default:
		if m.Confidential {
			if aad, err = m.AAD(); err != nil {
				return nil, nil, nil, err
			}
		}
		msg = SigningMessage(s.Manifest, aad)
	}
	if !ed25519.Verify(pub, msg, s.Signature) {
		return nil, nil, nil, refuse(ErrBadSignature, "signature by key %s does not verify (app %q, sequence %d)", m.KeyID, m.App, m.Sequence)
	}
	return s, m, aad, nil
}

// payload checks the payload against the signed manifest and returns the
// plaintext module. The sealed blob's hash is checked before it is opened, so
// only signed ciphertext ever reaches the decryptor.
func (v *Verifier) payload(s *Signed, m *Manifest, aad []byte) ([]byte, error) {
	if !m.Confidential {
		if uint64(len(s.Payload)) != m.ModuleSize {
			return nil, refuse(ErrHashMismatch, "module is %d bytes, manifest says %d", len(s.Payload), m.ModuleSize)
		}
		if sha256.Sum256(s.Payload) != m.ModuleHash {
			return nil, refuse(ErrHashMismatch, "module SHA-256 differs from the manifest's")
		}
		return s.Payload, nil
	}
	if m.Format == FormatSealedContent {
		return v.sealedContent(s, m)
	}
	if uint64(len(s.Payload)) != m.ModuleSize+seal.Overhead {
		return nil, refuse(ErrHashMismatch, "sealed module is %d bytes, manifest implies %d", len(s.Payload), m.ModuleSize+seal.Overhead)
	}
	if sha256.Sum256(s.Payload) != m.CiphertextHash {
		return nil, refuse(ErrHashMismatch, "sealed module SHA-256 differs from the manifest's")
	}
	if v.opener == nil {
		return nil, refuse(ErrDecrypt, "confidential module but no sealing key configured")
	}
	module, err := v.opener.Open(seal.PurposeModule, s.Payload, aad)
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "open sealed module", Cause: err}
	}
	if sha256.Sum256(module) != m.ModuleHash {
		return nil, refuse(ErrHashMismatch, "decrypted module SHA-256 differs from the manifest's")
	}
	return module, nil
}

// sealedContent checks a format 2 payload against the signed manifest,
// unwraps the content key with the device's sealing key, and decrypts the
// module. Only signed ciphertext and signed key material reach the
// decryptor.
func (v *Verifier) sealedContent(s *Signed, m *Manifest) ([]byte, error) {
	if uint64(len(s.Payload)) != m.ModuleSize+seal.ContentOverhead {
		return nil, refuse(ErrHashMismatch, "content blob is %d bytes, manifest implies %d", len(s.Payload), m.ModuleSize+seal.ContentOverhead)
	}
	if sha256.Sum256(s.Payload) != m.CiphertextHash {
		return nil, refuse(ErrHashMismatch, "content blob SHA-256 differs from the manifest's")
	}
	aad := KeyMaterialAAD(s.Manifest)
	var key *seal.ContentKey
	var err error
	switch {
	case v.sealing != nil:
		key, err = seal.UnwrapKey(v.sealing, s.KeyMaterial, aad)
	case v.opener != nil:
		key, err = v.opener.UnwrapKey(s.KeyMaterial, aad)
	default:
		return nil, refuse(ErrDecrypt, "confidential module but no sealing key configured")
	}
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "unwrap content key", Cause: err}
	}
	module, err := seal.DecryptContent(key, s.Payload, nil, v.maxSize)
	clear(key[:])
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "decrypt content blob", Cause: err}
	}
	if sha256.Sum256(module) != m.ModuleHash {
		return nil, refuse(ErrHashMismatch, "decrypted module SHA-256 differs from the manifest's")
	}
	return module, nil
}

func withManifest(err error, m *Manifest) error {
	if e, ok := err.(*Error); ok { //nolint:errorlint // our own unwrapped value
		e.Manifest = m
	}
	return err
}
