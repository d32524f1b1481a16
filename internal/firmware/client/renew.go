package client

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Renewer is implemented by an [Identity] that can renew its certificate
// over a session; the firmware's security manager implements it. A client
// whose Identity is not a Renewer never sends a RenewRequest.
type Renewer interface {
	// RenewalCSR returns a PKCS#10 request (DER) for the device's current
	// identity key, signed by it.
	RenewalCSR() ([]byte, error)
	// Renew checks and persists a renewed chain (DER, leaf first)
	// atomically. After it returns nil, Certificate returns the new chain,
	// also after a reboot; on error the current certificate is kept.
	Renew(chain [][]byte) error
}

// ErrBadRenewal reports a RenewResponse whose chain the device refuses: it
// does not verify to the pinned root (and issuer), certifies another key or
// device id, or does not expire later than the current certificate.
var ErrBadRenewal = errors.New("client: bad renewed certificate")

// renewState is the client's certificate renewal state, kept across
// sessions so that reconnecting never resets the backoff.
type renewState struct {
	pending  uint64    // message id of the outstanding RenewRequest, 0 if none
	sent     time.Time // when it was sent
	attempts int       // requests sent since the last success
	next     time.Time // earliest time of the next request
	timer    hal.Timer
}

func (c *Client) onRenew() { c.signal(evRenew) }

// armRenewLocked (re)arms the renewal timer to fire after d; c.mu is held.
func (c *Client) armRenewLocked(d time.Duration) {
	d = max(d, time.Millisecond)
	if c.renew.timer == nil {
		c.renew.timer = c.clock.AfterFunc(d, c.onRenew)
	} else {
		c.renew.timer.Reset(d)
	}
}

// takeRenewal reports whether id is the outstanding RenewRequest, and if
// so clears it.
func (c *Client) takeRenewal(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 || c.renew.pending != id {
		return false
	}
	c.renew.pending = 0
	return true
}

// renewSessionEnded forgets an outstanding request (its reply cannot come
// any more) and stops the renewal timer. The attempt still counts for the
// backoff.
func (c *Client) renewSessionEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.renew.pending = 0
	if c.renew.timer != nil {
		c.renew.timer.Stop()
	}
}

// leafOf returns the parsed leaf of cert.
func leafOf(cert *tls.Certificate) (*x509.Certificate, error) {
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("no device certificate")
	}
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	return x509.ParseCertificate(cert.Certificate[0])
}

// checkExpiry records whether cert has expired by the device clock, and
// reports the transition.
func (c *Client) checkExpiry(cert *tls.Certificate) bool {
	leaf, err := leafOf(cert)
	if err != nil {
		return false
	}
	expired := c.clock.Now().After(leaf.NotAfter)
	if was := c.expired.Swap(expired); expired && !was {
		c.log.Error("device certificate expired without renewal; gateways will refuse the device",
			"notAfter", leaf.NotAfter, "reenroll", c.cfg.EnrollLink != nil)
	}
	return expired
}

// certificateExpired reports whether the stored certificate has expired.
func (c *Client) certificateExpired() bool {
	cert, err := c.cfg.Identity.Certificate()
	if err != nil {
		return false
	}
	return c.checkExpiry(cert)
}

// renewCheck sends a RenewRequest if the certificate is in its renewal
// window, no request is outstanding and the backoff allows it; otherwise
// it arms the renewal timer for the next moment something can change. It
// also expires an outstanding request that waited longer than
// RenewTimeout.
func (s *session) renewCheck(_ context.Context) error {
	c := s.c
	rn, ok := c.cfg.Identity.(Renewer)
	if !ok {
		return nil
	}
	now := c.clock.Now()
	c.mu.Lock()
	if c.renew.pending != 0 {
		if wait := c.renew.sent.Add(c.cfg.RenewTimeout).Sub(now); wait > 0 {
			c.armRenewLocked(wait)
			c.mu.Unlock()
			return nil
		}
		c.renew.pending = 0
		c.stats.renewalTimeouts.Add(1)
		c.log.Warn("certificate renewal timed out", "timeout", c.cfg.RenewTimeout, "attempts", c.renew.attempts)
	}
	next := c.renew.next
	c.mu.Unlock()

	cert, err := c.cfg.Identity.Certificate()
	if err != nil {
		return nil
	}
	leaf, err := leafOf(cert)
	if err != nil {
		return nil
	}
	due := renewDue(leaf, c.cfg.RenewJitter)
	if next.After(due) {
		due = next
	}
	if now.Before(due) {
		c.mu.Lock()
		c.armRenewLocked(due.Sub(now))
		c.mu.Unlock()
		return nil
	}

	csr, err := rn.RenewalCSR()
	c.mu.Lock()
	c.renew.attempts++
	c.renew.next = now.Add(c.cfg.RenewBackoff.Ceiling(c.renew.attempts))
	if err != nil {
		c.armRenewLocked(c.renew.next.Sub(now))
		c.mu.Unlock()
		c.log.Error("certificate renewal request not built", "err", err)
		return nil
	}
	id := c.ids.Next()
	c.renew.pending, c.renew.sent = id, now
	attempts := c.renew.attempts
	c.armRenewLocked(c.cfg.RenewTimeout)
	c.mu.Unlock()

	c.stats.renewalRequests.Add(1)
	c.log.Info("requesting certificate renewal", "serial", leaf.SerialNumber.String(),
		"notAfter", leaf.NotAfter, "attempt", attempts)
	return s.send(id, &protocol.RenewRequest{CSR: csr})
}

// renewRefused handles the gateway's Error reply to the outstanding
// RenewRequest: log it with its code and wait for the backoff.
func (s *session) renewRefused(ctx context.Context, m *protocol.Error) error {
	c := s.c
	c.mu.Lock()
	next := c.renew.next
	c.mu.Unlock()
	c.log.Warn("certificate renewal refused", "code", m.Code.String(), "text", m.Text, "retryAt", next)
	err := s.renewCheck(ctx)
	c.stats.renewalsRefused.Add(1) // counted once the retry is scheduled
	return err
}

// renewed handles a RenewResponse: verify the chain, persist it, and make
// the next handshake present it.
func (s *session) renewed(ctx context.Context, id uint64, m *protocol.RenewResponse) error {
	c := s.c
	if !c.takeRenewal(id) {
		c.log.Debug("unexpected renewal response ignored", "id", id)
		return nil
	}
	leaf, err := c.acceptRenewal(ctx, m.CertChain)
	if err != nil {
		c.log.Warn("renewed certificate refused, keeping the current one", "err", err)
		err := s.renewCheck(ctx)
		c.stats.renewalsRejected.Add(1)
		return err
	}
	c.mu.Lock()
	c.renew.attempts, c.renew.next = 0, time.Time{}
	// Sessions cached for resumption carry the old certificate: drop them
	// so the next handshake is a full one with the new certificate.
	c.cache = tls.NewLRUClientSessionCache(max(1, len(c.cfg.Link.Endpoints())))
	c.mu.Unlock()
	c.expired.Store(false)
	c.log.Info("device certificate renewed", "serial", leaf.SerialNumber.String(), "notAfter", leaf.NotAfter)
	err = s.renewCheck(ctx)
	c.stats.renewals.Add(1)
	return err
}

// acceptRenewal verifies a renewed chain against the pinned root (and
// device CA) and the current certificate, then hands it to the Renewer.
func (c *Client) acceptRenewal(ctx context.Context, chain [][]byte) (*x509.Certificate, error) {
	rn, ok := c.cfg.Identity.(Renewer)
	if !ok {
		return nil, errors.New("identity cannot renew")
	}
	cur, err := c.cfg.Identity.Certificate()
	if err != nil {
		return nil, fmt.Errorf("current certificate: %w", err)
	}
	curLeaf, err := leafOf(cur)
	if err != nil {
		return nil, fmt.Errorf("current certificate: %w", err)
	}
	leaf, err := c.verifyOwnChain(ctx, chain, c.cfg.Identity.DeviceID(), curLeaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRenewal, err)
	}
	if !leaf.NotAfter.After(curLeaf.NotAfter) {
		return nil, fmt.Errorf("%w: certificate expires %s, not after the current one (%s)", ErrBadRenewal,
			leaf.NotAfter.Format(time.RFC3339), curLeaf.NotAfter.Format(time.RFC3339))
	}
	if err := rn.Renew(chain); err != nil {
		return nil, fmt.Errorf("store renewed certificate: %w", err)
	}
	return leaf, nil
}

// verifyOwnChain verifies a certificate chain the gateway issued to this
// device (DER, leaf first), at enrollment or renewal: up to the pinned root
// through a CA allowed to issue client certificates (the pinned device CA,
// when configured), valid by the device clock, naming wantID and
// certifying wantKey. It returns the parsed leaf.
func (c *Client) verifyOwnChain(ctx context.Context, chain [][]byte, wantID string, wantKey crypto.PublicKey) (*x509.Certificate, error) {
	if len(chain) == 0 || len(chain) > pki.MaxChainLen {
		return nil, fmt.Errorf("chain of %d certificates", len(chain))
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		var err error
		if certs[i], err = x509.ParseCertificate(der); err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
	}
	v, err := pki.NewVerifier(pki.VerifierConfig{Root: c.cfg.Root, Issuer: c.cfg.DeviceCA, Clock: c.clock.Now})
	if err != nil {
		return nil, fmt.Errorf("verifier: %w", err)
	}
	id, err := v.VerifyDevice(ctx, certs)
	if err != nil {
		return nil, err
	}
	if id.DeviceID != wantID {
		return nil, fmt.Errorf("certificate names device %q, want %q", id.DeviceID, wantID)
	}
	key, ok := wantKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !key.Equal(id.PublicKey) {
		return nil, errors.New("certificate is not for the device key")
	}
	return certs[0], nil
}

// renewDue is when leaf should be renewed: at two thirds of its lifetime
// (pki.RenewAt), plus up to jitter of the lifetime picked by the low bits of
// its serial number. Serials are random, so a fleet enrolled in one burst
// spreads its renewals, and one device always picks the same moment.
func renewDue(leaf *x509.Certificate, jitter float64) time.Time {
	due := pki.RenewAt(leaf)
	if jitter <= 0 || leaf.SerialNumber == nil {
		return due
	}
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	frac := float64(leaf.SerialNumber.Uint64()&0xffff) / 0x10000
	offset := time.Duration(frac * jitter * float64(lifetime))
	if limit := leaf.NotAfter.Sub(due) / 2; offset > limit {
		offset = limit
	}
	return due.Add(offset)
}
