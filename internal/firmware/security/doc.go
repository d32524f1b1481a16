// Package security is the device's security manager: its identity key
// pair, its X25519 sealing key, its enrollment (device id, certificate
// chain, pinned platform signing and sealing keys) and the replay marks of
// deploy artifacts, all kept in the device's flash store, and the
// verification and decryption of what the platform sends.
//
// # Keys and enrollment
//
// On first boot [Open] draws an Ed25519 identity seed and an X25519
// sealing key from the injected randomness (the simulator seeds it per
// device, so fleets are reproducible) and stores both in one flash
// transaction. [Manager.EnrollRequest] proves possession of the identity
// key (a certificate request signed by it) and binds the sealing key to it
// and to the enrollment connection (pki.SignSealingKeyProof).
// [Manager.Enroll] checks the gateway's answer — a valid device id, a
// certificate chain whose leaf certifies this device's key and id,
// well-formed platform keys — and stores it in one transaction. The
// platform keys are pinned once: an enrollment of a device that already
// trusts a set keeps that set and ignores (logs, counts) any other key.
// The Manager implements the client's Identity and Renewer interfaces.
// [Manager.NeedsRenewal] tells when the certificate enters its renewal
// window (pki.RenewAt) by the device clock.
//
// # Artifacts
//
// [Manager.VerifyArtifact] verifies a deploy artifact with
// internal/artifact against the pinned keys, the device id, the device
// clock and the replay marks, opening a confidential module with
// internal/seal, and returns the verified module with the flash update
// that raises its replay mark ([Verified]).
// A refusal is a *[RefusalError] with a typed [Refusal] (malformed, too
// large, unknown signer, bad signature, wrong device, replay, downgrade,
// expired, not yet valid, hash mismatch, decryption failed, wrong
// application, not enrolled) that maps onto the protocol's reason codes,
// is logged precisely, counted, and leaves flash untouched; the peer gets
// the vague PeerMessage.
//
// # Replay marks
//
// The highest sequence accepted per application is kept in its own flash
// key, r:<app> (a big-endian uint64). The raised mark travels as
// [Verified.Mark] and is committed in the same flash transaction as the
// install's outcome, so a power cut never leaves a mark without its install
// nor an install without its mark. Marks survive removal of the
// application; a damaged mark stops the device from booting (ErrDamaged)
// rather than being forgotten.
package security
