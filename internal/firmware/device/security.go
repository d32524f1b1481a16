package device

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Security is what the device composition needs from the security
// manager: the device identity for the client, and the verification of
// deploy artifacts into install requests for the application manager.
type Security interface {
	client.Identity
	// Admit verifies a Deploy or Update artifact (signature against the
	// pinned platform key, addressee, replay and downgrade, expiry, module
	// hash, decryption of a sealed module) and returns the install
	// request. A refusal is an error for which [RefusalReason] gives the
	// protocol reason.
	Admit(app string, sequence uint64, artifact, sealed []byte, start bool) (appmgr.Request, error)
}

// AdmitError is a refusal of an artifact with its protocol reason.
type AdmitError struct {
	Reason protocol.Reason
	Err    error
}

func (e *AdmitError) Error() string { return fmt.Sprintf("artifact refused (%s): %v", e.Reason, e.Err) }

func (e *AdmitError) Unwrap() error { return e.Err }

// RefusalReason returns the protocol reason carried by err, or
// ReasonInternal.
func RefusalReason(err error) protocol.Reason {
	if ae, ok := errors.AsType[*AdmitError](err); ok {
		return ae.Reason
	}
	return protocol.ReasonInternal
}

// Flash keys of the device identity.
const (
	keyIdentityKey   = "id/key"
	keyIdentityID    = "id/device"
	keyIdentityChain = "id/chain"
	keyIdentitySign  = "id/signing-key"
)

// keystore keeps the device identity on flash: an Ed25519 key generated
// on the device at first boot, and the enrollment result (device id,
// certificate chain, pinned platform signing key), written in one
// transaction.
type keystore struct {
	store      *flash.Store
	deviceType string
	caps       []string
	version    string

	key ed25519.PrivateKey

	mu      sync.Mutex
	id      string
	cert    *tls.Certificate
	signKey ed25519.PublicKey
}

// openKeystore loads the identity from store, generating the key on first
// boot.
func openKeystore(store *flash.Store, deviceType string, caps []string, version string) (*keystore, error) {
	k := &keystore{store: store, deviceType: deviceType, caps: caps, version: version}
	seed, err := store.Get(keyIdentityKey)
	switch {
	case errors.Is(err, flash.ErrNotFound):
		pub, priv, gerr := ed25519.GenerateKey(nil)
		if gerr != nil {
			return nil, fmt.Errorf("generate device key: %w", gerr)
		}
		_ = pub
		if err := store.Put(keyIdentityKey, priv.Seed()); err != nil {
			return nil, fmt.Errorf("store device key: %w", err)
		}
		k.key = priv
	case err != nil:
		return nil, fmt.Errorf("load device key: %w", err)
	case len(seed) != ed25519.SeedSize:
		return nil, fmt.Errorf("load device key: %d bytes, want %d", len(seed), ed25519.SeedSize)
	default:
		k.key = ed25519.NewKeyFromSeed(seed)
	}
	id, err := store.Get(keyIdentityID)
	if errors.Is(err, flash.ErrNotFound) {
		return k, nil // not enrolled yet
	}
	if err != nil {
		return nil, fmt.Errorf("load device id: %w", err)
	}
	chainPEM, err := store.Get(keyIdentityChain)
	if err != nil {
		return nil, fmt.Errorf("load device certificate: %w", err)
	}
	sign, err := store.Get(keyIdentitySign)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	certs, err := pki.ParseCertificatesPEM(chainPEM)
	if err != nil {
		return nil, fmt.Errorf("load device certificate: %w", err)
	}
	k.set(string(id), certs, sign)
	return k, nil
}

func (k *keystore) set(id string, certs []*x509.Certificate, sign []byte) {
	raw := make([][]byte, len(certs))
	for i, c := range certs {
		raw[i] = c.Raw
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.id = id
	k.cert = &tls.Certificate{Certificate: raw, PrivateKey: k.key, Leaf: certs[0]}
	k.signKey = ed25519.PublicKey(sign)
}

// DeviceID implements client.Identity.
func (k *keystore) DeviceID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}

// SigningKey returns the pinned platform signing key (nil before
// enrollment).
func (k *keystore) SigningKey() ed25519.PublicKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.signKey
}

// EnrollRequest implements client.Identity.
func (k *keystore) EnrollRequest() (*protocol.EnrollRequest, error) {
	return &protocol.EnrollRequest{
		PublicKey:       k.key.Public().(ed25519.PublicKey),
		KeyAlgorithm:    protocol.KeyEd25519,
		DeviceType:      k.deviceType,
		Capabilities:    k.caps,
		FirmwareVersion: k.version,
	}, nil
}

// Enroll implements client.Identity: it checks the response and stores it
// in one flash transaction.
func (k *keystore) Enroll(resp *protocol.EnrollResponse) error {
	if err := pki.ValidateDeviceID(resp.DeviceID); err != nil {
		return err
	}
	if len(resp.SigningKey) != ed25519.PublicKeySize {
		return fmt.Errorf("platform signing key of %d bytes", len(resp.SigningKey))
	}
	certs := make([]*x509.Certificate, 0, len(resp.CertChain))
	for _, der := range resp.CertChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return errors.New("empty certificate chain")
	}
	pub, ok := certs[0].PublicKey.(ed25519.PublicKey)
	if !ok || !pub.Equal(k.key.Public()) {
		return errors.New("certificate is not for the device key")
	}
	var b flash.Batch
	b.Put(keyIdentityID, []byte(resp.DeviceID))
	b.Put(keyIdentityChain, pki.EncodeCertificatesPEM(certs...))
	b.Put(keyIdentitySign, resp.SigningKey)
	if err := k.store.Commit(&b); err != nil {
		return fmt.Errorf("store identity: %w", err)
	}
	k.set(resp.DeviceID, certs, resp.SigningKey)
	return nil
}

// Certificate implements client.Identity.
func (k *keystore) Certificate() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert == nil {
		return nil, errors.New("device not enrolled")
	}
	return k.cert, nil
}

// Admit refuses every artifact: artifact verification belongs to the
// security manager, which this keystore stands in for until it is wired.
func (k *keystore) Admit(app string, _ uint64, _, _ []byte, _ bool) (appmgr.Request, error) {
	return appmgr.Request{}, &AdmitError{Reason: protocol.ReasonInternal, Err: fmt.Errorf("app %q: artifact verification unavailable", app)}
}
