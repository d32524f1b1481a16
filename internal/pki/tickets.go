package pki

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session tickets.
//
// A TLS 1.3 session ticket carries the resumption secret and the peer's
// certificates, encrypted under a ticket key. Whoever holds a ticket key can
// mint a ticket for any certificate chain — one of a device it has never
// met, or a forged one — and resume a session as that device: a ticket key
// is as strong as a CA key for impersonation, and must be protected like
// one (docs/pki.md, "Session tickets").
//
// The gateway encrypts tickets itself (tls.Config WrapSession and
// UnwrapSession) under a TicketKeyRing, which gateway replicas share — from
// a Kubernetes Secret, say — and rotate. Besides the session state a ticket
// carries, authenticated:
//
//   - the id of the key that encrypted it: a ticket of a key no longer in
//     the ring is refused, so rotation retires tickets with their key;
//   - its issue time: tickets older than ServerOptions.TicketLifetime are
//     refused (crypto/tls alone would accept them for seven days);
//   - a binding to the verification that admitted the chain: the SHA-256 of
//     the trust configuration (root and device CA) and of the leaf verified
//     in full when the session was established. A resumed handshake skips
//     the chain's signature checks only when the binding matches the
//     configuration in force and the leaf presented; otherwise it verifies
//     in full. A ticket from before a CA change never passes on the fast
//     path.

// TicketKeySize is the length of a session-ticket key.
const TicketKeySize = 32

// MaxTicketKeys bounds the keys a TicketKeyRing holds: the current one
// and those still accepted (the previous one, or one distributed ahead of
// its use).
const MaxTicketKeys = 4

// DefaultTicketLifetime is how long a ticket is accepted after it was
// issued, when ServerOptions.TicketLifetime is zero.
const DefaultTicketLifetime = 24 * time.Hour

// ErrTicketKeys means a ticket key set is malformed or out of bounds.
var ErrTicketKeys = errors.New("invalid session ticket keys")

// TicketKey is one session-ticket key.
type TicketKey struct {
	// Key is the secret.
	Key [TicketKeySize]byte
	// Created is when the key was generated; rotation retires keys by age.
	Created time.Time
}

// NewTicketKey returns a fresh random key created at created.
func NewTicketKey(created time.Time) (TicketKey, error) {
	k := TicketKey{Created: created.UTC().Truncate(time.Second)}
	if _, err := rand.Read(k.Key[:]); err != nil {
		return TicketKey{}, fmt.Errorf("session ticket key: %w", err)
	}
	return k, nil
}

// ID names the key in the tickets it encrypts: the first 8 bytes of a
// SHA-256 of the key. It reveals nothing usable about the key.
func (k TicketKey) ID() [8]byte {
	h := sha256.New()
	h.Write([]byte("wasmbed/ticket-key-id/v1\x00"))
	h.Write(k.Key[:])
	var id [8]byte
	copy(id[:], h.Sum(nil))
	return id
}

// TicketKeyRing holds a gateway's session-ticket keys: the first encrypts
// new tickets, every one decrypts. Replicas that share the keys resume each
// other's sessions. It is safe for concurrent use; ServerTLSConfig reads it
// at every handshake, so SetKeys and Rotate take effect at once.
type TicketKeyRing struct {
	mu   sync.RWMutex
	keys []TicketKey
	// rotateAfter, when positive, has seal replace a current key older
	// than this: the private ring of a config given no ring rotates itself.
	rotateAfter time.Duration
}

// NewTicketKeyRing returns a ring holding keys, the current one first.
func NewTicketKeyRing(keys ...TicketKey) (*TicketKeyRing, error) {
	r := &TicketKeyRing{}
	if err := r.SetKeys(keys...); err != nil {
		return nil, err
	}
	return r, nil
}

// SetKeys replaces the keys, the current one first (for instance after the
// Secret holding them changed).
func (r *TicketKeyRing) SetKeys(keys ...TicketKey) error {
	if len(keys) == 0 || len(keys) > MaxTicketKeys {
		return fmt.Errorf("%w: %d keys, want 1 to %d", ErrTicketKeys, len(keys), MaxTicketKeys)
	}
	seen := map[[8]byte]bool{}
	for i, k := range keys {
		if k.Key == ([TicketKeySize]byte{}) {
			return fmt.Errorf("%w: key %d is all zeros", ErrTicketKeys, i)
		}
		if seen[k.ID()] {
			return fmt.Errorf("%w: key %d repeats an earlier one", ErrTicketKeys, i)
		}
		seen[k.ID()] = true
	}
	r.mu.Lock()
	r.keys = append([]TicketKey(nil), keys...)
	r.mu.Unlock()
	return nil
}

// Rotate makes next the current key and keeps the previous current key to
// decrypt the tickets it issued; older keys are dropped, and with them their
// tickets.
func (r *TicketKeyRing) Rotate(next TicketKey) error {
	r.mu.RLock()
	cur := r.keys[0]
	r.mu.RUnlock()
	return r.SetKeys(next, cur)
}

// Keys returns the keys, the current one first.
func (r *TicketKeyRing) Keys() []TicketKey {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]TicketKey(nil), r.keys...)
}

// Ticket layout:
//
//	0   1   format version (1)
//	1   8   key id (TicketKey.ID)
//	9   16  salt (random)
//	25  n   AES-256-GCM(HMAC-SHA256(key, "wasmbed/ticket/v1" || salt), zero nonce,
//	        u64 issued-at (Unix seconds) || tls.SessionState bytes,
//	        additional data = bytes 0..24)
//
// Every ticket is sealed under its own key, derived from the ring key and
// a random salt, so the zero nonce is never reused under a key.
const (
	ticketVersion    = 1
	ticketHeaderSize = 1 + 8 + 16
	ticketMaxSize    = 64 << 10
)

func ticketAEAD(key *[TicketKeySize]byte, salt []byte) (cipher.AEAD, error) {
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte("wasmbed/ticket/v1"))
	mac.Write(salt)
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts a session state issued at now under the current key.
func (r *TicketKeyRing) seal(state []byte, now time.Time) ([]byte, error) {
	r.mu.RLock()
	key := r.keys[0]
	r.mu.RUnlock()
	if r.rotateAfter > 0 && now.Sub(key.Created) >= r.rotateAfter {
		next, err := NewTicketKey(now)
		if err != nil {
			return nil, err
		}
		if err := r.Rotate(next); err != nil {
			return nil, err
		}
		key = next
	}
	out := make([]byte, ticketHeaderSize, ticketHeaderSize+8+len(state)+16)
	out[0] = ticketVersion
	id := key.ID()
	copy(out[1:9], id[:])
	if _, err := rand.Read(out[9:ticketHeaderSize]); err != nil {
		return nil, fmt.Errorf("session ticket: %w", err)
	}
	aead, err := ticketAEAD(&key.Key, out[9:ticketHeaderSize])
	if err != nil {
		return nil, fmt.Errorf("session ticket: %w", err)
	}
	plain := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(state)), uint64(now.Unix())) //nolint:gosec // times after 1970
	plain = append(plain, state...)
	nonce := make([]byte, aead.NonceSize())
	return aead.Seal(out, nonce, plain, out[:ticketHeaderSize]), nil //nolint:gosec // the AEAD key is derived from a random per-ticket salt: each key seals one ticket
}

// open decrypts a ticket and returns the session state and its issue time;
// ok is false for anything that is not a ticket of a key in the ring.
func (r *TicketKeyRing) open(ticket []byte) (state []byte, issued time.Time, ok bool) {
	if len(ticket) < ticketHeaderSize+8+16 || len(ticket) > ticketMaxSize || ticket[0] != ticketVersion {
		return nil, time.Time{}, false
	}
	var key *TicketKey
	r.mu.RLock()
	for i := range r.keys {
		if id := r.keys[i].ID(); bytes.Equal(id[:], ticket[1:9]) {
			k := r.keys[i]
			key = &k
			break
		}
	}
	r.mu.RUnlock()
	if key == nil {
		return nil, time.Time{}, false
	}
	aead, err := ticketAEAD(&key.Key, ticket[9:ticketHeaderSize])
	if err != nil {
		return nil, time.Time{}, false
	}
	plain, err := aead.Open(nil, make([]byte, aead.NonceSize()), ticket[ticketHeaderSize:], ticket[:ticketHeaderSize])
	if err != nil {
		return nil, time.Time{}, false
	}
	return plain[8:], time.Unix(int64(binary.BigEndian.Uint64(plain[:8])), 0), true //nolint:gosec // written by seal
}

// Ticket key set encoding, for storing a ring's keys (in a Secret):
//
//	0   1   format version (1)
//	1   1   number of keys n, 1..MaxTicketKeys
//	2   40n per key, current first: u64 created (Unix seconds), 32-byte key
const ticketKeysVersion = 1

// MarshalTicketKeys encodes keys (current first) for storage.
func MarshalTicketKeys(keys []TicketKey) ([]byte, error) {
	if len(keys) == 0 || len(keys) > MaxTicketKeys {
		return nil, fmt.Errorf("%w: %d keys, want 1 to %d", ErrTicketKeys, len(keys), MaxTicketKeys)
	}
	out := []byte{ticketKeysVersion, byte(len(keys))} //nolint:gosec // at most MaxTicketKeys, checked above
	for _, k := range keys {
		out = binary.BigEndian.AppendUint64(out, uint64(k.Created.Unix())) //nolint:gosec // times after 1970
		out = append(out, k.Key[:]...)
	}
	return out, nil
}

// ParseTicketKeys decodes what MarshalTicketKeys wrote. It refuses any
// other length, version or count, and key sets SetKeys would refuse.
func ParseTicketKeys(b []byte) ([]TicketKey, error) {
	if len(b) < 2 || b[0] != ticketKeysVersion {
		return nil, fmt.Errorf("%w: not a version %d key set", ErrTicketKeys, ticketKeysVersion)
	}
	n := int(b[1])
	if n == 0 || n > MaxTicketKeys || len(b) != 2+40*n {
		return nil, fmt.Errorf("%w: %d bytes for %d keys", ErrTicketKeys, len(b), n)
	}
	keys := make([]TicketKey, n)
	for i := range keys {
		e := b[2+40*i:]
		created := binary.BigEndian.Uint64(e)
		if created > 1<<40 {
			return nil, fmt.Errorf("%w: key %d created at %d", ErrTicketKeys, i, created)
		}
		keys[i].Created = time.Unix(int64(created), 0).UTC()
		copy(keys[i].Key[:], e[8:40])
	}
	// The same checks as SetKeys.
	if _, err := NewTicketKeyRing(keys...); err != nil {
		return nil, err
	}
	return keys, nil
}

// ticketBindingPrefix starts the tls.SessionState Extra entry binding a
// session to the verification that admitted its peer's chain.
var ticketBindingPrefix = []byte("wasmbed/ticket-binding/v1\x00")

// ticketBinding is the Extra entry: prefix || trust id || SHA-256(leaf).
func ticketBinding(trust [32]byte, leaf *x509.Certificate) []byte {
	b := append(append([]byte(nil), ticketBindingPrefix...), trust[:]...)
	var sum [32]byte
	if leaf != nil {
		sum = sha256.Sum256(leaf.Raw)
	}
	return append(b, sum[:]...)
}

// findBinding returns the leaf hash of the binding made under trust.
func findBinding(extra [][]byte, trust [32]byte) ([]byte, bool) {
	for _, e := range extra {
		if len(e) == len(ticketBindingPrefix)+64 && bytes.HasPrefix(e, ticketBindingPrefix) {
			rest := e[len(ticketBindingPrefix):]
			if bytes.Equal(rest[:32], trust[:]) {
				return rest[32:], true
			}
			return nil, false
		}
	}
	return nil, false
}

// ticketer wraps and unwraps the sessions of one handshake.
type ticketer struct {
	ring     *TicketKeyRing
	trust    [32]byte
	lifetime time.Duration
	now      func() time.Time
	// bound is the leaf hash of the ticket a resumed handshake presented,
	// set by unwrap.
	bound []byte
}

func (t *ticketer) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	var leaf *x509.Certificate
	if len(cs.PeerCertificates) > 0 {
		leaf = cs.PeerCertificates[0]
	}
	ss.Extra = append(ss.Extra, ticketBinding(t.trust, leaf))
	state, err := ss.Bytes()
	if err != nil {
		return nil, fmt.Errorf("session ticket: %w", err)
	}
	return t.ring.seal(state, t.now())
}

func (t *ticketer) unwrap(ticket []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
	state, issued, ok := t.ring.open(ticket)
	if !ok {
		return nil, nil // not ours, or of a retired key: full handshake
	}
	if age := t.now().Sub(issued); age > t.lifetime || age < -ClockSkew {
		return nil, nil
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		return nil, nil
	}
	bound, ok := findBinding(ss.Extra, t.trust)
	if !ok {
		return nil, nil // issued under another trust configuration
	}
	t.bound = bound
	return ss, nil
}

// boundTo reports whether the resumed session's ticket was bound to leaf.
func (t *ticketer) boundTo(leaf *x509.Certificate) bool {
	if t.bound == nil || leaf == nil {
		return false
	}
	sum := sha256.Sum256(leaf.Raw)
	return hmac.Equal(t.bound, sum[:])
}
