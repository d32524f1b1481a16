// Package seal encrypts sensitive payloads — confidential WebAssembly modules
// and configuration secrets — for one device, with AES-256-GCM under keys
// agreed by X25519 and derived with HKDF-SHA256.
//
// # Keys
//
// The platform holds a static X25519 sealing key S; its public half is pinned
// by every device at enrollment (protocol.EnrollResponse.SealingKey). Each
// device generates, at enrollment, its own static X25519 key D, separate from
// its identity (certificate) key, and sends the public half to the platform,
// which records it on the Device. The identity key signs TLS handshakes and is
// never used for key agreement.
//
// A [Sealer] (platform side) seals for one device. It draws a fresh ephemeral
// X25519 key E when it is created and on every [Sealer.Rekey], and derives, for
// each [Purpose], an AES-256 key:
//
//	ikm  = X25519(e, D) || X25519(s, D)
//	prk  = HKDF-Extract(SHA-256, salt = "wasmbed/seal/v1", ikm)
//	key  = HKDF-Expand(SHA-256, prk,
//	         info = "wasmbed/seal/v1 " || label || 0x00 || E || S || D, 32)
//
// where label is "module" or "config". The ephemeral term gives every Sealer
// epoch a fresh key (and forward secrecy against a later theft of S alone);
// the static term authenticates the sender: only a holder of S can produce a
// blob the device opens (the HPKE "auth" mode construction). Module and config
// keys differ because their info strings differ.
//
// # Nonces
//
// The 96-bit GCM nonce is the 32-bit big-endian purpose followed by a 64-bit
// big-endian message counter that starts at 0 for every key. The counter is an
// atomic in-memory value: it lives exactly as long as the key it counts for,
// since the ephemeral key is never stored. A restarted process, another gateway
// replica or a Rekey always starts a new key, so no counter ever has to be
// persisted or coordinated, and a (key, nonce) pair can never repeat. A key
// seals at most [MaxMessagesPerKey] (2^32) messages and [MaxBytesPerKey]
// (2^36) bytes per purpose; past either, Seal fails with [ErrKeyExhausted] and
// the caller must call Rekey.
//
// # Sealed blob
//
//	offset  size  field
//	0       1     format version (1)
//	1       1     purpose
//	2       8     sender key id: SHA-256(S)[:8]
//	10      32    ephemeral public key E
//	42      12    nonce: purpose (4) || counter (8)
//	54      n+16  AES-256-GCM ciphertext and tag
//
// The GCM additional data is the 54-byte header followed by the caller's
// associated data, which is not transmitted: the opener rebuilds it from the
// context (see [ConfigAAD]; deploy artifacts bind device, application,
// version, sequence and manifest hash).
//
// An [Opener] (device side) opens blobs with D and the pinned platform keys. It
// checks size and structure before any cryptography, and caches the derived
// keys of the last few epochs so a burst of messages costs one X25519 each
// epoch. Opening gives no replay protection: the signed artifact sequence and
// the configuration generation provide it.
//
// # Version 2: content keys and recipients
//
// A payload meant for many devices — a confidential module — is encrypted
// once with [EncryptContent] under a fresh random [ContentKey]; the content
// key alone is wrapped for each recipient with [WrapKey] (an ephemeral X25519
// agreement with the recipient's public key, as age wraps its file key for
// each recipient), and opened with [UnwrapKey] or [Opener.UnwrapKey]. The
// formats are described in content.go. Version 2 uses no platform sealing
// key: whoever carries the wrapped key must authenticate it, as the signed
// artifact does.
//
// # Errors
//
// Refusals are *[Error] values matching a sentinel ([ErrTooLarge],
// [ErrMalformed], [ErrUnknownSender], [ErrDecrypt], [ErrKeyExhausted]); their
// Error text is precise, for local logs. [PeerMessage] gives the vague text to
// send to a peer: every authentication failure reads the same.
package seal
