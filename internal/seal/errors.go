package seal

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package's Seal and Open
// methods matches exactly one of them with errors.Is.
var (
	// ErrTooLarge: the plaintext or sealed blob exceeds the size limit.
	ErrTooLarge = errors.New("seal: payload too large")
	// ErrMalformed: the sealed blob is structurally invalid (length, version,
	// purpose, nonce layout).
	ErrMalformed = errors.New("seal: malformed sealed blob")
	// ErrUnknownSender: the blob names a platform key the opener does not
	// trust.
	ErrUnknownSender = errors.New("seal: unknown sender key")
	// ErrDecrypt: authentication failed — wrong key, wrong purpose, wrong
	// associated data or tampered bytes.
	ErrDecrypt = errors.New("seal: decryption failed")
	// ErrKeyExhausted: the key has sealed MaxMessagesPerKey messages for a
	// purpose; call Sealer.Rekey.
	ErrKeyExhausted = errors.New("seal: key exhausted, rekey required")
	// ErrInvalidKey: a key given to NewSealer or NewOpener is unusable (wrong
	// curve, low-order point).
	ErrInvalidKey = errors.New("seal: invalid key")
)

// Error is a refusal with a precise, local-only detail. It matches its
// sentinel (Err) and, when set, the underlying cause with errors.Is.
type Error struct {
	// Err is one of the package's sentinel errors.
	Err error
	// Detail says precisely what failed. It is meant for local logs and
	// must not be sent to a peer (see PeerMessage).
	Detail string
	// Cause is the underlying error, if any.
	Cause error
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

func newError(sentinel error, format string, args ...any) *Error {
	return &Error{Err: sentinel, Detail: fmt.Sprintf(format, args...)}
}

// PeerMessage returns the text to send to a peer for err. Authentication
// failures (unknown sender, decryption failure) read the same, so a peer
// learns nothing about which check failed; size and structure problems are
// named, as they reveal nothing secret.
func PeerMessage(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooLarge):
		return "sealed payload too large"
	case errors.Is(err, ErrMalformed):
		return "malformed sealed payload"
	case errors.Is(err, ErrUnknownSender), errors.Is(err, ErrDecrypt), errors.Is(err, ErrInvalidKey):
		return "sealed payload rejected"
	default:
		return "internal error"
	}
}
