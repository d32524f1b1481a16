package clienttest

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// MemIdentity is an in-memory client.Identity with an Ed25519 key, for
// tests of the client alone.
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
