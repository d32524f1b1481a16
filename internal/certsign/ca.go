package certsign

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/wasmbed/wasmbed/internal/pki"
)

// Data keys of a CA Secret (type kubernetes.io/tls).
const (
	// SecretCertKey holds the intermediate CA's certificate, PEM.
	SecretCertKey = "tls.crt"
	// SecretKeyKey holds the intermediate CA's private key, PEM.
	SecretKeyKey = "tls.key"
	// SecretRootKey holds the root CA's certificate, PEM.
	SecretRootKey = "ca.crt"
)

// Kind says which intermediate a CA Secret holds.
type Kind int

// Kinds of CA.
const (
	// DeviceCA signs device client certificates (clientAuth only).
	DeviceCA Kind = iota
	// GatewayCA signs gateway server certificates (serverAuth only).
	GatewayCA
)

func (k Kind) String() string {
	if k == GatewayCA {
		return "gateway CA"
	}
	return "device CA"
}

// usage is the one kind of leaf the intermediate may issue.
func (k Kind) usage() x509.ExtKeyUsage {
	if k == GatewayCA {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// ErrBadCA reports CA Secret data that does not make a usable CA.
var ErrBadCA = errors.New("certsign: unusable CA")

// LoadCA builds, from a CA Secret's data, an Authority holding the root and
// the intermediate of kind with its key. It checks that the intermediate is
// a CA issued by the root, restricted to kind's leaves, and that the key is
// the certificate's.
func LoadCA(kind Kind, data map[string][]byte) (*pki.Authority, error) {
	certs, err := pki.ParseCertificatesPEM(data[SecretCertKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrBadCA, kind, SecretCertKey, err)
	}
	key, err := pki.ParsePrivateKeyPEM(data[SecretKeyKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrBadCA, kind, SecretKeyKey, err)
	}
	roots, err := pki.ParseCertificatesPEM(data[SecretRootKey])
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %w", ErrBadCA, kind, SecretRootKey, err)
	}
	inter, root := certs[0], roots[0]
	switch {
	case !inter.IsCA || inter.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("%w: %s %q is not a CA certificate", ErrBadCA, kind, inter.Subject.CommonName)
	case !slices.Equal(inter.ExtKeyUsage, []x509.ExtKeyUsage{kind.usage()}):
		return nil, fmt.Errorf("%w: %s %q is not restricted to its one kind of leaf", ErrBadCA, kind, inter.Subject.CommonName)
	case !publicKeyOf(key).Equal(inter.PublicKey):
		return nil, fmt.Errorf("%w: %s key is not the certificate's", ErrBadCA, kind)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%w: %s %q is not issued by the root: %w", ErrBadCA, kind, inter.Subject.CommonName, err)
	}
	a := &pki.Authority{Root: &pki.CA{Cert: root}}
	if kind == GatewayCA {
		a.GatewayCA = &pki.CA{Cert: inter, Key: key}
	} else {
		a.DeviceCA = &pki.CA{Cert: inter, Key: key}
	}
	return a, nil
}

func publicKeyOf(k crypto.Signer) interface{ Equal(crypto.PublicKey) bool } {
	if p, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); ok {
		return p
	}
	return noKey{}
}

type noKey struct{}

func (noKey) Equal(crypto.PublicKey) bool { return false }

// SecretData returns the CA Secret data of a's intermediate of kind and its
// root.
func SecretData(kind Kind, a *pki.Authority) (map[string][]byte, error) {
	ca := a.DeviceCA
	if kind == GatewayCA {
		ca = a.GatewayCA
	}
	if ca == nil || ca.Key == nil || a.Root == nil {
		return nil, fmt.Errorf("%w: no %s with its key", ErrBadCA, kind)
	}
	key, err := pki.EncodePrivateKeyPEM(ca.Key)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		SecretCertKey: pki.EncodeCertificatesPEM(ca.Cert),
		SecretKeyKey:  key,
		SecretRootKey: pki.EncodeCertificatesPEM(a.Root.Cert),
	}, nil
}
