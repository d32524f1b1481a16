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
	"slices"
	"time"
)

// Default lifetimes. Leaf certificates are short-lived on purpose: a device
// renews at two thirds of the lifetime (see RenewAt), so a revoked or lost
// device stops being able to connect within a day even without revocation;
// a gateway certificate stolen from a replica is worthless within three
// days.
const (
	DefaultRootLifetime         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateLifetime = 5 * 365 * 24 * time.Hour
	DefaultGatewayLifetime      = 72 * time.Hour
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
	// ExtKeyUsage, for an intermediate, restricts the leaves it can issue:
	// chain verification (x509.Verify) refuses a leaf whose requested usage
	// an intermediate above it does not list. Empty means unrestricted;
	// NewRootCA ignores it.
	ExtKeyUsage []x509.ExtKeyUsage
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
// ExtKeyUsage from opts (the kinds of leaf it may issue), SubjectKeyId, and
// AuthorityKeyId from parent. Its NotAfter is capped at the parent's.
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
	tmpl.ExtKeyUsage = slices.Clone(opts.ExtKeyUsage)
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

// DER returns the leaf followed by the chain, DER encoded: the form of the
// protocol's EnrollResponse and RenewResponse chains.
func (c *Certificate) DER() [][]byte {
	return ChainDER(append([]*x509.Certificate{c.Leaf}, c.Chain...)...)
}

// ChainDER returns the certificates' DER encodings, in order.
func ChainDER(certs ...*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
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
	return tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: ChainDER(append([]*x509.Certificate{leaf}, chain...)...)}, nil
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

// Authority is the Wasmbed certificate authority: the root (the trust
// anchor pinned by devices and gateways) and two intermediates below it,
// one per kind of leaf:
//
//   - GatewayCA issues gateway server certificates. Its certificate carries
//     ExtKeyUsage serverAuth only, so nothing it signs can authenticate a
//     device; devices pin it.
//   - DeviceCA issues device client certificates. Its certificate carries
//     ExtKeyUsage clientAuth only, so nothing it signs can authenticate a
//     gateway; gateways accept device certificates from it alone.
//
// Each part may be loaded without its key: a gateway holds no CA key at
// all, the controller holds the two intermediate keys, the root key can
// stay offline. It is safe for concurrent use once built.
type Authority struct {
	// Root is the trust anchor. Root.Key may be nil (kept offline).
	Root *CA
	// GatewayCA issues gateway certificates; GatewayCA.Key must be set to issue.
	GatewayCA *CA
	// DeviceCA issues device certificates; DeviceCA.Key must be set to issue.
	DeviceCA *CA
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// Default common names of the CAs NewAuthority creates.
const (
	DefaultRootCommonName      = "Wasmbed Root CA"
	DefaultGatewayCACommonName = "Wasmbed Gateway CA"
	DefaultDeviceCACommonName  = "Wasmbed Device CA"
)

// AuthorityOptions configure NewAuthority. Zero values give the defaults.
type AuthorityOptions struct {
	// Organization is the Subject O of the CAs; DefaultOrganization when empty.
	Organization string
	// RootCommonName, GatewayCACommonName and DeviceCACommonName default to
	// DefaultRootCommonName, DefaultGatewayCACommonName and
	// DefaultDeviceCACommonName.
	RootCommonName      string
	GatewayCACommonName string
	DeviceCACommonName  string
	// Algorithm of the CA keys; DefaultKeyAlgorithm when empty.
	Algorithm KeyAlgorithm
	// RootLifetime and IntermediateLifetime default to DefaultRootLifetime and
	// DefaultIntermediateLifetime; the latter applies to both intermediates.
	RootLifetime         time.Duration
	IntermediateLifetime time.Duration
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// NewAuthority creates a fresh root, gateway CA and device CA.
func NewAuthority(opts AuthorityOptions) (*Authority, error) {
	cn := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	root, err := NewRootCA(CAOptions{CommonName: cn(opts.RootCommonName, DefaultRootCommonName), Organization: opts.Organization,
		Algorithm: opts.Algorithm, Lifetime: opts.RootLifetime, Clock: opts.Clock})
	if err != nil {
		return nil, err
	}
	inter := func(name string, usage x509.ExtKeyUsage) (*CA, error) {
		return NewIntermediateCA(root, CAOptions{CommonName: name, Organization: opts.Organization, Algorithm: opts.Algorithm,
			Lifetime: opts.IntermediateLifetime, Clock: opts.Clock, ExtKeyUsage: []x509.ExtKeyUsage{usage}})
	}
	gw, err := inter(cn(opts.GatewayCACommonName, DefaultGatewayCACommonName), x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	dev, err := inter(cn(opts.DeviceCACommonName, DefaultDeviceCACommonName), x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	return &Authority{Root: root, GatewayCA: gw, DeviceCA: dev, Clock: opts.Clock}, nil
}

// Validate checks the shape of the authority: the root and both
// intermediates are CA certificates; each intermediate is issued by the
// root and restricted to its one kind of leaf (GatewayCA to serverAuth,
// DeviceCA to clientAuth); the two intermediates have different keys; and
// loaded keys match their certificates.
func (a *Authority) Validate() error {
	if a == nil || a.Root == nil || a.Root.Cert == nil || a.GatewayCA == nil || a.GatewayCA.Cert == nil ||
		a.DeviceCA == nil || a.DeviceCA.Cert == nil {
		return errors.New("authority: root, gateway CA and device CA certificates are required")
	}
	for _, ca := range []*CA{a.Root, a.GatewayCA, a.DeviceCA} {
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
	for _, c := range []struct {
		ca    *CA
		usage x509.ExtKeyUsage
	}{{a.GatewayCA, x509.ExtKeyUsageServerAuth}, {a.DeviceCA, x509.ExtKeyUsageClientAuth}} {
		if err := c.ca.Cert.CheckSignatureFrom(a.Root.Cert); err != nil {
			return certError(ErrUnknownAuthority, c.ca.Cert, "intermediate not signed by root "+a.Root.Cert.Subject.String(), err)
		}
		if !slices.Equal(c.ca.Cert.ExtKeyUsage, []x509.ExtKeyUsage{c.usage}) || len(c.ca.Cert.UnknownExtKeyUsage) != 0 {
			return certError(ErrKeyUsage, c.ca.Cert, fmt.Sprintf("intermediate must be restricted to %s, has %s",
				extKeyUsageNames([]x509.ExtKeyUsage{c.usage}), extKeyUsageNames(c.ca.Cert.ExtKeyUsage)), nil)
		}
	}
	if keysEqual(a.GatewayCA.Cert.PublicKey, a.DeviceCA.Cert.PublicKey) {
		return certError(ErrKeyUsage, a.DeviceCA.Cert, "gateway CA and device CA share a key", nil)
	}
	return nil
}

// DeviceVerifier returns the Verifier a gateway checks device certificates
// with: trusting a's root and accepting only leaves issued directly by a's
// device CA, with the given revocation checker (may be nil).
func (a *Authority) DeviceVerifier(rc RevocationChecker) (*Verifier, error) {
	if a == nil || a.Root == nil || a.DeviceCA == nil {
		return nil, errors.New("device verifier: authority has no root or device CA")
	}
	return NewVerifier(VerifierConfig{Root: a.Root.Cert, Issuer: a.DeviceCA.Cert, Revocation: rc, Clock: a.Clock})
}

// GatewayVerifier returns a Verifier that accepts only gateway
// certificates issued directly by a's gateway CA: what a device checks.
func (a *Authority) GatewayVerifier() (*Verifier, error) {
	if a == nil || a.Root == nil || a.GatewayCA == nil {
		return nil, errors.New("gateway verifier: authority has no root or gateway CA")
	}
	return NewVerifier(VerifierConfig{Root: a.Root.Cert, Issuer: a.GatewayCA.Cert, Clock: a.Clock})
}

// issuer returns ca if it can sign.
func issuer(ca *CA, what string) (*CA, error) {
	if ca == nil || ca.Cert == nil {
		return nil, fmt.Errorf("authority has no %s", what)
	}
	if ca.Key == nil {
		return nil, fmt.Errorf("%s %q: %w", what, ca.Cert.Subject.CommonName, ErrNoKey)
	}
	return ca, nil
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
// from the gateway CA, for a key it generates (or opts.Key). The returned
// Certificate carries the key. It serves tools and tests that hold the
// gateway CA key; in a cluster gateways send a request signed with
// IssueGatewayFromCSR instead, so no gateway ever holds a CA key.
func (a *Authority) IssueGateway(opts GatewayOptions) (*Certificate, error) {
	key := opts.Key
	if key == nil {
		var err error
		if key, err = GenerateKey(opts.Algorithm); err != nil {
			return nil, fmt.Errorf("issue gateway certificate %q: %w", opts.Name, err)
		}
	}
	c, err := a.issueGateway(key.Public(), opts.Name, opts.DNSNames, opts.IPAddresses, opts.Lifetime)
	if err != nil {
		return nil, err
	}
	c.Key = key
	return c, nil
}

func (a *Authority) issueGateway(pub crypto.PublicKey, name string, dnsNames []string, ips []net.IP, lifetime time.Duration) (*Certificate, error) {
	if name == "" {
		return nil, errors.New("issue gateway certificate: name is required")
	}
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, fmt.Errorf("issue gateway certificate %q: at least one DNS name or IP address is required", name)
	}
	ca, err := issuer(a.GatewayCA, "gateway CA")
	if err != nil {
		return nil, fmt.Errorf("issue gateway certificate %q: %w", name, err)
	}
	tmpl, err := baseTemplate(name, "", pub, a.Clock, lifetime, DefaultGatewayLifetime)
	if err != nil {
		return nil, fmt.Errorf("issue gateway certificate %q: %w", name, err)
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.DNSNames = slices.Clone(dnsNames)
	tmpl.IPAddresses = slices.Clone(ips)
	capNotAfter(tmpl, ca.Cert)
	cert, err := sign(tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue gateway certificate %q: %w", name, err)
	}
	return &Certificate{Leaf: cert, Chain: []*x509.Certificate{ca.Cert}}, nil
}

// DeviceOptions configure IssueDevice.
type DeviceOptions struct {
	// DeviceID goes into the Subject CN and the URI SAN urn:wasmbed:device:<id>.
	// Required.
	DeviceID string
	// Lifetime defaults to DefaultDeviceLifetime.
	Lifetime time.Duration
}

// IssueDevice issues a device client certificate (ExtKeyUsageClientAuth)
// from the device CA for pub, which must be an accepted key (CheckPublicKey).
// The device id is written to the Subject CN and as the URI SAN
// urn:wasmbed:device:<id>. It certifies a key the caller vouches for (an
// operator pre-registering a device); enrollment and renewal, where the
// key comes with a request, use IssueDeviceFromCSR.
func (a *Authority) IssueDevice(pub crypto.PublicKey, opts DeviceOptions) (*Certificate, error) {
	if err := ValidateDeviceID(opts.DeviceID); err != nil {
		return nil, fmt.Errorf("issue device certificate: %w", err)
	}
	if err := CheckPublicKey(pub); err != nil {
		return nil, fmt.Errorf("issue device certificate %q: %w", opts.DeviceID, err)
	}
	ca, err := issuer(a.DeviceCA, "device CA")
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
