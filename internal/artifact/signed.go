package artifact

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// MaxKeyMaterialSize bounds Signed.KeyMaterial.
const MaxKeyMaterialSize = 1 << 10

// Signed is a deploy artifact on the wire: the manifest's exact bytes, the
// Ed25519 signature over them, the payload — the plaintext module, or the
// sealed module when the manifest says Confidential — and, for format 2, the
// content key wrapped for the device.
//
// Its CBOR form is the map {1: manifest, 2: signature, 3: payload} (format 1)
// or {1: manifest, 2: signature, 3: payload, 4: key material} (format 2),
// every value a byte string, in canonical encoding.
type Signed struct {
	// Manifest is the canonical CBOR encoding of the Manifest.
	Manifest []byte `cbor:"1,keyasint"`
	// Signature is the Ed25519 signature over SigningMessage (format 1) or
	// SigningMessageSealedContent (format 2).
	Signature []byte `cbor:"2,keyasint"`
	// Payload is the module, the sealed module blob (format 1) or the
	// content blob (format 2).
	Payload []byte `cbor:"3,keyasint"`
	// KeyMaterial is, in format 2, the content key wrapped to the device's
	// sealing key (seal.WrapKey); empty otherwise.
	KeyMaterial []byte `cbor:"4,keyasint,omitempty"`
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
// manifests above MaxManifestSize, signatures of the wrong size, and any
// encoding but the canonical one. The returned slices alias data: nothing is
// copied, which matters on a device holding a module near its memory limit.
//
// The envelope is fixed (a three- or four-entry map with keys 1, 2, 3 and 4 in
// order, each value a definite-length byte string), so it is parsed directly;
// only the canonical form is accepted, hence Marshal(Unmarshal(b)) == b.
func Unmarshal(data []byte, maxSize int) (*Signed, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if len(data) > maxSize {
		return nil, refuse(ErrTooLarge, "artifact is %d bytes, limit %d", len(data), maxSize)
	}
	if len(data) == 0 || (data[0] != 0xa3 && data[0] != 0xa4) { // map of 3 or 4 pairs
		return nil, refuse(ErrMalformed, "artifact is not a 3- or 4-entry CBOR map")
	}
	p := data[1:]
	var fields [4][]byte
	for i := range int(data[0] - 0xa0) {
		if len(p) == 0 || p[0] != byte(i+1) { // unsigned integer key i+1
			return nil, refuse(ErrMalformed, "artifact entry %d: want key %d", i, i+1)
		}
		b, rest, err := readByteString(p[1:])
		if err != nil {
			return nil, &Error{Err: ErrMalformed, Detail: fmt.Sprintf("artifact key %d", i+1), Cause: err}
		}
		fields[i], p = b, rest
	}
	if len(p) != 0 {
		return nil, refuse(ErrMalformed, "%d trailing bytes after the artifact", len(p))
	}
	s := &Signed{Manifest: fields[0], Signature: fields[1], Payload: fields[2], KeyMaterial: fields[3]}
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
	if data[0] == 0xa4 && len(s.KeyMaterial) == 0 {
		return nil, refuse(ErrMalformed, "empty key material")
	}
	if len(s.KeyMaterial) > MaxKeyMaterialSize {
		return nil, refuse(ErrTooLarge, "key material is %d bytes, limit %d", len(s.KeyMaterial), MaxKeyMaterialSize)
	}
	return s, nil
}

// readByteString reads one definite-length CBOR byte string with a minimal
// length header and returns its content (capacity clipped) and the rest.
func readByteString(p []byte) (b, rest []byte, err error) {
	if len(p) == 0 {
		return nil, nil, errors.New("truncated")
	}
	if p[0]>>5 != 2 {
		return nil, nil, fmt.Errorf("major type %d, want byte string", p[0]>>5)
	}
	var n uint64
	hdr := 1
	switch ai := p[0] & 0x1f; {
	case ai < 24:
		n = uint64(ai)
	case ai <= 27:
		hdr += 1 << (ai - 24)
		if len(p) < hdr {
			return nil, nil, errors.New("truncated length")
		}
		for _, c := range p[1:hdr] {
			n = n<<8 | uint64(c)
		}
		minimum := [...]uint64{24, 1 << 8, 1 << 16, 1 << 32}[ai-24]
		if n < minimum {
			return nil, nil, errors.New("length not in its shortest form")
		}
	default:
		return nil, nil, fmt.Errorf("additional information %d (indefinite or reserved)", ai)
	}
	if n > uint64(len(p)-hdr) { //nolint:gosec // len(p) >= hdr is checked above
		return nil, nil, fmt.Errorf("byte string of %d bytes, %d left", n, len(p)-hdr)
	}
	end := hdr + int(n) //nolint:gosec // n <= len(p)
	return p[hdr:end:end], p[end:], nil
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

// signingContextSealedContent separates format 2 signatures from format 1
// ones and from any other use of the platform key.
const signingContextSealedContent = "wasmbed/artifact/v2"

// SigningMessageSealedContent returns the bytes a format 2 signature covers:
// a context string, then the length-prefixed manifest bytes, then the
// length-prefixed key material. Signing the key material means no one but the
// signer can hand a device a content key, even a holder of the platform
// sealing key.
func SigningMessageSealedContent(manifest, keyMaterial []byte) []byte {
	b := make([]byte, 0, len(signingContextSealedContent)+1+4+len(manifest)+4+len(keyMaterial))
	b = append(b, signingContextSealedContent...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(manifest))) //nolint:gosec // bounded by MaxManifestSize
	b = append(b, manifest...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keyMaterial))) //nolint:gosec // bounded by MaxKeyMaterialSize
	b = append(b, keyMaterial...)
	return b
}

// KeyMaterialAAD returns the associated data a format 2 artifact's content key
// is wrapped with for its device: a label and the SHA-256 of the exact
// manifest bytes, which name the device, application, version and sequence
// and hash the payload. A wrapped key therefore opens under no other
// manifest.
func KeyMaterialAAD(manifest []byte) []byte {
	const label = "wasmbed/artifact-key/v2"
	sum := sha256.Sum256(manifest)
	b := make([]byte, 0, len(label)+1+len(sum))
	b = append(b, label...)
	b = append(b, 0)
	return append(b, sum[:]...)
}
