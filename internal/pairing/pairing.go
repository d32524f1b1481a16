// Package pairing holds the pairing window: the period, opened by an
// administrator, during which gateways accept enrollments of new devices and
// the controller signs their first certificates.
//
// The window lives in Kubernetes, in the ConfigMap named
// wasmbedv1.PairingConfigMap in the system namespace, so that every gateway
// replica and the controller agree on it. This package converts it to and from
// that ConfigMap's data and answers the two questions asked of it: is it open
// now, and does a pairing token match. It has no Kubernetes dependency.
//
//	w, err := pairing.Parse(cm.Data)
//	if !w.OpenAt(now) { refuse }
//	if !w.TokenMatches(req.PairingToken) { refuse }
package pairing

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ConfigMap data keys.
const (
	// KeyOpenUntil holds the end of the window, RFC 3339; absent or empty
	// means closed.
	KeyOpenUntil = "openUntil"
	// KeyTokenSHA256 holds the lower-case hex SHA-256 of the pairing token
	// enrolling devices must present; absent means no token is required.
	KeyTokenSHA256 = "tokenSHA256"
	// KeyOpenedBy records who opened the window, for audit.
	KeyOpenedBy = "openedBy"
	// KeyOpenedAt records when the window was opened, RFC 3339.
	KeyOpenedAt = "openedAt"
)

// Bounds of a window.
const (
	// MaxDuration is the longest a window may stay open.
	MaxDuration = 24 * time.Hour
	// DefaultDuration is the length of a window opened without one.
	DefaultDuration = 15 * time.Minute
	// TokenSize is the length of generated pairing tokens, in bytes.
	TokenSize = 16
	// MaxTokenSize bounds a presented pairing token.
	MaxTokenSize = 256
)

// ErrMalformed reports window data that does not parse.
var ErrMalformed = errors.New("pairing: malformed window")

// Window is a pairing window. The zero Window is closed.
type Window struct {
	// OpenUntil is the end of the window; zero means closed.
	OpenUntil time.Time
	// OpenedAt is when the window was opened.
	OpenedAt time.Time
	// OpenedBy names who opened it.
	OpenedBy string
	// TokenSHA256 is the SHA-256 of the required pairing token, or nil when
	// no token is required.
	TokenSHA256 []byte
}

// Open returns a window open from now for d (DefaultDuration when zero),
// requiring token when it is non-empty.
func Open(now time.Time, d time.Duration, openedBy string, token []byte) (Window, error) {
	if d == 0 {
		d = DefaultDuration
	}
	if d < 0 || d > MaxDuration {
		return Window{}, fmt.Errorf("pairing: duration %v outside (0, %v]", d, MaxDuration)
	}
	if len(token) > MaxTokenSize {
		return Window{}, fmt.Errorf("pairing: token of %d bytes, more than %d", len(token), MaxTokenSize)
	}
	w := Window{OpenUntil: now.Add(d).Truncate(time.Second), OpenedAt: now.Truncate(time.Second), OpenedBy: openedBy}
	if len(token) > 0 {
		sum := sha256.Sum256(token)
		w.TokenSHA256 = sum[:]
	}
	return w, nil
}

// NewToken returns a random pairing token, hex encoded.
func NewToken() (string, error) {
	b := make([]byte, TokenSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pairing: token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Parse reads a window from ConfigMap data. Missing data is a closed window.
func Parse(data map[string]string) (Window, error) {
	var w Window
	if s := data[KeyOpenUntil]; s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return Window{}, fmt.Errorf("%w: %s: %w", ErrMalformed, KeyOpenUntil, err)
		}
		w.OpenUntil = t
	}
	if s := data[KeyOpenedAt]; s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return Window{}, fmt.Errorf("%w: %s: %w", ErrMalformed, KeyOpenedAt, err)
		}
		w.OpenedAt = t
	}
	w.OpenedBy = data[KeyOpenedBy]
	if s := data[KeyTokenSHA256]; s != "" {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != sha256.Size {
			return Window{}, fmt.Errorf("%w: %s is not a hex SHA-256", ErrMalformed, KeyTokenSHA256)
		}
		w.TokenSHA256 = b
	}
	return w, nil
}

// Data returns the window as ConfigMap data.
func (w Window) Data() map[string]string {
	d := map[string]string{}
	if !w.OpenUntil.IsZero() {
		d[KeyOpenUntil] = w.OpenUntil.UTC().Format(time.RFC3339)
	}
	if !w.OpenedAt.IsZero() {
		d[KeyOpenedAt] = w.OpenedAt.UTC().Format(time.RFC3339)
	}
	if w.OpenedBy != "" {
		d[KeyOpenedBy] = w.OpenedBy
	}
	if len(w.TokenSHA256) > 0 {
		d[KeyTokenSHA256] = hex.EncodeToString(w.TokenSHA256)
	}
	return d
}

// OpenAt reports whether the window is open at t.
func (w Window) OpenAt(t time.Time) bool {
	return !w.OpenUntil.IsZero() && t.Before(w.OpenUntil)
}

// TokenRequired reports whether enrolling devices must present a token.
func (w Window) TokenRequired() bool { return len(w.TokenSHA256) > 0 }

// TokenMatches reports whether token is acceptable: any token when none is
// required, else one whose SHA-256 matches, compared in constant time.
func (w Window) TokenMatches(token []byte) bool {
	if !w.TokenRequired() {
		return true
	}
	if len(token) == 0 || len(token) > MaxTokenSize {
		return false
	}
	sum := sha256.Sum256(token)
	return subtle.ConstantTimeCompare(sum[:], w.TokenSHA256) == 1
}
