package artifact

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal from Verifier.Verify matches exactly one of
// them with errors.Is.
var (
	// ErrTooLarge: the artifact, its manifest or its payload exceeds a size
	// limit. Checked before anything is decoded.
	ErrTooLarge = errors.New("artifact: too large")
	// ErrMalformed: the bytes are not a canonical, well-formed artifact.
	ErrMalformed = errors.New("artifact: malformed")
	// ErrUnknownSigner: the manifest names a signing key the device does not
	// trust.
	ErrUnknownSigner = errors.New("artifact: unknown signer")
	// ErrBadSignature: the Ed25519 signature does not verify.
	ErrBadSignature = errors.New("artifact: bad signature")
	// ErrWrongDevice: the artifact is addressed to another device.
	ErrWrongDevice = errors.New("artifact: addressed to another device")
	// ErrReplay: the artifact's sequence equals the last one accepted for
	// its application.
	ErrReplay = errors.New("artifact: replayed sequence")
	// ErrDowngrade: the artifact's sequence is below the last one accepted
	// for its application.
	ErrDowngrade = errors.New("artifact: older sequence")
	// ErrExpired: the device clock is at or past the artifact's expiry.
	ErrExpired = errors.New("artifact: expired")
	// ErrNotYetValid: the artifact's issue time is ahead of the device clock
	// by more than the allowed skew.
	ErrNotYetValid = errors.New("artifact: not yet valid")
	// ErrHashMismatch: the module (or sealed module) does not match the
	// hash and size in the signed manifest.
	ErrHashMismatch = errors.New("artifact: module hash mismatch")
	// ErrDecrypt: a confidential module could not be opened.
	ErrDecrypt = errors.New("artifact: decryption failed")
)

// Error is a refusal. It matches its sentinel (Err) and, when set, the
// underlying cause with errors.Is. Its Error text is precise and meant for
// local logs only; use PeerMessage for what to tell a peer.
type Error struct {
	// Err is one of the package's sentinel errors.
	Err error
	// Detail says precisely what failed (local logs only).
	Detail string
	// Cause is the underlying error, if any.
	Cause error
	// Manifest is the artifact's manifest when the refusal came after the
	// signature verified (wrong device, replay, downgrade, expiry, hash,
	// decryption), nil otherwise. A device that finds ErrReplay with the
	// manifest of the artifact it already runs can answer as if installed.
	Manifest *Manifest
}

// Error returns the precise message, for local logs.
func (e *Error) Error() string {
	msg := e.Err.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap returns the sentinel and the cause.
func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

func refuse(sentinel error, format string, args ...any) *Error {
	return &Error{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// PeerMessage returns the text to send to the peer for a Verify error.
//
// Failures of authenticity — unknown signer, bad signature, hash mismatch —
// all read "authentication failed", so a forger learns nothing about which
// check stopped it. Refusals that can only follow a valid signature (wrong
// device, replay, downgrade, expiry, decryption) and size or encoding
// problems are named: they reveal nothing a signer does not already know.
func PeerMessage(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooLarge):
		return "artifact too large"
	case errors.Is(err, ErrMalformed):
		return "malformed artifact"
	case errors.Is(err, ErrUnknownSigner), errors.Is(err, ErrBadSignature), errors.Is(err, ErrHashMismatch):
		return "authentication failed"
	case errors.Is(err, ErrWrongDevice):
		return "wrong device"
	case errors.Is(err, ErrReplay), errors.Is(err, ErrDowngrade):
		return "stale sequence"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrNotYetValid):
		return "not yet valid"
	case errors.Is(err, ErrDecrypt):
		return "decryption failed"
	default:
		return "internal error"
	}
}
