package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
)

// DeviceURIPrefix starts the URI SAN that names a device in its certificate:
// urn:wasmbed:device:<id>. The same id is the certificate's Subject CN.
const DeviceURIPrefix = "urn:wasmbed:device:"

// MaxDeviceIDLen is the longest accepted device id: the longest Kubernetes
// label value (63 characters), one below the X.509 upper bound for a
// common name (64).
const MaxDeviceIDLen = 63

// ValidateDeviceID checks the device id syntax: 1 to 63 characters from
// [A-Za-z0-9._-], starting and ending with a letter or digit. Such an id is
// safe in a URN, a common name, a file name and a Kubernetes label value.
// It is not always a valid object name (upper case, '_', '.'): whoever
// names a Kubernetes object after a device maps the id.
func ValidateDeviceID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidDeviceID)
	}
	if len(id) > MaxDeviceIDLen {
		return fmt.Errorf("%w: %d characters, limit %d", ErrInvalidDeviceID, len(id), MaxDeviceIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%w: %q must start with a letter or digit", ErrInvalidDeviceID, id)
		}
		if i == len(id)-1 && !alnum {
			return fmt.Errorf("%w: %q must end with a letter or digit", ErrInvalidDeviceID, id)
		}
		if !alnum && c != '-' && c != '.' && c != '_' {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidDeviceID, id, c)
		}
	}
	return nil
}

// DeviceURI returns urn:wasmbed:device:<id>. The id should have passed
// ValidateDeviceID.
func DeviceURI(id string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: "wasmbed:device:" + id}
}

// DeviceIDFromCert extracts the device id from a device certificate. It
// requires exactly one urn:wasmbed:device: URI SAN, a valid id, and a
// Subject CN equal to it.
func DeviceIDFromCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", ErrNoCertificate
	}
	var ids []string
	for _, u := range cert.URIs {
		if s := u.String(); strings.HasPrefix(s, DeviceURIPrefix) {
			ids = append(ids, strings.TrimPrefix(s, DeviceURIPrefix))
		}
	}
	if len(ids) != 1 {
		return "", certError(ErrInvalidCertificate, cert, fmt.Sprintf("want exactly one %s URI SAN, found %d", DeviceURIPrefix, len(ids)), nil)
	}
	id := ids[0]
	if err := ValidateDeviceID(id); err != nil {
		return "", certError(ErrInvalidCertificate, cert, "", err)
	}
	if cert.Subject.CommonName != id {
		return "", certError(ErrInvalidCertificate, cert, fmt.Sprintf("common name %q differs from device id %q", cert.Subject.CommonName, id), nil)
	}
	return id, nil
}

// DeviceIdentity is what a gateway learns about a device from a verified
// client certificate.
type DeviceIdentity struct {
	// DeviceID from the certificate's URI SAN and CN.
	DeviceID string
	// PublicKey is the device's identity key (ed25519.PublicKey or *ecdsa.PublicKey).
	PublicKey crypto.PublicKey
	// EncodedKey is EncodePublicKey(PublicKey): the Device spec.publicKey to look up.
	EncodedKey string
	// Fingerprint is Fingerprint(PublicKey).
	Fingerprint string
	// Certificate is the leaf the identity came from.
	Certificate *x509.Certificate
}

// IdentityFromCert derives the DeviceIdentity of a device certificate. It
// does not verify the chain: use Verifier.VerifyDevice for that.
func IdentityFromCert(cert *x509.Certificate) (*DeviceIdentity, error) {
	pub, err := PublicKeyFromCert(cert)
	if err != nil {
		return nil, err
	}
	id, err := DeviceIDFromCert(cert)
	if err != nil {
		return nil, err
	}
	enc, err := encodeChecked(pub)
	if err != nil {
		return nil, err
	}
	fp, err := Fingerprint(pub)
	if err != nil {
		return nil, err
	}
	return &DeviceIdentity{DeviceID: id, PublicKey: pub, EncodedKey: enc, Fingerprint: fp, Certificate: cert}, nil
}

// IdentityFromConnectionState returns the device identity of a connection
// accepted with a ServerTLSConfig or EnrollmentServerTLSConfig config, whose
// handshake already verified the chain. It returns ErrNoCertificate for an
// enrollment connection without a client certificate.
func IdentityFromConnectionState(cs tls.ConnectionState) (*DeviceIdentity, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, ErrNoCertificate
	}
	return IdentityFromCert(cs.PeerCertificates[0])
}
