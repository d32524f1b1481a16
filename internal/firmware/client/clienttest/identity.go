package clienttest

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// MemIdentity is an in-memory client.Identity (and client.Renewer) with an
// Ed25519 key, for tests of the client alone.
type MemIdentity struct {
	Type string
	key  ed25519.PrivateKey

	mu      sync.Mutex
	id      string
	cert    *tls.Certificate
	signKey []byte
}

// NewMemIdentity generates a key for a device of the given type.
func NewMemIdentity(deviceType string) *MemIdentity {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		panic(err)
	}
	return &MemIdentity{Type: deviceType, key: key}
}

// DeviceID implements client.Identity.
func (m *MemIdentity) DeviceID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// SigningKey returns the pinned platform key received at enrollment.
func (m *MemIdentity) SigningKey() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.signKey
}

// EnrollRequest implements client.Identity.
func (m *MemIdentity) EnrollRequest() (*protocol.EnrollRequest, error) {
	return &protocol.EnrollRequest{
		PublicKey:    m.key.Public().(ed25519.PublicKey),
		KeyAlgorithm: protocol.KeyEd25519,
		DeviceType:   m.Type,
		Capabilities: []string{"wasm", "tls"},
	}, nil
}

// Enroll implements client.Identity.
func (m *MemIdentity) Enroll(resp *protocol.EnrollResponse) error {
	if len(resp.CertChain) == 0 {
		return errors.New("empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(resp.CertChain[0])
	if err != nil {
		return err
	}
	cert := &tls.Certificate{Certificate: resp.CertChain, PrivateKey: m.key, Leaf: leaf}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id, m.cert, m.signKey = resp.DeviceID, cert, resp.SigningKey
	return nil
}

// Certificate implements client.Identity.
func (m *MemIdentity) Certificate() (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cert == nil {
		return nil, errors.New("not enrolled")
	}
	return m.cert, nil
}

// Forget erases the identity, as a factory reset would.
func (m *MemIdentity) Forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id, m.cert, m.signKey = "", nil, nil
}

// RenewalCSR implements client.Renewer.
func (m *MemIdentity) RenewalCSR() ([]byte, error) {
	id := m.DeviceID()
	if id == "" {
		return nil, errors.New("not enrolled")
	}
	return pki.NewDeviceCSR(m.key, id)
}

// Renew implements client.Renewer: it keeps the chain if its leaf is for
// the device's key.
func (m *MemIdentity) Renew(chain [][]byte) error {
	if len(chain) == 0 {
		return errors.New("empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return err
	}
	if pub, ok := leaf.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(m.key.Public()) {
		return errors.New("certificate is not for this device's key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cert = &tls.Certificate{Certificate: chain, PrivateKey: m.key, Leaf: leaf}
	return nil
}

// Key returns the device's private key.
func (m *MemIdentity) Key() ed25519.PrivateKey { return m.key }
