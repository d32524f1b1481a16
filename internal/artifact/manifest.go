package artifact

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Manifest format versions. Both are read; Sign writes FormatVersion, Issue
// writes FormatVersion for plaintext modules and FormatSealedContent for
// confidential ones.
const (
	// FormatVersion is format 1: a plaintext module, or a confidential
	// module sealed for one device with the platform sealing key
	// (seal.Sealer). Issuers no longer write confidential format 1
	// artifacts; devices keep verifying them so that those already
	// installed still load.
	FormatVersion = 1
	// FormatSealedContent is format 2, confidential only: the payload is a
	// seal content blob encrypted once per application version, and the
	// artifact carries the content key wrapped to the device's sealing key
	// (Signed.KeyMaterial), covered by the signature.
	FormatSealedContent = 2
)

// Size limits, enforced before decoding.
const (
	// MaxManifestSize bounds the encoded manifest.
	MaxManifestSize = 4 << 10
	// DefaultMaxSize bounds a whole encoded artifact (the protocol's frame
	// limit, 1 MiB).
	DefaultMaxSize = 1 << 20
	// MaxNameLen bounds the application name and device id.
	MaxNameLen = 253
	// MaxVersionLen bounds the version string.
	MaxVersionLen = 128
	// SignatureSize is the size of an Ed25519 signature.
	SignatureSize = ed25519.SignatureSize
	// KeyIDSize is the size of a signer key id.
	KeyIDSize = 8
)

// KeyID identifies a platform signing key: the first 8 bytes of the SHA-256 of
// its Ed25519 public key.
type KeyID [KeyIDSize]byte

// String returns the key id in hex.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// KeyIDOf returns pub's key id.
func KeyIDOf(pub ed25519.PublicKey) KeyID {
	sum := sha256.Sum256(pub)
	var id KeyID
	copy(id[:], sum[:])
	return id
}

// Manifest describes a deploy artifact. Everything in it is covered by the
// signature.
type Manifest struct {
	// App is the application's name.
	App string
	// Version is the application's version, free-form.
	Version string
	// ModuleHash is the SHA-256 of the plaintext WebAssembly module.
	ModuleHash [32]byte
	// ModuleSize is the plaintext module's size in bytes.
	ModuleSize uint64
	// Limits are the runtime limits a device grants the module; the
	// execution timeout is carried in whole milliseconds.
	Limits sandbox.Limits
	// DeviceID is the id of the only device that may install the artifact.
	DeviceID string
	// Sequence orders the artifacts of one application on one device: a
	// device accepts only a sequence above the last one it accepted for the
	// application. Sequences start at 1.
	Sequence uint64
	// IssuedAt is when the artifact was signed (whole seconds).
	IssuedAt time.Time
	// Expires is when the artifact stops being installable (whole seconds).
	Expires time.Time
	// KeyID identifies the signing key.
	KeyID KeyID
	// Confidential says the module travels sealed (see package seal).
	Confidential bool
	// CiphertextHash is the SHA-256 of the whole sealed module blob when
	// Confidential, zero otherwise.
	CiphertextHash [32]byte
	// Format is the manifest format version, FormatVersion or
	// FormatSealedContent; zero means FormatVersion.
	Format uint64
}

// format returns the manifest's format version.
func (m *Manifest) format() uint64 {
	if m.Format == 0 {
		return FormatVersion
	}
	return m.Format
}

// wireManifest is the manifest's CBOR form: a map with small integer keys.
type wireManifest struct {
	V                  uint64 `cbor:"1,keyasint"`
	App                string `cbor:"2,keyasint"`
	Version            string `cbor:"3,keyasint"`
	ModuleHash         []byte `cbor:"4,keyasint"`
	ModuleSize         uint64 `cbor:"5,keyasint"`
	MemoryLimit        uint64 `cbor:"6,keyasint"`
	ExecutionTimeoutMs uint64 `cbor:"7,keyasint"`
	MaxStackSize       uint64 `cbor:"8,keyasint"`
	DeviceID           string `cbor:"9,keyasint"`
	Sequence           uint64 `cbor:"10,keyasint"`
	IssuedAt           int64  `cbor:"11,keyasint"`
	Expires            int64  `cbor:"12,keyasint"`
	KeyID              []byte `cbor:"13,keyasint"`
	Confidential       bool   `cbor:"14,keyasint,omitempty"`
	CiphertextHash     []byte `cbor:"15,keyasint,omitempty"`
}

var encMode = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

var decMode = func() cbor.DecMode {
	sv, err := cbor.NewSimpleValueRegistryFromDefaults(
		cbor.WithRejectedSimpleValue(cbor.SimpleValue(22)), // null
		cbor.WithRejectedSimpleValue(cbor.SimpleValue(23)), // undefined
	)
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:   4,
		MaxArrayElements:  16,
		MaxMapPairs:       32,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		UTF8:              cbor.UTF8RejectInvalid,
		NaN:               cbor.NaNDecodeForbidden,
		Inf:               cbor.InfDecodeForbidden,
		SimpleValues:      sv,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

func (m *Manifest) wire() *wireManifest {
	w := &wireManifest{
		V:                  m.format(),
		App:                m.App,
		Version:            m.Version,
		ModuleHash:         m.ModuleHash[:],
		ModuleSize:         m.ModuleSize,
		MemoryLimit:        m.Limits.MemoryLimit,
		ExecutionTimeoutMs: uint64(m.Limits.ExecutionTimeout / time.Millisecond), //nolint:gosec // validated positive
		MaxStackSize:       m.Limits.MaxStackSize,
		DeviceID:           m.DeviceID,
		Sequence:           m.Sequence,
		IssuedAt:           m.IssuedAt.Unix(),
		Expires:            m.Expires.Unix(),
		KeyID:              m.KeyID[:],
		Confidential:       m.Confidential,
	}
	if m.Confidential {
		w.CiphertextHash = m.CiphertextHash[:]
	}
	return w
}

// Marshal returns the manifest's canonical CBOR encoding after checking it
// with Validate.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(m.wire())
	if err != nil {
		return nil, fmt.Errorf("artifact: encode manifest: %w", err)
	}
	if len(b) > MaxManifestSize {
		return nil, refuse(ErrTooLarge, "manifest is %d bytes, limit %d", len(b), MaxManifestSize)
	}
	return b, nil
}

// ParseManifest decodes and validates a manifest. It refuses input above
// MaxManifestSize, unknown or duplicate keys, indefinite lengths, tags, and any
// encoding that is not the canonical one, so a manifest has exactly one byte
// form.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, refuse(ErrTooLarge, "manifest is %d bytes, limit %d", len(b), MaxManifestSize)
	}
	var w wireManifest
	if err := decMode.Unmarshal(b, &w); err != nil {
		return nil, &Error{Err: ErrMalformed, Detail: "decode manifest", Cause: err}
	}
	if w.V != FormatVersion && w.V != FormatSealedContent {
		return nil, refuse(ErrMalformed, "manifest format version %d, want %d or %d", w.V, FormatVersion, FormatSealedContent)
	}
	if len(w.ModuleHash) != 32 {
		return nil, refuse(ErrMalformed, "module hash is %d bytes, want 32", len(w.ModuleHash))
	}
	if len(w.KeyID) != KeyIDSize {
		return nil, refuse(ErrMalformed, "key id is %d bytes, want %d", len(w.KeyID), KeyIDSize)
	}
	if w.Confidential != (w.CiphertextHash != nil) {
		return nil, refuse(ErrMalformed, "ciphertext hash present is %t, confidential is %t", w.CiphertextHash != nil, w.Confidential)
	}
	if w.Confidential && len(w.CiphertextHash) != 32 {
		return nil, refuse(ErrMalformed, "ciphertext hash is %d bytes, want 32", len(w.CiphertextHash))
	}
	const maxMs = uint64(1<<63-1) / uint64(time.Millisecond)
	if w.ExecutionTimeoutMs > maxMs {
		return nil, refuse(ErrMalformed, "execution timeout %d ms out of range", w.ExecutionTimeoutMs)
	}
	m := &Manifest{
		App:        w.App,
		Version:    w.Version,
		ModuleSize: w.ModuleSize,
		Limits: sandbox.Limits{
			MemoryLimit:      w.MemoryLimit,
			ExecutionTimeout: time.Duration(w.ExecutionTimeoutMs) * time.Millisecond, //nolint:gosec // bounded above
			MaxStackSize:     w.MaxStackSize,
		},
		DeviceID:     w.DeviceID,
		Sequence:     w.Sequence,
		IssuedAt:     time.Unix(w.IssuedAt, 0).UTC(),
		Expires:      time.Unix(w.Expires, 0).UTC(),
		Confidential: w.Confidential,
		Format:       w.V,
	}
	copy(m.ModuleHash[:], w.ModuleHash)
	copy(m.KeyID[:], w.KeyID)
	copy(m.CiphertextHash[:], w.CiphertextHash)
	if err := m.Validate(); err != nil {
		return nil, err
	}
	canon, err := encMode.Marshal(m.wire())
	if err != nil {
		return nil, fmt.Errorf("artifact: re-encode manifest: %w", err)
	}
	if !bytes.Equal(canon, b) {
		return nil, refuse(ErrMalformed, "manifest encoding is not canonical")
	}
	return m, nil
}

// Validate checks the manifest's fields: names present, bounded and
// printable, a non-zero sequence, positive limits, an expiry after the issue
// time.
func (m *Manifest) Validate() error {
	if err := checkName("application name", m.App, MaxNameLen); err != nil {
		return err
	}
	if err := checkName("version", m.Version, MaxVersionLen); err != nil {
		return err
	}
	if err := checkName("device id", m.DeviceID, MaxNameLen); err != nil {
		return err
	}
	switch {
	case m.Sequence == 0:
		return refuse(ErrMalformed, "sequence is 0; sequences start at 1")
	case m.ModuleSize == 0:
		return refuse(ErrMalformed, "module size is 0")
	case m.Limits.MemoryLimit == 0:
		return refuse(ErrMalformed, "memory limit is 0")
	case m.Limits.ExecutionTimeout < time.Millisecond:
		return refuse(ErrMalformed, "execution timeout %s below 1ms", m.Limits.ExecutionTimeout)
	case m.Limits.MaxStackSize == 0:
		return refuse(ErrMalformed, "max stack size is 0")
	case m.IssuedAt.Unix() <= 0:
		return refuse(ErrMalformed, "issue time %s not after the epoch", m.IssuedAt)
	case m.Expires.Unix() <= m.IssuedAt.Unix():
		return refuse(ErrMalformed, "expiry %s not after issue time %s", m.Expires, m.IssuedAt)
	case !m.Confidential && m.CiphertextHash != [32]byte{}:
		return refuse(ErrMalformed, "ciphertext hash set on a non-confidential manifest")
	case m.Format != 0 && m.Format != FormatVersion && m.Format != FormatSealedContent:
		return refuse(ErrMalformed, "manifest format version %d, want %d or %d", m.Format, FormatVersion, FormatSealedContent)
	case m.Format == FormatSealedContent && !m.Confidential:
		return refuse(ErrMalformed, "format %d is for confidential modules only", FormatSealedContent)
	}
	return nil
}

func checkName(what, s string, limit int) error {
	if s == "" {
		return refuse(ErrMalformed, "%s is empty", what)
	}
	if len(s) > limit {
		return refuse(ErrMalformed, "%s is %d bytes, limit %d", what, len(s), limit)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return refuse(ErrMalformed, "%s %q has a byte 0x%02x outside printable ASCII", what, s, c)
		}
	}
	return nil
}

// AAD returns the associated data a confidential module is sealed with. It
// binds the device id, application name, version and sequence, and the
// SHA-256 of the manifest encoded without its ciphertext hash (which cannot
// be known before sealing). Changing any manifest field changes the AAD, so a
// sealed module never opens under another manifest.
func (m *Manifest) AAD() ([]byte, error) {
	core := *m
	core.CiphertextHash = [32]byte{}
	w := core.wire()
	w.CiphertextHash = nil
	b, err := encMode.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("artifact: encode manifest core: %w", err)
	}
	sum := sha256.Sum256(b)
	const label = "wasmbed/artifact-aad/v1"
	aad := make([]byte, 0, len(label)+1+3*4+len(m.DeviceID)+len(m.App)+len(m.Version)+8+32)
	aad = append(aad, label...)
	aad = append(aad, 0)
	aad = appendString(aad, m.DeviceID)
	aad = appendString(aad, m.App)
	aad = appendString(aad, m.Version)
	aad = binary.BigEndian.AppendUint64(aad, m.Sequence)
	aad = append(aad, sum[:]...)
	return aad, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s))) //nolint:gosec // names are bounded by MaxNameLen
	return append(b, s...)
}
