package artifact

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/seal"
)

// Signer signs deploy artifacts with the platform's Ed25519 key. It is safe
// for concurrent use.
type Signer struct {
	key   ed25519.PrivateKey
	keyID KeyID
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("artifact: signing key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("artifact: signing key has no ed25519 public key")
	}
	return &Signer{key: key, keyID: KeyIDOf(pub)}, nil
}

// KeyID returns the id of the signing key.
func (s *Signer) KeyID() KeyID { return s.keyID }

// PublicKey returns the signing key's public half, for devices to pin.
func (s *Signer) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey) //nolint:forcetypeassert // checked in NewSigner
}

// SignOptions tunes Sign.
type SignOptions struct {
	// Sealer, when set, makes the artifact confidential: the module is
	// sealed for the target device (seal.PurposeModule) and the payload is
	// the sealed blob. The Sealer must be the target device's.
	Sealer *seal.Sealer
	// MaxSize bounds the encoded artifact; zero means DefaultMaxSize.
	MaxSize int
}

// Sign builds and signs the artifact for module. From m it takes the
// application, version, limits, target device, sequence, issue and expiry
// times; it sets the module hash and size, the key id, and, when opts.Sealer is
// set, Confidential and the ciphertext hash. It returns the encoded Signed
// artifact and the manifest as signed.
func (s *Signer) Sign(m Manifest, module []byte, opts SignOptions) ([]byte, *Manifest, error) {
	maxSize := opts.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(module) == 0 {
		return nil, nil, refuse(ErrMalformed, "empty module")
	}
	if len(module) > maxSize {
		return nil, nil, refuse(ErrTooLarge, "module is %d bytes, limit %d", len(module), maxSize)
	}
	m.ModuleHash = sha256.Sum256(module)
	m.ModuleSize = uint64(len(module))
	m.KeyID = s.keyID
	m.Format = FormatVersion
	m.Confidential = opts.Sealer != nil
	m.CiphertextHash = [32]byte{}
	// Normalise to the precision the wire carries, so the returned
	// manifest equals what a verifier decodes.
	m.IssuedAt = time.Unix(m.IssuedAt.Unix(), 0).UTC()
	m.Expires = time.Unix(m.Expires.Unix(), 0).UTC()
	m.Limits.ExecutionTimeout = m.Limits.ExecutionTimeout.Truncate(time.Millisecond)
	if err := m.Validate(); err != nil {
		return nil, nil, err
	}

	payload := module
	var aad []byte
	if opts.Sealer != nil {
		var err error
		if aad, err = m.AAD(); err != nil {
			return nil, nil, err
		}
		if payload, err = opts.Sealer.Seal(seal.PurposeModule, module, aad); err != nil {
			return nil, nil, fmt.Errorf("artifact: seal module: %w", err)
		}
		m.CiphertextHash = sha256.Sum256(payload)
	}
	mb, err := m.Marshal()
	if err != nil {
		return nil, nil, err
	}
	signed := &Signed{
		Manifest:  mb,
		Signature: ed25519.Sign(s.key, SigningMessage(mb, aad)),
		Payload:   payload,
	}
	out, err := signed.Marshal()
	if err != nil {
		return nil, nil, err
	}
	if len(out) > maxSize {
		return nil, nil, refuse(ErrTooLarge, "artifact is %d bytes, limit %d", len(out), maxSize)
	}
	return out, &m, nil
}
