package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Version is the sealed-blob format version this package writes and reads.
const Version = 1

// Sizes of the sealed-blob layout.
const (
	// KeyIDSize is the size of a sender key id.
	KeyIDSize = 8
	// NonceSize is the size of the GCM nonce.
	NonceSize = 12
	// HeaderSize is the size of the header before the ciphertext.
	HeaderSize = 2 + KeyIDSize + 32 + NonceSize
	// TagSize is the size of the GCM authentication tag.
	TagSize = 16
	// Overhead is how much longer a sealed blob is than its plaintext.
	Overhead = HeaderSize + TagSize
)

// Limits.
const (
	// MaxMessagesPerKey is the number of messages one key seals for one
	// purpose before Seal refuses with ErrKeyExhausted. It matches the
	// invocation limit NIST SP 800-38D sets for a GCM key.
	MaxMessagesPerKey uint64 = 1 << 32
	// MaxBytesPerKey is the plaintext volume one key seals for one purpose
	// before Seal refuses with ErrKeyExhausted (64 GiB, 2^32 AES blocks):
	// with MaxMessagesPerKey it keeps an attacker's advantage against
	// AES-GCM's confidentiality below 2^-60 per key.
	MaxBytesPerKey uint64 = 1 << 36
	// DefaultMaxSealedSize is the largest sealed blob accepted by default
	// (1 MiB, the protocol's frame limit).
	DefaultMaxSealedSize = 1 << 20
)

// Purpose separates the keys of different kinds of payload: a blob sealed for
// one purpose never opens as another.
type Purpose uint8

// Purposes.
const (
	// PurposeModule seals confidential WebAssembly modules.
	PurposeModule Purpose = 1
	// PurposeConfig seals configuration secrets.
	PurposeConfig Purpose = 2
)

const numPurposes = 3 // index 0 unused

// label is the purpose's label in the HKDF info string.
func (p Purpose) label() string {
	switch p {
	case PurposeModule:
		return "module"
	case PurposeConfig:
		return "config"
	}
	return ""
}

// Valid reports whether p is a known purpose.
func (p Purpose) Valid() bool { return p.label() != "" }

// String returns the purpose's label.
func (p Purpose) String() string {
	if l := p.label(); l != "" {
		return l
	}
	return fmt.Sprintf("Purpose(%d)", uint8(p))
}

// KeyID identifies a platform sealing key: the first 8 bytes of the SHA-256
// of its 32-byte X25519 public key.
type KeyID [KeyIDSize]byte

// String returns the key id in hex.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// KeyIDOf returns pub's key id.
func KeyIDOf(pub *ecdh.PublicKey) KeyID {
	sum := sha256.Sum256(pub.Bytes())
	var id KeyID
	copy(id[:], sum[:])
	return id
}

// GenerateKey returns a new X25519 key, e.g. a device's sealing key at
// enrollment or the platform's static sealing key.
func GenerateKey() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("seal: generate x25519 key: %w", err)
	}
	return k, nil
}

// ParsePublicKey parses a 32-byte X25519 public key. It refuses points of
// small order (and their spellings with the ignored top bit set): every
// key agreement with them gives the all-zero secret, so nothing sealed
// with them is secret. Use it wherever a sealing key is received or
// pinned. The check costs one X25519 operation.
func ParsePublicKey(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != 32 {
		return nil, newError(ErrInvalidKey, "x25519 public key is %d bytes, want 32", len(b))
	}
	pub, err := ecdh.X25519().NewPublicKey(b)
	if err != nil {
		return nil, &Error{Err: ErrInvalidKey, Detail: "parse x25519 public key", Cause: err}
	}
	if _, err := lowOrderProbe.ECDH(pub); err != nil {
		return nil, &Error{Err: ErrInvalidKey, Detail: "x25519 public key of small order", Cause: err}
	}
	return pub, nil
}

// lowOrderProbe is a fixed X25519 private key. Its clamped scalar is a
// multiple of the cofactor 8 and smaller than 8 times the group order, so
// the agreement with a point is all zeros — which crypto/ecdh refuses —
// exactly when the point has small order.
var lowOrderProbe = func() *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey([]byte("wasmbed/seal low-order probe key"))
	if err != nil {
		panic(err) // 32 bytes: always a valid X25519 key
	}
	return k
}()

// ParsePrivateKey parses a 32-byte X25519 private key, as stored in flash.
func ParsePrivateKey(b []byte) (*ecdh.PrivateKey, error) {
	if len(b) != 32 {
		return nil, newError(ErrInvalidKey, "x25519 private key is %d bytes, want 32", len(b))
	}
	k, err := ecdh.X25519().NewPrivateKey(b)
	if err != nil {
		return nil, &Error{Err: ErrInvalidKey, Detail: "parse x25519 private key", Cause: err}
	}
	return k, nil
}

func checkX25519Public(pub *ecdh.PublicKey) error {
	if pub == nil || pub.Curve() != ecdh.X25519() {
		return newError(ErrInvalidKey, "not an x25519 public key")
	}
	return nil
}

func checkX25519Private(k *ecdh.PrivateKey) error {
	if k == nil || k.Curve() != ecdh.X25519() {
		return newError(ErrInvalidKey, "not an x25519 private key")
	}
	return nil
}

// Header is the parsed, unauthenticated header of a sealed blob.
type Header struct {
	// Version is the format version.
	Version uint8
	// Purpose is the purpose the blob was sealed for.
	Purpose Purpose
	// Sender is the key id of the platform key that sealed the blob.
	Sender KeyID
	// Ephemeral is the sealer's ephemeral X25519 public key.
	Ephemeral [32]byte
	// Nonce is the GCM nonce.
	Nonce [NonceSize]byte
}

// Counter returns the message counter carried in the nonce.
func (h *Header) Counter() uint64 { return binary.BigEndian.Uint64(h.Nonce[4:]) }

// ParseHeader checks a sealed blob's size and structure and returns its
// header. It does no cryptography: the header is authenticated only when the
// blob is opened. maxSize <= 0 means DefaultMaxSealedSize.
func ParseHeader(sealed []byte, maxSize int) (*Header, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSealedSize
	}
	if len(sealed) > maxSize {
		return nil, newError(ErrTooLarge, "sealed blob is %d bytes, limit %d", len(sealed), maxSize)
	}
	if len(sealed) < Overhead {
		return nil, newError(ErrMalformed, "sealed blob is %d bytes, shorter than the %d-byte overhead", len(sealed), Overhead)
	}
	h := &Header{Version: sealed[0], Purpose: Purpose(sealed[1])}
	if h.Version != Version {
		return nil, newError(ErrMalformed, "unsupported format version %d", h.Version)
	}
	if !h.Purpose.Valid() {
		return nil, newError(ErrMalformed, "unknown purpose %d", sealed[1])
	}
	copy(h.Sender[:], sealed[2:10])
	copy(h.Ephemeral[:], sealed[10:42])
	copy(h.Nonce[:], sealed[42:54])
	if binary.BigEndian.Uint32(h.Nonce[:4]) != uint32(h.Purpose) {
		return nil, newError(ErrMalformed, "nonce prefix does not match purpose %s", h.Purpose)
	}
	return h, nil
}

// appendHeader appends the encoded header to dst.
func appendHeader(dst []byte, p Purpose, sender KeyID, eph []byte, counter uint64) []byte {
	dst = append(dst, Version, byte(p))
	dst = append(dst, sender[:]...)
	dst = append(dst, eph...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(p))
	dst = binary.BigEndian.AppendUint64(dst, counter)
	return dst
}

// additionalData returns the GCM additional data: the header, then the
// caller's associated data.
func additionalData(header, aad []byte) []byte {
	if len(aad) == 0 {
		return header
	}
	ad := make([]byte, 0, len(header)+len(aad))
	ad = append(ad, header...)
	return append(ad, aad...)
}

const kdfSalt = "wasmbed/seal/v1"

// deriveKeys derives the AEAD of every purpose from the two shared secrets
// and the three public keys (ephemeral, platform static, device static).
func deriveKeys(ephShared, staticShared, eph, platform, device []byte) ([numPurposes]cipher.AEAD, error) {
	var aeads [numPurposes]cipher.AEAD
	ikm := make([]byte, 0, 64)
	ikm = append(ikm, ephShared...)
	ikm = append(ikm, staticShared...)
	prk, err := hkdf.Extract(sha256.New, ikm, []byte(kdfSalt))
	clear(ikm)
	if err != nil {
		return aeads, fmt.Errorf("seal: hkdf extract: %w", err)
	}
	defer clear(prk)
	for p := PurposeModule; p < numPurposes; p++ {
		info := make([]byte, 0, len(kdfSalt)+1+len(p.label())+1+3*32)
		info = append(info, kdfSalt...)
		info = append(info, ' ')
		info = append(info, p.label()...)
		info = append(info, 0)
		info = append(info, eph...)
		info = append(info, platform...)
		info = append(info, device...)
		key, err := hkdf.Expand(sha256.New, prk, string(info), 32)
		if err != nil {
			return aeads, fmt.Errorf("seal: hkdf expand: %w", err)
		}
		block, err := aes.NewCipher(key)
		clear(key)
		if err != nil {
			return aeads, fmt.Errorf("seal: aes: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return aeads, fmt.Errorf("seal: gcm: %w", err)
		}
		aeads[p] = aead
	}
	return aeads, nil
}

// ConfigAAD returns the associated data that binds a sealed configuration
// secret to its device, application and configuration generation. Sealer and
// Opener must be given the same value.
func ConfigAAD(deviceID, app string, generation uint64) []byte {
	const label = "wasmbed/config/v1"
	b := make([]byte, 0, len(label)+1+4+len(deviceID)+4+len(app)+8)
	b = append(b, label...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(deviceID))) //nolint:gosec // ids are far below 4 GiB
	b = append(b, deviceID...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(app))) //nolint:gosec // names are far below 4 GiB
	b = append(b, app...)
	b = binary.BigEndian.AppendUint64(b, generation)
	return b
}
