package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
)

// Format version 2: content encryption with recipient key wrapping.
//
// A payload for many devices is encrypted once, with a fresh random content
// key; only the content key is wrapped for each recipient, as age does with
// its file key and recipient stanzas. Nothing in version 2 depends on the
// platform sealing key: authenticity comes from the signature over the
// artifact that carries both, so a recipient wraps to a bare X25519 public
// key.
//
// Content blob (EncryptContent):
//
//	offset  size   field
//	0       1      format version (2)
//	1       1      kind (1 = content)
//	2       n+16   AES-256-GCM(content key, nonce = 0^12, plaintext,
//	               additional data = bytes 0..1 || caller's AAD)
//
// Every content key encrypts exactly one plaintext (EncryptContent draws it
// and hands it back), so the fixed nonce never repeats under a key.
//
// Wrapped key (WrapKey):
//
//	offset  size   field
//	0       1      format version (2)
//	1       1      kind (2 = wrapped key)
//	2       32     ephemeral X25519 public key E
//	34      48     AES-256-GCM(wrap key, nonce = 0^12, content key (32),
//	               additional data = bytes 0..33 || caller's AAD)
//
//	wrap key = HKDF-SHA256(ikm = X25519(e, R), salt = "wasmbed/seal/v2",
//	                       info = "wasmbed/seal/v2 key-wrap" || 0x00 || E || R, 32)
//
// where R is the recipient's X25519 public key. The ephemeral key is fresh
// for every wrap, so every wrap key is used once.
const (
	// ContentVersion is the format version of content blobs and wrapped
	// keys.
	ContentVersion = 2
	// ContentKeySize is the size of a content key.
	ContentKeySize = 32
	// ContentOverhead is how much longer a content blob is than its
	// plaintext.
	ContentOverhead = 2 + TagSize
	// WrappedKeySize is the size of a wrapped content key.
	WrappedKeySize = 2 + 32 + ContentKeySize + TagSize
)

// Kinds of version 2 blobs (byte 1).
const (
	kindContent    = 1
	kindWrappedKey = 2
)

const v2Salt = "wasmbed/seal/v2"

// zeroNonce is the nonce of every version 2 encryption: each key encrypts one
// message.
var zeroNonce [NonceSize]byte

// ContentKey is a content key: it encrypts one payload, once.
type ContentKey [ContentKeySize]byte

// EncryptContent encrypts plaintext under a fresh random content key, binding
// aad, and returns the key and the content blob. The key is never used
// again by this package for another plaintext.
func EncryptContent(plaintext, aad []byte) (*ContentKey, []byte, error) {
	return encryptContent(rand.Reader, plaintext, aad)
}

func encryptContent(rnd io.Reader, plaintext, aad []byte) (*ContentKey, []byte, error) {
	if len(plaintext) > DefaultMaxSealedSize-ContentOverhead {
		return nil, nil, newError(ErrTooLarge, "plaintext is %d bytes, limit %d", len(plaintext), DefaultMaxSealedSize-ContentOverhead)
	}
	key := new(ContentKey)
	if _, err := io.ReadFull(rnd, key[:]); err != nil {
		return nil, nil, fmt.Errorf("seal: content key: %w", err)
	}
	aead, err := newGCM(key[:])
	if err != nil {
		return nil, nil, err
	}
	header := []byte{ContentVersion, kindContent}
	out := make([]byte, 0, len(plaintext)+ContentOverhead)
	out = append(out, header...)
	out = aead.Seal(out, zeroNonce[:], plaintext, additionalData(header, aad)) //nolint:gosec // each content key is random and seals one message (see zeroNonce)
	return key, out, nil
}

// DecryptContent decrypts a content blob with key, checking aad. It refuses a
// blob above maxSize (DefaultMaxSealedSize when maxSize <= 0) with
// ErrTooLarge, a malformed one with ErrMalformed, and any authentication
// failure with ErrDecrypt.
func DecryptContent(key *ContentKey, blob, aad []byte, maxSize int) ([]byte, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSealedSize
	}
	if len(blob) > maxSize {
		return nil, newError(ErrTooLarge, "content blob is %d bytes, limit %d", len(blob), maxSize)
	}
	if len(blob) < ContentOverhead {
		return nil, newError(ErrMalformed, "content blob is %d bytes, shorter than the %d-byte overhead", len(blob), ContentOverhead)
	}
	if blob[0] != ContentVersion || blob[1] != kindContent {
		return nil, newError(ErrMalformed, "not a version %d content blob (version %d, kind %d)", ContentVersion, blob[0], blob[1])
	}
	if key == nil {
		return nil, newError(ErrInvalidKey, "no content key")
	}
	aead, err := newGCM(key[:])
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, zeroNonce[:], blob[2:], additionalData(blob[:2], aad))
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "content blob: authentication failed", Cause: err}
	}
	return plain, nil
}

// WrapKey wraps a content key to a recipient's X25519 public key, binding
// aad.
func WrapKey(recipient *ecdh.PublicKey, key *ContentKey, aad []byte) ([]byte, error) {
	ek, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	return wrapKey(ek, recipient, key, aad)
}

// wrapKey wraps key with the ephemeral key ek, which must be fresh.
func wrapKey(ek *ecdh.PrivateKey, recipient *ecdh.PublicKey, key *ContentKey, aad []byte) ([]byte, error) {
	if err := checkX25519Public(recipient); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, newError(ErrInvalidKey, "no content key")
	}
	shared, err := ek.ECDH(recipient)
	if err != nil {
		return nil, &Error{Err: ErrInvalidKey, Detail: "recipient key", Cause: err}
	}
	eph := ek.PublicKey().Bytes()
	aead, err := wrapAEAD(shared, eph, recipient.Bytes())
	clear(shared)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, WrappedKeySize)
	out = append(out, ContentVersion, kindWrappedKey)
	out = append(out, eph...)
	return aead.Seal(out, zeroNonce[:], key[:], additionalData(out[:34], aad)), nil //nolint:gosec // the key comes from a fresh ephemeral ECDH and seals one message (see zeroNonce)
}

// UnwrapKey unwraps a content key wrapped to recipient's public key,
// checking aad. A blob of the wrong size or layout is ErrMalformed; any
// authentication failure (another recipient, other AAD, tampering) is
// ErrDecrypt.
func UnwrapKey(recipient *ecdh.PrivateKey, wrapped, aad []byte) (*ContentKey, error) {
	if err := checkX25519Private(recipient); err != nil {
		return nil, err
	}
	if len(wrapped) != WrappedKeySize {
		return nil, newError(ErrMalformed, "wrapped key is %d bytes, want %d", len(wrapped), WrappedKeySize)
	}
	if wrapped[0] != ContentVersion || wrapped[1] != kindWrappedKey {
		return nil, newError(ErrMalformed, "not a version %d wrapped key (version %d, kind %d)", ContentVersion, wrapped[0], wrapped[1])
	}
	eph, err := ecdh.X25519().NewPublicKey(wrapped[2:34])
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "ephemeral key", Cause: err}
	}
	shared, err := recipient.ECDH(eph)
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "ephemeral key agreement", Cause: err}
	}
	aead, err := wrapAEAD(shared, wrapped[2:34], recipient.PublicKey().Bytes())
	clear(shared)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, zeroNonce[:], wrapped[34:], additionalData(wrapped[:34], aad))
	if err != nil {
		return nil, &Error{Err: ErrDecrypt, Detail: "wrapped key: authentication failed", Cause: err}
	}
	key := new(ContentKey)
	copy(key[:], plain)
	clear(plain)
	return key, nil
}

// UnwrapKey unwraps a content key wrapped to the Opener's device key.
func (o *Opener) UnwrapKey(wrapped, aad []byte) (*ContentKey, error) {
	return UnwrapKey(o.device, wrapped, aad)
}

// wrapAEAD derives the key-wrapping AEAD from the shared secret and both
// public keys.
func wrapAEAD(shared, eph, recipient []byte) (cipher.AEAD, error) {
	info := make([]byte, 0, len(v2Salt)+len(" key-wrap")+1+64)
	info = append(info, v2Salt+" key-wrap"...)
	info = append(info, 0)
	info = append(info, eph...)
	info = append(info, recipient...)
	key, err := hkdf.Key(sha256.New, shared, []byte(v2Salt), string(info), 32)
	if err != nil {
		return nil, fmt.Errorf("seal: hkdf: %w", err)
	}
	defer clear(key)
	return newGCM(key)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: gcm: %w", err)
	}
	return aead, nil
}
