// Package trust is the platform's public trust material as the cluster
// publishes it: the root certificate and the two intermediates under it —
// the gateway CA that issues gateway server certificates and the device CA
// that issues device client certificates. It lives in the ConfigMap named
// wasmbedv1.TrustConfigMap in the system namespace; this package converts
// it to and from that ConfigMap's data and has no Kubernetes dependency.
//
//	b, err := trust.FromAuthority(authority)      // when the CAs are created
//	cm.Data = b.Data()
//	...
//	b, err := trust.Parse(cm.Data)                // a gateway, a tool
//	verifier, err := pki.NewVerifier(pki.VerifierConfig{Root: b.Root, Issuer: b.DeviceCA})
package trust

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/wasmbed/wasmbed/internal/pki"
)

// ConfigMap data keys, each one PEM certificate; KeyBundle holds all three,
// root first, the form devices and `wasmbed device run --ca` take.
const (
	KeyRoot      = "root.pem"
	KeyGatewayCA = "gateway-ca.pem"
	KeyDeviceCA  = "device-ca.pem"
	KeyBundle    = "bundle.pem"
)

// ErrMalformed reports trust data that does not parse or does not hold
// together.
var ErrMalformed = errors.New("trust: malformed trust bundle")

// Bundle is the platform's public trust material.
type Bundle struct {
	// Root is the trust anchor.
	Root *x509.Certificate
	// GatewayCA issues gateway server certificates.
	GatewayCA *x509.Certificate
	// DeviceCA issues device client certificates.
	DeviceCA *x509.Certificate
}

// FromAuthority returns the public half of an authority, checking its
// shape (pki.Authority.Validate).
func FromAuthority(a *pki.Authority) (Bundle, error) {
	if err := a.Validate(); err != nil {
		return Bundle{}, fmt.Errorf("trust: %w", err)
	}
	return Bundle{Root: a.Root.Cert, GatewayCA: a.GatewayCA.Cert, DeviceCA: a.DeviceCA.Cert}, nil
}

// Data returns the bundle as ConfigMap data.
func (b Bundle) Data() map[string]string {
	return map[string]string{
		KeyRoot:      string(pki.EncodeCertificatesPEM(b.Root)),
		KeyGatewayCA: string(pki.EncodeCertificatesPEM(b.GatewayCA)),
		KeyDeviceCA:  string(pki.EncodeCertificatesPEM(b.DeviceCA)),
		KeyBundle:    string(pki.EncodeCertificatesPEM(b.Root, b.GatewayCA, b.DeviceCA)),
	}
}

// Parse reads a bundle from ConfigMap data and checks it holds together:
// each intermediate issued by the root and restricted to its kind of leaf.
func Parse(data map[string]string) (Bundle, error) {
	one := func(key string) (*x509.Certificate, error) {
		certs, err := pki.ParseCertificatesPEM([]byte(data[key]))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, key, err)
		}
		if len(certs) != 1 {
			return nil, fmt.Errorf("%w: %s holds %d certificates, want 1", ErrMalformed, key, len(certs))
		}
		return certs[0], nil
	}
	var b Bundle
	var err error
	if b.Root, err = one(KeyRoot); err != nil {
		return Bundle{}, err
	}
	if b.GatewayCA, err = one(KeyGatewayCA); err != nil {
		return Bundle{}, err
	}
	if b.DeviceCA, err = one(KeyDeviceCA); err != nil {
		return Bundle{}, err
	}
	a := &pki.Authority{Root: &pki.CA{Cert: b.Root}, GatewayCA: &pki.CA{Cert: b.GatewayCA}, DeviceCA: &pki.CA{Cert: b.DeviceCA}}
	if err := a.Validate(); err != nil {
		return Bundle{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return b, nil
}
