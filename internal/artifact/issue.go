package artifact

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/seal"
)

// Content is one application version's payload as every target device
// receives it, hashed once: the plaintext module, or, for a confidential
// application, the module encrypted once under a content key. Issue turns it
// into per-device manifests and signatures without touching the payload
// again, so issuing to many devices costs one signature (and, when
// confidential, one key wrap) per device. A Content is safe for concurrent
// use.
type Content struct {
	moduleHash  [32]byte
	moduleSize  uint64
	payloadHash [32]byte
	payloadSize int
	key         *seal.ContentKey // confidential only
}

// NewContent returns the Content of a plaintext module.
func NewContent(module []byte) (*Content, error) {
	if len(module) == 0 {
		return nil, refuse(ErrMalformed, "empty module")
	}
	if len(module) > DefaultMaxSize {
		return nil, refuse(ErrTooLarge, "module is %d bytes, limit %d", len(module), DefaultMaxSize)
	}
	h := sha256.Sum256(module)
	return &Content{moduleHash: h, moduleSize: uint64(len(module)), payloadHash: h, payloadSize: len(module)}, nil
}

// OpenSealedContent decrypts a confidential module's content blob (see
// seal.EncryptContent) with its content key and returns the Content and the
// plaintext module, for the issuer to check before it issues anything. The
// Content keeps the key, to wrap it for each device.
func OpenSealedContent(blob []byte, key *seal.ContentKey) (*Content, []byte, error) {
	module, err := seal.DecryptContent(key, blob, nil, DefaultMaxSize)
	if err != nil {
		return nil, nil, &Error{Err: ErrDecrypt, Detail: "open content blob", Cause: err}
	}
	if len(module) == 0 {
		return nil, nil, refuse(ErrMalformed, "empty module")
	}
	k := *key
	return &Content{
		moduleHash:  sha256.Sum256(module),
		moduleSize:  uint64(len(module)),
		payloadHash: sha256.Sum256(blob),
		payloadSize: len(blob),
		key:         &k,
	}, module, nil
}

// ModuleHash returns the SHA-256 of the plaintext module.
func (c *Content) ModuleHash() [32]byte { return c.moduleHash }

// PayloadHash returns the SHA-256 of the bytes devices receive: the module,
// or its content blob.
func (c *Content) PayloadHash() [32]byte { return c.payloadHash }

// PayloadSize returns the size of the bytes devices receive.
func (c *Content) PayloadSize() int { return c.payloadSize }

// Confidential reports a content-key encrypted module.
func (c *Content) Confidential() bool { return c.key != nil }

// Issued is the per-device part of an artifact: everything but the payload,
// which the devices of one version share. Signed{Manifest: ManifestBytes,
// Signature: Signature, Payload: payload, KeyMaterial: KeyMaterial} is the
// artifact on the wire (Assemble).
type Issued struct {
	// Manifest is the manifest as signed.
	Manifest Manifest
	// ManifestBytes is its canonical encoding.
	ManifestBytes []byte
	// Signature is the platform signing key's signature.
	Signature []byte
	// KeyMaterial is the content key wrapped for the device (format 2), or
	// nil.
	KeyMaterial []byte
}

// Assemble joins the issued part with the version's payload into the encoded
// artifact a device verifies.
func (i *Issued) Assemble(payload []byte) ([]byte, error) {
	return (&Signed{Manifest: i.ManifestBytes, Signature: i.Signature, Payload: payload, KeyMaterial: i.KeyMaterial}).Marshal()
}

// Issue signs the artifact of content for one device. From m it takes the
// application, version, limits, target device, sequence, issue and expiry
// times; it sets the module hash and size, the key id, and, for confidential
// content, format 2, the ciphertext hash and the content key wrapped to
// recipient, the device's X25519 sealing key (unused for plaintext content).
func (s *Signer) Issue(m Manifest, c *Content, recipient *ecdh.PublicKey) (*Issued, error) {
	if c == nil {
		return nil, fmt.Errorf("artifact: issue: no content")
	}
	m.ModuleHash = c.moduleHash
	m.ModuleSize = c.moduleSize
	m.KeyID = s.keyID
	m.Confidential = c.key != nil
	m.CiphertextHash = [32]byte{}
	m.Format = FormatVersion
	if m.Confidential {
		m.Format = FormatSealedContent
		m.CiphertextHash = c.payloadHash
		if recipient == nil {
			return nil, fmt.Errorf("artifact: issue confidential %q for %q: no device sealing key", m.App, m.DeviceID)
		}
	}
	m.IssuedAt = time.Unix(m.IssuedAt.Unix(), 0).UTC()
	m.Expires = time.Unix(m.Expires.Unix(), 0).UTC()
	m.Limits.ExecutionTimeout = m.Limits.ExecutionTimeout.Truncate(time.Millisecond)
	mb, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	out := &Issued{Manifest: m, ManifestBytes: mb}
	if !m.Confidential {
		out.Signature = ed25519.Sign(s.key, SigningMessage(mb, nil))
		return out, nil
	}
	if out.KeyMaterial, err = seal.WrapKey(recipient, c.key, KeyMaterialAAD(mb)); err != nil {
		return nil, fmt.Errorf("artifact: wrap content key for %q: %w", m.DeviceID, err)
	}
	out.Signature = ed25519.Sign(s.key, SigningMessageSealedContent(mb, out.KeyMaterial))
	return out, nil
}
