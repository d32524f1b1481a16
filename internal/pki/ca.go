package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Default lifetimes. Device certificates are short-lived on purpose: a device
// renews at two thirds of the lifetime (see RenewAt), so a revoked or lost
// device stops being able to connect within a day even without revocation.
const (
	DefaultRootLifetime         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateLifetime = 5 * 365 * 24 * time.Hour
	DefaultGatewayLifetime      = 90 * 24 * time.Hour
	DefaultDeviceLifetime       = 24 * time.Hour

	// ClockSkew is how far NotBefore is backdated from the issuing clock, so a
	// freshly issued certificate is accepted by a peer whose clock lags a little.
	ClockSkew = 5 * time.Minute

	// DefaultOrganization is the Subject O of certificates created here.
	DefaultOrganization = "Wasmbed"
)

// serialLimit is 2^128: serials are 128 random bits (RFC 5280 allows up to 20 octets).
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// CA is a certificate authority: its certificate and, when loaded, its key.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs certificates. It may be nil for a root kept offline; such a CA
	// can anchor verification but not issue.
	Key crypto.Signer
}

// CAOptions configure NewRootCA and NewIntermediateCA.
type CAOptions struct {
	// CommonName is the Subject CN. Required.
	CommonName string
	// Organization is the Subject O; DefaultOrganization when empty.
	Organization string
	// Algorithm selects the generated key; DefaultKeyAlgorithm when empty.
	Algorithm KeyAlgorithm
	// Key, when set, is used instead of generating one.
	Key crypto.Signer
	// Lifetime of the certificate; the role's default when zero.
	Lifetime time.Duration
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// NewRootCA creates a self-signed root CA: BasicConstraints CA with
// MaxPathLen 1 (one intermediate below it), KeyUsage CertSign|CRLSign and a
// SubjectKeyId.
func NewRootCA(opts CAOptions) (*CA, error) {
	key, err := caKey(opts)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	tmpl, err := caTemplate(opts, key.Public(), DefaultRootLifetime)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	tmpl.MaxPathLen = 1
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new root CA: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewIntermediateCA creates an intermediate CA signed by parent: BasicConstraints
// CA with MaxPathLen 0 (it signs only leaves), KeyUsage CertSign|CRLSign,
// SubjectKeyId, and AuthorityKeyId from parent. Its NotAfter is capped at the
// parent's.
func NewIntermediateCA(parent *CA, opts CAOptions) (*CA, error) {
	if parent == nil || parent.Cert == nil {
		return nil, errors.New("new intermediate CA: no parent CA")
	}
	if parent.Key == nil {
		return nil, fmt.Errorf("new intermediate CA: parent %q: %w", parent.Cert.Subject.CommonName, ErrNoKey)
	}
	key, err := caKey(opts)
	if err != nil {
		return nil, fmt.Errorf("new intermediate CA: %w", err)
	}
	tmpl, err := caTemplate(opts, key.Public(), DefaultIntermediateLifetime)
	if err != nil {
		return nil, fmt.Errorf("new intermediate CA: %w", err)
	}
	tmpl.MaxPathLen = 0
	tmpl.MaxPathLenZero = true
	capNotAfter(tmpl, parent.Cert)
	cert, err := sign(tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		return nil, fmt.Errorf("new intermediate CA: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func caKey(opts CAOptions) (crypto.Signer, error) {
	if opts.Key != nil {
		if err := CheckPrivateKey(opts.Key); err != nil {
			return nil, err
		}
		return opts.Key, nil
	}
	return GenerateKey(opts.Algorithm)
}

func caTemplate(opts CAOptions, pub crypto.PublicKey, defaultLifetime time.Duration) (*x509.Certificate, error) {
	if opts.CommonName == "" {
		return nil, errors.New("common name is required")
	}
	tmpl, err := baseTemplate(opts.CommonName, opts.Organization, pub, opts.Clock, opts.Lifetime, defaultLifetime)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	return tmpl, nil
}

func baseTemplate(cn, org string, pub crypto.PublicKey, clock func() time.Time, lifetime, defaultLifetime time.Duration) (*x509.Certificate, error) {
	if lifetime < 0 {
		return nil, fmt.Errorf("negative lifetime %s", lifetime)
	}
	if lifetime == 0 {
		lifetime = defaultLifetime
	}
	if org == "" {
		org = DefaultOrganization
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	now := now(clock)
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(lifetime),
		SubjectKeyId:          skid,
		BasicConstraintsValid: true,
	}, nil
}

// capNotAfter keeps a certificate from outliving its issuer.
func capNotAfter(tmpl, issuer *x509.Certificate) {
	if tmpl.NotAfter.After(issuer.NotAfter) {
		tmpl.NotAfter = issuer.NotAfter
	}
}

func now(clock func() time.Time) time.Time {
	if clock == nil {
		return time.Now()
	}
	return clock()
}

// NewSerial returns a random positive 128-bit certificate serial number.
func NewSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	if err := CheckPublicKey(pub); err != nil {
		return nil, err
	}
	if err := CheckPrivateKey(parentKey); err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse signed certificate: %w", err)
	}
	return cert, nil
}

// Certificate is an issued leaf certificate with the chain that a peer needs
// to reach the root, and the private key when it was generated here.
type Certificate struct {
	// Leaf is the issued certificate.
	Leaf *x509.Certificate
	// Chain holds the issuing CAs, the leaf's issuer first, root excluded.
	Chain []*x509.Certificate
	// Key is the leaf's private key; nil when issued for a caller's public key.
	Key crypto.Signer
}

// TLSCertificate returns the leaf, chain and key as a tls.Certificate, ready
// for ServerOptions.Certificate or ClientOptions.Certificate.
func (c *Certificate) TLSCertificate() (tls.Certificate, error) {
	if c.Key == nil {
		return tls.Certificate{}, fmt.Errorf("tls certificate %q: %w", c.Leaf.Subject.CommonName, ErrNoKey)
	}
	return NewTLSCertificate(c.Key, c.Leaf, c.Chain...)
}

// NewTLSCertificate assembles a tls.Certificate from a key, its leaf and the
// chain above it (root excluded), checking that key and leaf belong together.
func NewTLSCertificate(key crypto.Signer, leaf *x509.Certificate, chain ...*x509.Certificate) (tls.Certificate, error) {
	if err := keyMatches(leaf, key); err != nil {
		return tls.Certificate{}, err
	}
	tc := tls.Certificate{PrivateKey: key, Leaf: leaf}
	tc.Certificate = append(tc.Certificate, leaf.Raw)
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

func keyMatches(cert *x509.Certificate, key crypto.Signer) error {
	if cert == nil || key == nil {
		return fmt.Errorf("key pair: %w", ErrNoKey)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("key pair: private key does not match certificate %q", cert.Subject.CommonName)
	}
	return nil
}

// Authority is the Wasmbed CA pair: the root (trust anchor pinned by devices
// and gateways) and the intermediate that issues gateway and device
// certificates (the "device CA"). It is safe for concurrent use once built.
type Authority struct {
	// Root is the trust anchor. Root.Key may be nil (kept offline).
	Root *CA
	// Intermediate issues leaves. Intermediate.Key must be set to issue.
	Intermediate *CA
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// AuthorityOptions configure NewAuthority. Zero values give the defaults.
type AuthorityOptions struct {
	// Organization is the Subject O of both CAs; DefaultOrganization when empty.
	Organization string
	// RootCommonName defaults to "Wasmbed Root CA".
	RootCommonName string
	// IntermediateCommonName defaults to "Wasmbed Intermediate CA".
	IntermediateCommonName string
	// Algorithm of both CA keys; DefaultKeyAlgorithm when empty.
	Algorithm KeyAlgorithm
	// RootLifetime and IntermediateLifetime default to DefaultRootLifetime and
	// DefaultIntermediateLifetime.
	RootLifetime         time.Duration
	IntermediateLifetime time.Duration
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// NewAuthority creates a fresh root and intermediate CA.
func NewAuthority(opts AuthorityOptions) (*Authority, error) {
	rootCN := opts.RootCommonName
	if rootCN == "" {
		rootCN = "Wasmbed Root CA"
	}
	interCN := opts.IntermediateCommonName
	if interCN == "" {
		interCN = "Wasmbed Intermediate CA"
	}
	root, err := NewRootCA(CAOptions{CommonName: rootCN, Organization: opts.Organization, Algorithm: opts.Algorithm, Lifetime: opts.RootLifetime, Clock: opts.Clock})
	if err != nil {
		return nil, err
	}
	inter, err := NewIntermediateCA(root, CAOptions{CommonName: interCN, Organization: opts.Organization, Algorithm: opts.Algorithm, Lifetime: opts.IntermediateLifetime, Clock: opts.Clock})
	if err != nil {
		return nil, err
	}
	return &Authority{Root: root, Intermediate: inter, Clock: opts.Clock}, nil
}

// Validate checks that the intermediate is a CA issued by the root and that
// loaded keys match their certificates.
func (a *Authority) Validate() error {
	if a == nil || a.Root == nil || a.Root.Cert == nil || a.Intermediate == nil || a.Intermediate.Cert == nil {
		return errors.New("authority: root and intermediate certificates are required")
	}
	for _, ca := range []*CA{a.Root, a.Intermediate} {
		if !ca.Cert.IsCA || !ca.Cert.BasicConstraintsValid || ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
			return certError(ErrKeyUsage, ca.Cert, "not a CA certificate", nil)
		}
		if err := CheckPublicKey(ca.Cert.PublicKey); err != nil {
			return fmt.Errorf("authority %q: %w", ca.Cert.Subject.CommonName, err)
		}
		if ca.Key != nil {
			if err := keyMatches(ca.Cert, ca.Key); err != nil {
				return fmt.Errorf("authority: %w", err)
			}
		}
	}
	if err := a.Intermediate.Cert.CheckSignatureFrom(a.Root.Cert); err != nil {
		return certError(ErrUnknownAuthority, a.Intermediate.Cert, "intermediate not signed by root "+a.Root.Cert.Subject.String(), err)
	}
	return nil
}

// Verifier returns a Verifier trusting a's root and accepting only leaves
// issued by a's intermediate, with the given revocation checker (may be nil).
func (a *Authority) Verifier(rc RevocationChecker) (*Verifier, error) {
	if a == nil || a.Root == nil || a.Intermediate == nil {
		return nil, errors.New("verifier: authority has no root or intermediate")
	}
	return NewVerifier(VerifierConfig{
		Root:       a.Root.Cert,
		Issuer:     a.Intermediate.Cert,
		Revocation: rc,
		Clock:      a.Clock,
	})
}

func (a *Authority) issuer() (*CA, error) {
	if a == nil || a.Intermediate == nil || a.Intermediate.Cert == nil {
		return nil, errors.New("authority has no intermediate CA")
	}
	if a.Intermediate.Key == nil {
		return nil, fmt.Errorf("intermediate %q: %w", a.Intermediate.Cert.Subject.CommonName, ErrNoKey)
	}
	return a.Intermediate, nil
}

// GatewayOptions configure IssueGateway.
type GatewayOptions struct {
	// Name is the Subject CN, e.g. the gateway replica name. Required.
	Name string
	// DNSNames and IPAddresses are the names devices dial; at least one is required.
	DNSNames    []string
	IPAddresses []net.IP
	// Lifetime defaults to DefaultGatewayLifetime.
	Lifetime time.Duration
	// Algorithm of the generated key; DefaultKeyAlgorithm when empty.
	Algorithm KeyAlgorithm
	// Key, when set, is certified instead of generating one.
	Key crypto.Signer
}

// IssueGateway issues a gateway server certificate (ExtKeyUsageServerAuth)
// from the intermediate. The returned Certificate carries the key.
func (a *Authority) IssueGateway(opts GatewayOptions) (*Certificate, error) {
	if opts.Name == "" {
		return nil, errors.New("issue gateway certificate: name is required")
	}
	if len(opts.DNSNames) == 0 && len(opts.IPAddresses) == 0 {
		return nil, fmt.Errorf("issue gateway certificate %q: at least one DNS name or IP address is required", opts.Name)
	}
	ca, err := a.issuer()
	if err != nil {
		return nil, fmt.Errorf("issue gateway certificate %q: %w", opts.Name, err)
	}
	key := opts.Key
	if key == nil {
		if key, err = GenerateKey(opts.Algorithm); err != nil {
			return nil, fmt.Errorf("issue gateway certificate %q: %w", opts.Name, err)
		}
	}
	tmpl, err := baseTemplate(opts.Name, "", key.Public(), a.Clock, opts.Lifetime, DefaultGatewayLifetime)
	if err != nil {
		return nil, fmt.Errorf("issue gateway certificate %q: %w", opts.Name, err)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames = opts.DNSNames
	tmpl.IPAddresses = opts.IPAddresses
	capNotAfter(tmpl, ca.Cert)
	cert, err := sign(tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue gateway certificate %q: %w", opts.Name, err)
	}
	return &Certificate{Leaf: cert, Chain: []*x509.Certificate{ca.Cert}, Key: key}, nil
}

// DeviceOptions configure IssueDevice and IssueDeviceFromCSR.
type DeviceOptions struct {
	// DeviceID goes into the Subject CN and the URI SAN urn:wasmbed:device:<id>.
	// Required for IssueDevice; IssueDeviceFromCSR falls back to the CSR's CN.
	DeviceID string
	// Lifetime defaults to DefaultDeviceLifetime.
	Lifetime time.Duration
}

// IssueDevice issues a device client certificate (ExtKeyUsageClientAuth) for
// pub, which must be Ed25519 or ECDSA P-256. The device id is written to the
// Subject CN and as the URI SAN urn:wasmbed:device:<id>.
func (a *Authority) IssueDevice(pub crypto.PublicKey, opts DeviceOptions) (*Certificate, error) {
	if err := ValidateDeviceID(opts.DeviceID); err != nil {
		return nil, fmt.Errorf("issue device certificate: %w", err)
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("issue device certificate %q: %w", opts.DeviceID, err)
	}
	ca, err := a.issuer()
	if err != nil {
		return nil, fmt.Errorf("issue device certificate %q: %w", opts.DeviceID, err)
	}
	tmpl, err := baseTemplate(opts.DeviceID, "", pub, a.Clock, opts.Lifetime, DefaultDeviceLifetime)
	if err != nil {
		return nil, fmt.Errorf("issue device certificate %q: %w", opts.DeviceID, err)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tmpl.URIs = append(tmpl.URIs, DeviceURI(opts.DeviceID))
	capNotAfter(tmpl, ca.Cert)
	cert, err := sign(tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue device certificate %q: %w", opts.DeviceID, err)
	}
	return &Certificate{Leaf: cert, Chain: []*x509.Certificate{ca.Cert}}, nil
}

// IssueDeviceFromCSR verifies the request's signature (ErrCSRSignature if it
// does not verify) and issues a device certificate for its public key. Only
// the key (and, when opts.DeviceID is empty, the Subject CN) is taken from
// the request; all other requested attributes are ignored.
func (a *Authority) IssueDeviceFromCSR(csr *x509.CertificateRequest, opts DeviceOptions) (*Certificate, error) {
	if csr == nil {
		return nil, fmt.Errorf("issue device certificate: no certificate request: %w", ErrMalformedPEM)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("issue device certificate from request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("issue device certificate from request %q: %w: %w", csr.Subject.CommonName, ErrCSRSignature, err)
	}
	if opts.DeviceID == "" {
		opts.DeviceID = csr.Subject.CommonName
	}
	return a.IssueDevice(csr.PublicKey, opts)
}

// NewDeviceCSR creates a DER certificate signing request for a device key,
// with the device id as Subject CN and URI SAN. Firmware uses it to enrol.
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

// RenewAt returns when cert should be renewed: two thirds of the way from
// NotBefore to NotAfter. For a 24h device certificate that is about 16h after
// issuance, leaving eight hours to reach a gateway.
func RenewAt(cert *x509.Certificate) time.Time {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(lifetime / 3 * 2)
}

// NeedsRenewal reports whether now is at or past RenewAt(cert).
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(RenewAt(cert))
}

// ValidityStatus describes cert at now: "not yet valid", "expired",
// "renewal due" (past RenewAt) or "valid".
func ValidityStatus(cert *x509.Certificate, now time.Time) string {
	switch {
	case now.Before(cert.NotBefore):
		return "not yet valid"
	case now.After(cert.NotAfter):
		return "expired"
	case !cert.IsCA && NeedsRenewal(cert, now):
		return "renewal due"
	}
	return "valid"
}
