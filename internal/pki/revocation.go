package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync"
)

// RevocationChecker decides whether a certificate that chains correctly
// must still be refused. Implementations must be safe for concurrent use and
// should honour ctx: the TLS configs pass the handshake's context. An error
// means "status unknown" and the certificate is refused (fail closed).
//
// The gateway typically combines MemoryRevocation (fast, local) with its own
// checker that looks the Device up by public key and refuses spec.revoked.
type RevocationChecker interface {
	Revoked(ctx context.Context, cert *x509.Certificate) (bool, error)
}

// RevocationCheckerFunc adapts a function to RevocationChecker.
type RevocationCheckerFunc func(ctx context.Context, cert *x509.Certificate) (bool, error)

// Revoked implements RevocationChecker.
func (f RevocationCheckerFunc) Revoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	return f(ctx, cert)
}

// AnyRevoked combines checkers: a certificate is revoked if any checker says
// so; the first error stops the check and is returned.
func AnyRevoked(checkers ...RevocationChecker) RevocationChecker {
	return RevocationCheckerFunc(func(ctx context.Context, cert *x509.Certificate) (bool, error) {
		for _, c := range checkers {
			if c == nil {
				continue
			}
			revoked, err := c.Revoked(ctx, cert)
			if err != nil || revoked {
				return revoked, err
			}
		}
		return false, nil
	})
}

// RevocationNotifier announces revocations so that live sessions, which a
// handshake-time check cannot reach, can be re-checked or closed.
// MemoryRevocation implements it.
type RevocationNotifier interface {
	Subscribe(fn func(Revocation)) (cancel func())
}

var (
	_ RevocationChecker  = (*MemoryRevocation)(nil)
	_ RevocationNotifier = (*MemoryRevocation)(nil)
)

// Revocation describes one revocation event delivered to subscribers. Exactly
// one of Serial and KeyFingerprint is set.
type Revocation struct {
	// Serial is the revoked certificate serial number.
	Serial *big.Int
	// KeyFingerprint is the revoked key's Fingerprint: every certificate for
	// that key is revoked, past and future.
	KeyFingerprint string
}

// Matches reports whether cert is covered by r.
func (r Revocation) Matches(cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	if r.Serial != nil {
		return cert.SerialNumber != nil && r.Serial.Cmp(cert.SerialNumber) == 0
	}
	fp, err := Fingerprint(cert.PublicKey)
	return err == nil && fp == r.KeyFingerprint
}

// MemoryRevocation is an in-memory, thread-safe RevocationChecker holding
// revoked certificate serials and revoked public keys (by fingerprint).
// Serials are 128-bit random, so they are kept without their issuer.
//
// Handshakes consult it through Revoked. Sessions already established are
// not affected by a revocation on their own: the gateway subscribes with
// Subscribe and closes the sessions the announced Revocation Matches, and
// may also call Verifier.Check on live sessions periodically.
type MemoryRevocation struct {
	mu      sync.RWMutex
	serials map[string]struct{}
	keys    map[string]struct{}
	subs    map[uint64]func(Revocation)
	nextSub uint64
}

// NewMemoryRevocation returns an empty revocation set.
func NewMemoryRevocation() *MemoryRevocation {
	return &MemoryRevocation{
		serials: make(map[string]struct{}),
		keys:    make(map[string]struct{}),
		subs:    make(map[uint64]func(Revocation)),
	}
}

// RevokeSerial revokes one certificate by serial and notifies subscribers.
func (m *MemoryRevocation) RevokeSerial(serial *big.Int) {
	if serial == nil {
		return
	}
	m.mu.Lock()
	m.serials[serial.Text(16)] = struct{}{}
	subs := m.subscribersLocked()
	m.mu.Unlock()
	notify(subs, Revocation{Serial: new(big.Int).Set(serial)})
}

// RevokeCert revokes cert by serial.
func (m *MemoryRevocation) RevokeCert(cert *x509.Certificate) {
	m.RevokeSerial(cert.SerialNumber)
}

// RevokeKey revokes every certificate for pub and notifies subscribers.
func (m *MemoryRevocation) RevokeKey(pub crypto.PublicKey) error {
	fp, err := Fingerprint(pub)
	if err != nil {
		return fmt.Errorf("revoke key: %w", err)
	}
	m.RevokeFingerprint(fp)
	return nil
}

// RevokeFingerprint revokes every certificate whose key has fingerprint fp
// (see Fingerprint) and notifies subscribers.
func (m *MemoryRevocation) RevokeFingerprint(fp string) {
	m.mu.Lock()
	m.keys[fp] = struct{}{}
	subs := m.subscribersLocked()
	m.mu.Unlock()
	notify(subs, Revocation{KeyFingerprint: fp})
}

// UnrevokeSerial lifts a serial revocation.
func (m *MemoryRevocation) UnrevokeSerial(serial *big.Int) {
	m.mu.Lock()
	delete(m.serials, serial.Text(16))
	m.mu.Unlock()
}

// UnrevokeFingerprint lifts a key revocation (e.g. a Device un-revoked).
func (m *MemoryRevocation) UnrevokeFingerprint(fp string) {
	m.mu.Lock()
	delete(m.keys, fp)
	m.mu.Unlock()
}

// Revoked implements RevocationChecker. It never returns an error for a
// parsed certificate.
func (m *MemoryRevocation) Revoked(_ context.Context, cert *x509.Certificate) (bool, error) {
	if cert == nil {
		return false, ErrNoCertificate
	}
	fp, err := Fingerprint(cert.PublicKey)
	if err != nil {
		return false, fmt.Errorf("revocation check: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if cert.SerialNumber != nil {
		if _, ok := m.serials[cert.SerialNumber.Text(16)]; ok {
			return true, nil
		}
	}
	_, ok := m.keys[fp]
	return ok, nil
}

// Len returns the number of revoked serials and keys.
func (m *MemoryRevocation) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.serials) + len(m.keys)
}

// Subscribe registers fn to be called after each revocation, once the set
// already reflects it, on the revoking goroutine and without locks held: fn
// must be quick (hand work to another goroutine). cancel unregisters fn and
// may be called more than once, also from fn.
func (m *MemoryRevocation) Subscribe(fn func(Revocation)) (cancel func()) {
	m.mu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = fn
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}
}

func (m *MemoryRevocation) subscribersLocked() []func(Revocation) {
	if len(m.subs) == 0 {
		return nil
	}
	out := make([]func(Revocation), 0, len(m.subs))
	for _, fn := range m.subs {
		out = append(out, fn)
	}
	return out
}

func notify(subs []func(Revocation), r Revocation) {
	for _, fn := range subs {
		fn(r)
	}
}
