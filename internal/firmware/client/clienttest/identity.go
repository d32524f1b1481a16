package clienttest

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// MemIdentity is an in-memory client.Identity (and client.Renewer) with an
// Ed25519 identity key and an X25519 sealing key, for tests of the client
// alone. Unlike the firmware's security manager it takes the platform key
// of every enrollment.
type MemIdentity struct {
	Type    string
	key     ed25519.PrivateKey
	sealing *ecdh.PrivateKey

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
	sealing, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &MemIdentity{Type: deviceType, key: key, sealing: sealing}
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

// EnrollRequest implements client.Identity: a CSR signed by the identity
// key and the sealing key with its proof for the connection's binding.
func (m *MemIdentity) EnrollRequest(binding []byte) (*protocol.EnrollRequest, error) {
	csr, err := pki.NewDeviceCSR(m.key, "")
	if err != nil {
		return nil, err
	}
	sealing := m.sealing.PublicKey().Bytes()
	proof, err := pki.SignSealingKeyProof(m.key, binding, sealing)
	if err != nil {
		return nil, err
	}
	return &protocol.EnrollRequest{
		PublicKey:       m.key.Public().(ed25519.PublicKey),
		KeyAlgorithm:    protocol.KeyEd25519,
		DeviceType:      m.Type,
		Capabilities:    []string{"wasm", "tls"},
		CSR:             csr,
		SealingKey:      sealing,
		SealingKeyProof: proof,
	}, nil
}

// SealingKey returns the device's X25519 sealing public key.
func (m *MemIdentity) SealingKey() *ecdh.PublicKey { return m.sealing.PublicKey() }

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
