// Package artifact builds, signs and verifies deploy artifacts: a WebAssembly
// module with the manifest that says what it is, who it is for and how far it
// may run.
//
// # Format
//
// A [Manifest] is encoded as a canonical CBOR map with small integer keys
// (application, version, SHA-256 and size of the plaintext module, limits,
// target device id, sequence, issue and expiry times, signer key id, the
// confidential flag and, for confidential modules, the SHA-256 of the sealed
// module). The artifact on the wire is a [Signed] value holding the manifest's
// exact bytes, an Ed25519 signature and the payload:
//
//	Signed    = {1: manifest bytes, 2: signature (64 bytes), 3: payload}
//	signature = Ed25519(platform key, "wasmbed/artifact/v1" || 0x00 ||
//	                    len32(manifest) || manifest || len32(aad) || aad)
//
// For a plaintext module the payload is the module and aad is empty. For a
// confidential module the payload is the module sealed for the target device
// (package seal, purpose module) with aad = [Manifest.AAD]: the device id,
// application, version and sequence, and the SHA-256 of the manifest without
// its ciphertext hash. The manifest then carries the SHA-256 of the sealed
// blob, so the signature covers the manifest, the sealing context and the
// exact ciphertext: nothing can be swapped between artifacts or devices.
//
// Decoding is bounded (size checked before decoding, nesting, map and array
// sizes) and strict: duplicate or unknown keys, indefinite lengths, tags,
// null and any non-canonical encoding are refused, so every artifact has one
// byte form.
//
// # Signing and verifying
//
// The platform signs with a [Signer]; a device verifies with a [Verifier] that
// holds the pinned signing keys (several, for rotation, identified by
// [KeyID]), its own id, its sealing [seal.Opener] and a clock:
//
//	data, m, err := signer.Sign(artifact.Manifest{App: "sensor", ...}, module,
//		artifact.SignOptions{Sealer: deviceSealer})
//	...
//	a, err := verifier.Verify(data, marks)
//	if err != nil {
//		log.Warn("artifact refused", "err", err)              // precise
//		reply(artifact.PeerMessage(err))                      // vague
//	}
//	// install a.Module and, in the same flash transaction, raise
//	// a.Manifest.App's mark to a.Manifest.Sequence
//
// # Replay and downgrade
//
// Sequences are per application and per device: the device accepts an
// artifact only if its sequence is above the last one it accepted for that
// application, which it reads through a [SequenceStore]. Verify itself
// changes nothing; the caller raises the mark when the install is
// committed, so a failed install can be retried with the same artifact.
// [NextSequence] gives issuers sequences that never go back.
//
// # Errors
//
// Every refusal is an *[Error] matching one sentinel error. Its text is
// precise and for local logs; [PeerMessage] is what to tell the gateway, and
// reports all authenticity failures alike.
package artifact
