package security

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// ErrBadRenewal reports a renewed certificate chain the device refuses: not
// for its identity key or device id, malformed, or not valid longer than the
// certificate it holds. The stored certificate is left untouched.
var ErrBadRenewal = errors.New("security: bad renewed certificate")

// RenewalCSR returns a PKCS#10 certificate signing request (DER) for the
// device's current identity key, naming its device id, for a RenewRequest.
func (m *Manager) RenewalCSR() ([]byte, error) {
	id := m.DeviceID()
	if id == "" {
		return nil, ErrNotEnrolled
	}
	csr, err := pki.NewDeviceCSR(m.key, id)
	if err != nil {
		return nil, fmt.Errorf("security: renewal request: %w", err)
	}
	return csr, nil
}

// Renew checks a renewed certificate chain (DER, leaf first) and commits it
// in one flash batch in place of the current one, keeping the device id and
// pinned platform keys. The leaf must certify this device's identity key
// and enrolled device id and expire later than the current certificate;
// otherwise Renew returns an error matching ErrBadRenewal and changes
// nothing. Verifying the chain up to the platform root is the caller's job
// (the client holds the pinned root). After Renew returns nil,
// Certificate returns the new chain, also after a reboot; a power cut
// during Renew leaves either the old chain or the new one.
func (m *Manager) Renew(chain [][]byte) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: empty certificate chain", ErrBadRenewal)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return fmt.Errorf("%w: parse certificate: %w", ErrBadRenewal, err)
	}
	for i, der := range chain[1:] {
		if _, err := x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("%w: parse certificate %d: %w", ErrBadRenewal, i+1, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enr == nil {
		return ErrNotEnrolled
	}
	cur, err := m.leafLocked()
	if err != nil {
		return err
	}
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(m.PublicKey()) {
		return fmt.Errorf("%w: certificate is not for this device's key", ErrBadRenewal)
	}
	if id, err := pki.DeviceIDFromCert(leaf); err != nil || id != m.enr.DeviceID {
		return fmt.Errorf("%w: certificate names device %q, enrolled as %q", ErrBadRenewal, id, m.enr.DeviceID)
	}
	if !leaf.NotAfter.After(cur.NotAfter) {
		return fmt.Errorf("%w: new certificate expires %s, not after the current one (%s)",
			ErrBadRenewal, leaf.NotAfter.Format(time.RFC3339), cur.NotAfter.Format(time.RFC3339))
	}
	rec := *m.enr
	rec.Chain = make([][]byte, len(chain))
	for i, der := range chain {
		rec.Chain[i] = bytes.Clone(der)
	}
	if err := m.checkEnrollment(&rec); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRenewal, err)
	}
	raw, err := encMode.Marshal(&rec)
	if err != nil {
		return fmt.Errorf("security: encode enrollment: %w", err)
	}
	var b flash.Batch
	b.Put(keyEnrolled, raw)
	if err := m.store.Commit(&b); err != nil {
		return fmt.Errorf("security: store renewed certificate: %w", err)
	}
	m.enr = &rec
	m.leaf = leaf
	m.log.Info("device certificate renewed", "device", rec.DeviceID,
		"serial", leaf.SerialNumber.String(), "notAfter", leaf.NotAfter)
	return nil
}

// CertificateExpired reports whether the device certificate has expired by
// the device clock; false before enrollment.
func (m *Manager) CertificateExpired() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enr == nil {
		return false
	}
	leaf, err := m.leafLocked()
	return err == nil && m.clock().After(leaf.NotAfter)
}
