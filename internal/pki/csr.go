package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Signing certificate requests.
//
// Gateways hold no CA key: a gateway or a device asks for a certificate
// with a PKCS#10 request, and whoever holds the intermediate key (the
// controller, through Kubernetes CertificateSigningRequests) signs it with
// IssueDeviceFromCSR or IssueGatewayFromCSR. Both take the request and what
// the signer expects it to contain; anything else is refused with a
// *RequestError. Nothing but the public key is taken from the request: the
// certificate is built from the expectations.

// Sentinel reasons of a *RequestError.
var (
	// ErrMissingExpectation: the signer did not say what to expect (a
	// device id, a public key, a gateway name). Requests are never signed
	// on their own word.
	ErrMissingExpectation = errors.New("certificate request expectation missing")
	// ErrKeyMismatch: the request's key is not the expected one. A device
	// keeps its identity key for life: enrollment certifies the key the
	// device enrolled with, renewal the key of the session (see
	// docs/pki.md, "Key rotation").
	ErrKeyMismatch = errors.New("certificate request for an unexpected key")
	// ErrRequestedName: the request asks for a name (common name, device
	// URI, DNS name, IP address, e-mail address) that is not expected.
	ErrRequestedName = errors.New("certificate request asks for an unexpected name")
)

// RequestError is a refused certificate request. Reason is ErrCSRSignature,
// ErrKeyMismatch, ErrRequestedName, ErrMissingExpectation,
// ErrInvalidDeviceID or ErrUnsupportedKey; Err, when set, is the cause.
type RequestError struct {
	// Reason is the sentinel callers branch on.
	Reason error
	// Subject is the request's subject, as requested.
	Subject string
	// Detail says what differed, for logs.
	Detail string
	// Err is the underlying cause, if any.
	Err error
}

// Error implements error.
func (e *RequestError) Error() string {
	s := e.Reason.Error()
	if e.Subject != "" {
		s += fmt.Sprintf(" (subject %q)", e.Subject)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.Is/As see both the reason and the cause.
func (e *RequestError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

func requestError(reason error, csr *x509.CertificateRequest, cause error, format string, args ...any) *RequestError {
	e := &RequestError{Reason: reason, Err: cause, Detail: fmt.Sprintf(format, args...)}
	if csr != nil {
		e.Subject = csr.Subject.String()
	}
	return e
}

// DeviceRequest is what the signer of a device certificate request expects.
// DeviceID and PublicKey are mandatory.
type DeviceRequest struct {
	// DeviceID is the id the certificate names: the one the platform
	// assigned at enrollment, or the session's at renewal. Never taken from
	// the request.
	DeviceID string
	// PublicKey is the key the certificate must certify: the identity key
	// the device enrolled with (EnrollRequest.PublicKey, Device
	// spec.publicKey), or at renewal the key of the session's certificate.
	PublicKey crypto.PublicKey
	// Lifetime defaults to DefaultDeviceLifetime.
	Lifetime time.Duration
}

// IssueDeviceFromCSR signs a device certificate request from the device CA
// after checking it against want:
//
//   - want names a valid device id and a public key (ErrMissingExpectation,
//     ErrInvalidDeviceID);
//   - the request's key is an accepted one (ErrUnsupportedKey) and equal
//     to want.PublicKey (ErrKeyMismatch);
//   - its self-signature verifies: the requester holds the private key
//     (ErrCSRSignature);
//   - it asks for no name but the device's: an empty or equal common name,
//     no URI but urn:wasmbed:device:<id>, no DNS name, IP or e-mail address
//     (ErrRequestedName).
//
// Refusals are *RequestError values. The certificate carries want.DeviceID
// and the key and nothing else from the request.
func (a *Authority) IssueDeviceFromCSR(csr *x509.CertificateRequest, want DeviceRequest) (*Certificate, error) {
	if csr == nil {
		return nil, requestError(ErrMissingExpectation, nil, nil, "no certificate request")
	}
	if want.PublicKey == nil {
		return nil, requestError(ErrMissingExpectation, csr, nil, "no expected public key")
	}
	if err := ValidateDeviceID(want.DeviceID); err != nil {
		return nil, requestError(ErrInvalidDeviceID, csr, err, "expected device id")
	}
	if err := checkRequest(csr, want.PublicKey); err != nil {
		return nil, err
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != want.DeviceID {
		return nil, requestError(ErrRequestedName, csr, nil, "common name %q, expected device %q", cn, want.DeviceID)
	}
	for _, u := range csr.URIs {
		if u.String() != DeviceURI(want.DeviceID).String() {
			return nil, requestError(ErrRequestedName, csr, nil, "URI %s, expected device %q", u, want.DeviceID)
		}
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, requestError(ErrRequestedName, csr, nil, "a device certificate names no host or mailbox")
	}
	return a.IssueDevice(csr.PublicKey, DeviceOptions{DeviceID: want.DeviceID, Lifetime: want.Lifetime})
}

// GatewayRequest is what the signer of a gateway certificate request
// expects. Name and at least one DNS name or IP address are mandatory.
type GatewayRequest struct {
	// Name is the Subject CN, the gateway replica's name.
	Name string
	// DNSNames and IPAddresses are the names devices dial. The certificate
	// carries all of them; the request may ask for a subset.
	DNSNames    []string
	IPAddresses []net.IP
	// PublicKey, when set, is the key the certificate must certify. A
	// gateway that requests its first certificate has no key the signer
	// knows; the signer then relies on who submitted the request.
	PublicKey crypto.PublicKey
	// Lifetime defaults to DefaultGatewayLifetime: gateway certificates are
	// short-lived and renewed by asking again.
	Lifetime time.Duration
}

// IssueGatewayFromCSR signs a gateway certificate request from the gateway
// CA after checking it against want: a name and at least one DNS name or
// IP address are expected (ErrMissingExpectation); the request's key is
// accepted (ErrUnsupportedKey), equal to want.PublicKey when set
// (ErrKeyMismatch) and its self-signature verifies (ErrCSRSignature); it
// asks for no name outside want — common name empty or want.Name, DNS names
// and IP addresses among want's, no URI or e-mail address
// (ErrRequestedName). The certificate carries want's names.
func (a *Authority) IssueGatewayFromCSR(csr *x509.CertificateRequest, want GatewayRequest) (*Certificate, error) {
	if csr == nil {
		return nil, requestError(ErrMissingExpectation, nil, nil, "no certificate request")
	}
	if want.Name == "" || len(want.DNSNames)+len(want.IPAddresses) == 0 {
		return nil, requestError(ErrMissingExpectation, csr, nil, "a gateway name and at least one DNS name or IP address are expected")
	}
	if err := checkRequest(csr, want.PublicKey); err != nil {
		return nil, err
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != want.Name {
		return nil, requestError(ErrRequestedName, csr, nil, "common name %q, expected %q", cn, want.Name)
	}
	for _, n := range csr.DNSNames {
		if !slices.Contains(want.DNSNames, n) {
			return nil, requestError(ErrRequestedName, csr, nil, "DNS name %q not expected", n)
		}
	}
	for _, ip := range csr.IPAddresses {
		if !slices.ContainsFunc(want.IPAddresses, ip.Equal) {
			return nil, requestError(ErrRequestedName, csr, nil, "IP address %s not expected", ip)
		}
	}
	if len(csr.URIs)+len(csr.EmailAddresses) > 0 {
		return nil, requestError(ErrRequestedName, csr, nil, "a gateway certificate names no URI or mailbox")
	}
	return a.issueGateway(csr.PublicKey, want.Name, want.DNSNames, want.IPAddresses, want.Lifetime)
}

// checkRequest checks the request's key (accepted, equal to want when want
// is not nil) and then its signature.
func checkRequest(csr *x509.CertificateRequest, want crypto.PublicKey) error {
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return requestError(ErrUnsupportedKey, csr, err, "request key")
	}
	if want != nil && !keysEqual(csr.PublicKey, want) {
		return requestError(ErrKeyMismatch, csr, nil, "request for key %s, expected %s", fingerprintOrType(csr.PublicKey), fingerprintOrType(want))
	}
	if err := csr.CheckSignature(); err != nil {
		return requestError(ErrCSRSignature, csr, err, "")
	}
	return nil
}

func fingerprintOrType(pub crypto.PublicKey) string {
	if fp, err := Fingerprint(pub); err == nil {
		return "sha256:" + fp[:16]
	}
	return fmt.Sprintf("%T", pub)
}

func keysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// NewDeviceCSR creates a DER certificate signing request for a device key.
// With a device id it names it as Subject CN and URI SAN (renewal); without
// one (enrollment, when the platform has not assigned an id yet) the
// request names nothing and only proves possession of the key.
func NewDeviceCSR(key crypto.Signer, deviceID string) ([]byte, error) {
	if err := CheckPrivateKey(key); err != nil {
		return nil, fmt.Errorf("new device request: %w", err)
	}
	tmpl := &x509.CertificateRequest{}
	if deviceID != "" {
		if err := ValidateDeviceID(deviceID); err != nil {
			return nil, fmt.Errorf("new device request: %w", err)
		}
		tmpl.Subject = pkix.Name{CommonName: deviceID}
		tmpl.URIs = append(tmpl.URIs, DeviceURI(deviceID))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("new device request: %w", err)
	}
	return der, nil
}

// NewGatewayCSR creates a DER certificate signing request for a gateway
// key, naming the replica (Subject CN) and the DNS names and IP addresses
// devices dial.
func NewGatewayCSR(key crypto.Signer, name string, dnsNames []string, ips []net.IP) ([]byte, error) {
	if err := CheckPrivateKey(key); err != nil {
		return nil, fmt.Errorf("new gateway request: %w", err)
	}
	if name == "" {
		return nil, errors.New("new gateway request: name is required")
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}, DNSNames: dnsNames, IPAddresses: ips}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("new gateway request: %w", err)
	}
	return der, nil
}
