package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/wasmbed/wasmbed/internal/edkey"
)

// KeyAlgorithm names a key type this package generates and accepts.
type KeyAlgorithm string

// Accepted key algorithms. Ed25519 is the default for every role; ECDSA P-256
// is accepted everywhere too, because many MCUs accelerate it in hardware.
const (
	Ed25519   KeyAlgorithm = "ed25519"
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"

	// DefaultKeyAlgorithm is used when an options struct leaves Algorithm empty.
	DefaultKeyAlgorithm = Ed25519
)

// MaxEncodedKeyLen bounds the length of an encoded public key accepted by
// ParsePublicKey. The accepted keys encode to fewer than 130 characters.
const MaxEncodedKeyLen = 1024

// ParseKeyAlgorithm parses "ed25519" or "ecdsa-p256" (also "p256", "p-256").
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "ed25519":
		return Ed25519, nil
	case "ecdsa-p256", "ecdsa", "p256", "p-256":
		return ECDSAP256, nil
	}
	return "", &UnsupportedKeyError{Algorithm: s, Reason: "unknown algorithm name"}
}

// GenerateKey creates a private key for alg ("" means DefaultKeyAlgorithm).
// Randomness comes from crypto/rand.
func GenerateKey(alg KeyAlgorithm) (crypto.Signer, error) {
	switch alg {
	case "", Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ed25519 key: %w", err)
		}
		return priv, nil
	case ECDSAP256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ecdsa p-256 key: %w", err)
		}
		return priv, nil
	}
	return nil, &UnsupportedKeyError{Algorithm: string(alg), Reason: "unknown algorithm name"}
}

// CheckPublicKey returns nil if pub is an Ed25519 or ECDSA P-256 public key
// and an *UnsupportedKeyError otherwise. RSA is refused at any size; the
// error says "weak" for RSA below 2048 bits and for Ed25519 keys that
// internal/edkey refuses (small order — under which anyone can forge
// signatures —, non-canonical encodings, points off the curve), with the
// edkey error as its cause. Every key the package issues for, parses or
// takes from a request passes it. On the per-handshake path the keys of
// certificates get the cheaper check without the on-curve test
// (edkey.CheckFast): they were checked in full when certified.
func CheckPublicKey(pub crypto.PublicKey) error { return checkPublicKey(pub, edkey.Check) }

// checkCertKey is CheckPublicKey for the key of a certificate on the
// handshake path.
func checkCertKey(pub crypto.PublicKey) error { return checkPublicKey(pub, edkey.CheckFast) }

func checkPublicKey(pub crypto.PublicKey, edCheck func([]byte) error) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return &UnsupportedKeyError{Algorithm: "Ed25519", Reason: fmt.Sprintf("public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)}
		}
		if err := edCheck(k); err != nil {
			return &UnsupportedKeyError{Algorithm: "Ed25519", Reason: "weak: " + err.Error(), Err: err}
		}
		return nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return &UnsupportedKeyError{Algorithm: "ECDSA", Reason: "nil key"}
		}
		if k.Curve != elliptic.P256() {
			return &UnsupportedKeyError{Algorithm: "ECDSA " + k.Curve.Params().Name, Reason: "curve not accepted"}
		}
		return nil
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return &UnsupportedKeyError{Algorithm: "RSA", Reason: "nil key"}
		}
		bits := k.N.BitLen()
		if bits < 2048 {
			return &UnsupportedKeyError{Algorithm: fmt.Sprintf("RSA-%d", bits), Reason: "weak: below 2048 bits"}
		}
		return &UnsupportedKeyError{Algorithm: fmt.Sprintf("RSA-%d", bits), Reason: "RSA keys are not used in Wasmbed"}
	case nil:
		return &UnsupportedKeyError{Algorithm: "none", Reason: "nil key"}
	}
	return &UnsupportedKeyError{Algorithm: fmt.Sprintf("%T", pub), Reason: "key type not accepted"}
}

// CheckPrivateKey checks the public half of key, see CheckPublicKey.
func CheckPrivateKey(key crypto.Signer) error {
	if key == nil {
		return &UnsupportedKeyError{Algorithm: "none", Reason: "nil key"}
	}
	return CheckPublicKey(key.Public())
}

// KeyAlgorithmName describes pub for humans: "Ed25519", "ECDSA P-256", "RSA-2048", ...
func KeyAlgorithmName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdsa.PublicKey:
		if k != nil && k.Curve != nil {
			return "ECDSA " + k.Curve.Params().Name
		}
		return "ECDSA"
	case *rsa.PublicKey:
		if k != nil && k.N != nil {
			return fmt.Sprintf("RSA-%d", k.N.BitLen())
		}
		return "RSA"
	}
	return fmt.Sprintf("%T", pub)
}

// EncodePublicKey returns the form the Device resource stores in
// spec.publicKey: base64url without padding (RFC 4648 §5) of the key's PKIX
// SubjectPublicKeyInfo DER. Only accepted keys (CheckPublicKey) are encoded.
func EncodePublicKey(pub crypto.PublicKey) (string, error) {
	if err := CheckPublicKey(pub); err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	return encodeChecked(pub)
}

// ParsePublicKey is the inverse of EncodePublicKey. It refuses inputs longer
// than MaxEncodedKeyLen, padded or non-URL base64, trailing DER bytes and keys
// outside the accepted set. The result is ed25519.PublicKey or *ecdsa.PublicKey.
func ParsePublicKey(s string) (crypto.PublicKey, error) {
	if len(s) > MaxEncodedKeyLen {
		return nil, fmt.Errorf("parse public key: %d characters, limit %d: %w", len(s), MaxEncodedKeyLen, ErrTooLarge)
	}
	// Go's base64 decoders skip '\r' and '\n'; a key with them is not
	// canonical and would give two spellings of one key.
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isBase64URL(c) {
			return nil, fmt.Errorf("parse public key: base64url: illegal character %q at offset %d", c, i)
		}
	}
	der, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("parse public key: base64url: %w", err)
	}
	return parsePKIX(der)
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func parsePKIX(der []byte) (crypto.PublicKey, error) {
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	// Canonical form only: re-encoding must give back the same bytes, so two
	// spellings of one key can never map to two Device entries.
	again, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || string(again) != string(der) {
		return nil, errors.New("parse public key: non-canonical SubjectPublicKeyInfo encoding")
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	return pub, nil
}

// PublicKeyFromCert returns the certificate's public key after checking it is
// an accepted algorithm (without the on-curve test of an Ed25519 key, see
// CheckPublicKey). A gateway calls it on the handshake's leaf certificate
// and looks the Device up by EncodePublicKey of the result.
func PublicKeyFromCert(cert *x509.Certificate) (crypto.PublicKey, error) {
	if cert == nil {
		return nil, fmt.Errorf("public key from certificate: %w", ErrNoCertificate)
	}
	if err := checkCertKey(cert.PublicKey); err != nil {
		return nil, fmt.Errorf("public key from certificate %q: %w", cert.Subject.CommonName, err)
	}
	return cert.PublicKey, nil
}

// Fingerprint returns the lowercase hex SHA-256 of pub's SubjectPublicKeyInfo
// DER: stable across certificates for the same key, so it names a device key
// in logs, revocation lists and metrics.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// CertFingerprint returns the lowercase hex SHA-256 of the certificate's DER.
func CertFingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// subjectKeyID returns the leftmost 160 bits of the SHA-256 of the key's
// SubjectPublicKeyInfo DER (in the spirit of RFC 7093): stable per key.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return sum[:20], nil
}

// encodeChecked is EncodePublicKey for a key already checked.
func encodeChecked(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(der), nil
}
