package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Callers branch on them with errors.Is; the concrete error
// is usually a *CertificateError or *UnsupportedKeyError carrying the detail.
var (
	// ErrUnknownAuthority: the certificate does not chain to the trusted root,
	// or was not issued by the expected issuing CA (wrong CA).
	ErrUnknownAuthority = errors.New("certificate signed by unknown authority")
	// ErrExpired: the certificate (or a CA above it) is past its NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: the certificate (or a CA above it) is before its NotBefore.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrRevoked: the certificate's serial or public key has been revoked.
	ErrRevoked = errors.New("certificate revoked")
	// ErrKeyUsage: the certificate is not valid for the requested usage, e.g. a
	// gateway server certificate presented as a device client certificate.
	ErrKeyUsage = errors.New("certificate not valid for this key usage")
	// ErrNameMismatch: the gateway certificate does not cover the server name dialled.
	ErrNameMismatch = errors.New("certificate not valid for server name")
	// ErrInvalidCertificate: any other reason a certificate is refused
	// (malformed, missing device identity, bad chain shape).
	ErrInvalidCertificate = errors.New("invalid certificate")
	// ErrNoCertificate: the peer presented no certificate where one is required.
	ErrNoCertificate = errors.New("no certificate presented")
	// ErrUnsupportedKey: a key algorithm or parameter outside the accepted set
	// (Ed25519, ECDSA P-256). Weak keys (RSA < 2048, other curves) land here.
	ErrUnsupportedKey = errors.New("unsupported key algorithm")
	// ErrMalformedPEM: input is not the PEM (or DER) object expected.
	ErrMalformedPEM = errors.New("malformed PEM")
	// ErrTooLarge: input exceeds MaxInputSize (or MaxEncodedKeyLen) and was not parsed.
	ErrTooLarge = errors.New("input too large")
	// ErrCSRSignature: a certificate signing request's self-signature does not verify.
	ErrCSRSignature = errors.New("certificate request signature invalid")
	// ErrInvalidDeviceID: a device id outside the accepted syntax (see ValidateDeviceID).
	ErrInvalidDeviceID = errors.New("invalid device id")
	// ErrExists: a file would be overwritten and overwriting was not requested.
	ErrExists = errors.New("file already exists")
	// ErrNoKey: an operation needs a CA private key that is not loaded.
	ErrNoKey = errors.New("private key not available")
)

// CertificateError reports why a certificate was refused. Reason is one of
// the sentinel errors above; Err, when set, is the underlying cause (for
// example the crypto/x509 error). errors.Is matches both.
type CertificateError struct {
	// Reason is the sentinel error callers branch on (ErrExpired, ...).
	Reason error
	// Subject is the refused certificate's subject, Serial its hex serial.
	Subject string
	Serial  string
	// Detail is human-readable context, e.g. the validity window and the time checked.
	Detail string
	// Err is the underlying cause, if any.
	Err error
}

// Error implements error.
func (e *CertificateError) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason.Error())
	if e.Subject != "" || e.Serial != "" {
		fmt.Fprintf(&b, " (subject %q, serial %s)", e.Subject, e.Serial)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is/As see both the reason and the cause.
func (e *CertificateError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

func certError(reason error, cert *x509.Certificate, detail string, cause error) *CertificateError {
	e := &CertificateError{Reason: reason, Detail: detail, Err: cause}
	if cert != nil {
		e.Subject = cert.Subject.String()
		if cert.SerialNumber != nil {
			e.Serial = cert.SerialNumber.Text(16)
		}
	}
	return e
}

// UnsupportedKeyError reports a key outside the accepted set. It matches
// ErrUnsupportedKey with errors.Is.
type UnsupportedKeyError struct {
	// Algorithm names the key type found, e.g. "RSA-1024", "ECDSA P-384", "DSA".
	Algorithm string
	// Reason says why it is refused.
	Reason string
	// Err is the underlying cause, if any (an *edkey.Error for a weak
	// Ed25519 key).
	Err error
}

// Error implements error.
func (e *UnsupportedKeyError) Error() string {
	return fmt.Sprintf("unsupported key algorithm %s: %s (accepted: Ed25519, ECDSA P-256)", e.Algorithm, e.Reason)
}

// Is makes errors.Is(err, ErrUnsupportedKey) true.
func (e *UnsupportedKeyError) Is(target error) bool { return target == ErrUnsupportedKey }

// Unwrap returns the cause, if any.
func (e *UnsupportedKeyError) Unwrap() error { return e.Err }

// translateVerifyError maps a crypto/x509 verification error to a typed
// CertificateError with one of the package's sentinel reasons.
func translateVerifyError(err error, leaf *x509.Certificate, now time.Time) error {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
	)
	switch {
	case errors.As(err, &unknown):
		return certError(ErrUnknownAuthority, leaf, "", err)
	case errors.As(err, &hostname):
		return certError(ErrNameMismatch, leaf, "", err)
	case errors.As(err, &invalid):
		c := invalid.Cert
		if c == nil {
			c = leaf
		}
		switch invalid.Reason {
		case x509.Expired:
			window := fmt.Sprintf("%q valid from %s to %s, checked at %s",
				c.Subject.String(), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
			if now.Before(c.NotBefore) {
				return certError(ErrNotYetValid, leaf, window, nil)
			}
			return certError(ErrExpired, leaf, window, nil)
		case x509.IncompatibleUsage:
			return certError(ErrKeyUsage, leaf, fmt.Sprintf("extended key usages %s", extKeyUsageNames(leaf.ExtKeyUsage)), err)
		case x509.NotAuthorizedToSign, x509.CANotAuthorizedForThisName, x509.TooManyIntermediates:
			return certError(ErrUnknownAuthority, leaf, "", err)
		}
	}
	return certError(ErrInvalidCertificate, leaf, "", err)
}
