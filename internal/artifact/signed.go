package artifact

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Signed is a deploy artifact on the wire: the manifest's exact bytes, the
// Ed25519 signature over them, and the payload — the plaintext module, or the
// sealed module when the manifest says Confidential.
//
// Its CBOR form is the map {1: manifest, 2: signature, 3: payload}, every value
// a byte string, in canonical encoding.
type Signed struct {
	// Manifest is the canonical CBOR encoding of the Manifest.
	Manifest []byte `cbor:"1,keyasint"`
	// Signature is the Ed25519 signature over SigningMessage.
	Signature []byte `cbor:"2,keyasint"`
	// Payload is the module, or the sealed module blob.
	Payload []byte `cbor:"3,keyasint"`
}

// Marshal returns s's canonical CBOR encoding.
func (s *Signed) Marshal() ([]byte, error) {
	b, err := encMode.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("artifact: encode: %w", err)
	}
	return b, nil
}

// Unmarshal decodes an encoded artifact without verifying it. It refuses
// input above maxSize (DefaultMaxSize when maxSize <= 0) before decoding,
// manifests above MaxManifestSize, signatures of the wrong size, and
// non-canonical encodings.
func Unmarshal(data []byte, maxSize int) (*Signed, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(data) > maxSize {
		return nil, refuse(ErrTooLarge, "artifact is %d bytes, limit %d", len(data), maxSize)
	}
	var s Signed
	if err := decMode.Unmarshal(data, &s); err != nil {
		return nil, &Error{Err: ErrMalformed, Detail: "decode artifact", Cause: err}
	}
	if len(s.Manifest) > MaxManifestSize {
		return nil, refuse(ErrTooLarge, "manifest is %d bytes, limit %d", len(s.Manifest), MaxManifestSize)
	}
	if len(s.Manifest) == 0 {
		return nil, refuse(ErrMalformed, "no manifest")
	}
	if len(s.Signature) != SignatureSize {
		return nil, refuse(ErrMalformed, "signature is %d bytes, want %d", len(s.Signature), SignatureSize)
	}
	if len(s.Payload) == 0 {
		return nil, refuse(ErrMalformed, "no payload")
	}
	canon, err := encMode.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("artifact: re-encode: %w", err)
	}
	if !bytes.Equal(canon, data) {
		return nil, refuse(ErrMalformed, "artifact encoding is not canonical")
	}
	return &s, nil
}

// signingContext separates artifact signatures from any other use of the
// platform key.
const signingContext = "wasmbed/artifact/v1"

// SigningMessage returns the bytes the Ed25519 signature covers: a context
// string, then the length-prefixed manifest bytes, then the length-prefixed
// sealing AAD (empty for plaintext modules).
func SigningMessage(manifest, aad []byte) []byte {
	b := make([]byte, 0, len(signingContext)+1+4+len(manifest)+4+len(aad))
	b = append(b, signingContext...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(manifest))) //nolint:gosec // bounded by MaxManifestSize
	b = append(b, manifest...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(aad))) //nolint:gosec // bounded by the manifest size
	b = append(b, aad...)
	return b
}
