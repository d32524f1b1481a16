package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
)

// Enrollment proof of possession.
//
// A new device proves at enrollment that it holds the private half of the
// identity key it enrolls and binds its X25519 sealing key to that identity
// and to the enrollment connection:
//
//   - its EnrollRequest carries a certificate request signed by the identity
//     key (checked by IssueDeviceFromCSR with the request's key as expected
//     key);
//   - it signs, with the identity key, a domain-separated message holding a
//     TLS exporter value of the enrollment connection (EnrollmentBinding)
//     and the sealing key (SignSealingKeyProof); the gateway checks it with
//     VerifySealingKeyProof against its own exporter value of the same
//     connection.
//
// The exporter value is known only to the two ends of one TLS connection,
// so a proof cannot be replayed on another connection, and without the
// identity private key nobody — not even someone who knows a pre-registered
// device's public key — can enroll that key with a sealing key of their own
// and receive what is sealed for the device.

// EnrollmentExporterLabel is the TLS exporter label (RFC 8446 section 7.5)
// of the enrollment binding.
const EnrollmentExporterLabel = "EXPORTER-wasmbed-enrollment-v1"

// EnrollmentBindingSize is the length of an enrollment binding, in bytes.
const EnrollmentBindingSize = 32

// sealingKeyProofContext starts every signed sealing-key proof message.
const sealingKeyProofContext = "wasmbed/sealing-key-proof/v1"

// SealingKeySize is the length of a device's X25519 sealing public key.
const SealingKeySize = 32

// ErrSealingKeyProof means a sealing-key proof is missing, malformed or does not
// verify under the device's identity key for this connection.
var ErrSealingKeyProof = errors.New("sealing key proof invalid")

// EnrollmentBinding returns the TLS exporter value that binds an enrollment
// proof to the connection cs describes: EnrollmentBindingSize bytes
// exported under EnrollmentExporterLabel, without context. Both ends compute
// it after the handshake; it requires TLS 1.3.
func EnrollmentBinding(cs tls.ConnectionState) ([]byte, error) {
	if !cs.HandshakeComplete {
		return nil, errors.New("enrollment binding: handshake not complete")
	}
	if cs.Version != tls.VersionTLS13 {
		return nil, fmt.Errorf("enrollment binding: TLS version %#04x, want TLS 1.3", cs.Version)
	}
	b, err := cs.ExportKeyingMaterial(EnrollmentExporterLabel, nil, EnrollmentBindingSize)
	if err != nil {
		return nil, fmt.Errorf("enrollment binding: %w", err)
	}
	return b, nil
}

// SealingKeyProofMessage returns the message a sealing-key proof signs:
//
//	"wasmbed/sealing-key-proof/v1" || 0x00
//	|| len32(identity SPKI DER) || identity SPKI DER
//	|| len32(binding) || binding
//	|| len32(sealing key) || sealing key
//
// (len32 is a big-endian uint32). Naming the identity key inside the
// message keeps a signature from being moved to another key; the binding
// ties it to one TLS connection.
func SealingKeyProofMessage(identity crypto.PublicKey, binding, sealingKey []byte) ([]byte, error) {
	if err := CheckPublicKey(identity); err != nil {
		return nil, fmt.Errorf("sealing key proof: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(identity)
	if err != nil {
		return nil, fmt.Errorf("sealing key proof: %w", err)
	}
	if len(binding) != EnrollmentBindingSize {
		return nil, fmt.Errorf("%w: binding of %d bytes, want %d", ErrSealingKeyProof, len(binding), EnrollmentBindingSize)
	}
	if len(sealingKey) != SealingKeySize {
		return nil, fmt.Errorf("%w: sealing key of %d bytes, want %d", ErrSealingKeyProof, len(sealingKey), SealingKeySize)
	}
	msg := make([]byte, 0, len(sealingKeyProofContext)+1+12+len(spki)+len(binding)+len(sealingKey))
	msg = append(msg, sealingKeyProofContext...)
	msg = append(msg, 0)
	for _, part := range [][]byte{spki, binding, sealingKey} {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(part))) //nolint:gosec // bounded above
		msg = append(msg, part...)
	}
	return msg, nil
}

// SignSealingKeyProof signs the sealing-key proof of a device with its
// identity key: Ed25519 over the message, or ECDSA P-256 (ASN.1) over its
// SHA-256.
func SignSealingKeyProof(identity crypto.Signer, binding, sealingKey []byte) ([]byte, error) {
	if err := CheckPrivateKey(identity); err != nil {
		return nil, fmt.Errorf("sealing key proof: %w", err)
	}
	msg, err := SealingKeyProofMessage(identity.Public(), binding, sealingKey)
	if err != nil {
		return nil, err
	}
	var sig []byte
	switch identity.Public().(type) {
	case ed25519.PublicKey:
		sig, err = identity.Sign(rand.Reader, msg, crypto.Hash(0))
	default:
		sum := sha256.Sum256(msg)
		sig, err = identity.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("sealing key proof: sign: %w", err)
	}
	return sig, nil
}

// VerifySealingKeyProof checks that proof is identity's signature over the
// sealing-key proof message for binding (the gateway's own
// EnrollmentBinding of the connection the request came on) and sealingKey.
// Any failure matches ErrSealingKeyProof, except a key outside the accepted
// set (ErrUnsupportedKey).
func VerifySealingKeyProof(identity crypto.PublicKey, binding, sealingKey, proof []byte) error {
	if len(proof) == 0 {
		return fmt.Errorf("%w: no proof", ErrSealingKeyProof)
	}
	msg, err := SealingKeyProofMessage(identity, binding, sealingKey)
	if err != nil {
		return err
	}
	ok := false
	switch k := identity.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, proof)
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(k, sum[:], proof)
	}
	if !ok {
		return fmt.Errorf("%w: signature does not verify", ErrSealingKeyProof)
	}
	return nil
}

// PublicKeyFromRaw decodes an identity key in the raw form the enrollment
// request carries: 32 bytes for Ed25519, a 65-byte uncompressed SEC 1
// point for ECDSA P-256. The key must be accepted (CheckPublicKey).
func PublicKeyFromRaw(alg KeyAlgorithm, raw []byte) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch alg {
	case Ed25519:
		if len(raw) != ed25519.PublicKeySize {
			return nil, &UnsupportedKeyError{Algorithm: "Ed25519", Reason: fmt.Sprintf("public key is %d bytes, want %d", len(raw), ed25519.PublicKeySize)}
		}
		pub = ed25519.PublicKey(append([]byte(nil), raw...))
	case ECDSAP256:
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return nil, &UnsupportedKeyError{Algorithm: "ECDSA P-256", Reason: "not an uncompressed point on the curve", Err: err}
		}
		pub = k
	default:
		return nil, &UnsupportedKeyError{Algorithm: string(alg), Reason: "unknown algorithm name"}
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// RawPublicKey is the inverse of PublicKeyFromRaw: the key's algorithm and
// raw form, for an enrollment request.
func RawPublicKey(pub crypto.PublicKey) (KeyAlgorithm, []byte, error) {
	if err := CheckPublicKey(pub); err != nil {
		return "", nil, err
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Ed25519, append([]byte(nil), k...), nil
	case *ecdsa.PublicKey:
		raw, err := k.Bytes()
		if err != nil {
			return "", nil, fmt.Errorf("raw public key: %w", err)
		}
		return ECDSAP256, raw, nil
	}
	return "", nil, &UnsupportedKeyError{Algorithm: fmt.Sprintf("%T", pub), Reason: "key type not accepted"}
}
