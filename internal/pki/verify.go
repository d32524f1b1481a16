package pki

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// MaxChainLen bounds the number of certificates a peer may present.
const MaxChainLen = 4

// VerifierConfig configures NewVerifier.
type VerifierConfig struct {
	// Root is the only trust anchor. Required.
	Root *x509.Certificate
	// Issuer, when set, is the CA that must have issued the leaf directly:
	// the intermediate (device CA). A leaf from any other CA, even one under
	// the same root, is refused with ErrUnknownAuthority. Peers may then send
	// the leaf alone; intermediates they send are ignored.
	Issuer *x509.Certificate
	// Intermediates are further CAs usable to build chains. When Issuer is
	// nil, intermediates sent by the peer are used too.
	Intermediates []*x509.Certificate
	// Revocation is consulted after the chain verifies; nil means no check.
	Revocation RevocationChecker
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// Verifier verifies device and gateway certificate chains against a pinned
// root, explicitly with x509.Verify, and reports typed errors
// (*CertificateError with ErrUnknownAuthority, ErrExpired, ErrNotYetValid,
// ErrKeyUsage, ErrRevoked, ...). It is safe for concurrent use.
type Verifier struct {
	cfg   VerifierConfig
	roots *x509.CertPool
	inter *x509.CertPool
}

// NewVerifier checks cfg and builds a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Root == nil {
		return nil, errors.New("new verifier: root certificate is required")
	}
	if !cfg.Root.IsCA {
		return nil, certError(ErrKeyUsage, cfg.Root, "root is not a CA certificate", nil)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cfg.Root)
	inter := x509.NewCertPool()
	if cfg.Issuer != nil {
		if !cfg.Issuer.IsCA {
			return nil, certError(ErrKeyUsage, cfg.Issuer, "issuer is not a CA certificate", nil)
		}
		if !cfg.Issuer.Equal(cfg.Root) {
			inter.AddCert(cfg.Issuer)
		}
	}
	for _, c := range cfg.Intermediates {
		inter.AddCert(c)
	}
	return &Verifier{cfg: cfg, roots: roots, inter: inter}, nil
}

// Root returns the trust anchor.
func (v *Verifier) Root() *x509.Certificate { return v.cfg.Root }

// Revocation returns the configured revocation checker (may be nil).
func (v *Verifier) Revocation() RevocationChecker { return v.cfg.Revocation }

// Now returns the verifier's current time.
func (v *Verifier) Now() time.Time { return now(v.cfg.Clock) }

// VerifyDevice verifies a device client certificate chain (leaf first):
// accepted key algorithm, chain to the root through the issuer,
// ExtKeyUsageClientAuth, validity at the verifier's clock, a well-formed
// device id, and not revoked. A revocation checker error refuses the
// certificate (fail closed).
func (v *Verifier) VerifyDevice(ctx context.Context, chain []*x509.Certificate) (*DeviceIdentity, error) {
	leaf, err := v.verify(chain, x509.ExtKeyUsageClientAuth, "")
	if err != nil {
		return nil, err
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, err
	}
	if err := v.checkRevoked(ctx, leaf); err != nil {
		return nil, err
	}
	return id, nil
}

// VerifyGateway verifies a gateway server certificate chain (leaf first):
// accepted key algorithm, chain to the root, ExtKeyUsageServerAuth, validity,
// serverName (a DNS name or IP address; skipped when empty) and revocation.
func (v *Verifier) VerifyGateway(ctx context.Context, chain []*x509.Certificate, serverName string) error {
	leaf, err := v.verify(chain, x509.ExtKeyUsageServerAuth, serverName)
	if err != nil {
		return err
	}
	return v.checkRevoked(ctx, leaf)
}

// VerifyCA verifies that ca is a CA certificate chaining to the root (the
// root itself included).
func (v *Verifier) VerifyCA(ca *x509.Certificate) error {
	if ca.Equal(v.cfg.Root) {
		return nil
	}
	if !ca.IsCA {
		return certError(ErrKeyUsage, ca, "not a CA certificate", nil)
	}
	_, err := v.verify([]*x509.Certificate{ca}, x509.ExtKeyUsageAny, "")
	return err
}

// Check re-validates a certificate that was verified earlier, for sessions
// that outlive a check: validity window at the verifier's clock and
// revocation. A gateway calls it periodically on live sessions and when a
// revocation is announced (see MemoryRevocation.Subscribe).
func (v *Verifier) Check(ctx context.Context, cert *x509.Certificate) error {
	if cert == nil {
		return ErrNoCertificate
	}
	t := v.Now()
	if t.Before(cert.NotBefore) {
		return certError(ErrNotYetValid, cert, validityDetail(cert, t), nil)
	}
	if t.After(cert.NotAfter) {
		return certError(ErrExpired, cert, validityDetail(cert, t), nil)
	}
	return v.checkRevoked(ctx, cert)
}

func validityDetail(c *x509.Certificate, t time.Time) string {
	return fmt.Sprintf("valid from %s to %s, checked at %s",
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
}

func (v *Verifier) checkRevoked(ctx context.Context, cert *x509.Certificate) error {
	if v.cfg.Revocation == nil {
		return nil
	}
	revoked, err := v.cfg.Revocation.Revoked(ctx, cert)
	if err != nil {
		return certError(ErrRevoked, cert, "revocation status unknown, refusing", err)
	}
	if revoked {
		return certError(ErrRevoked, cert, "", nil)
	}
	return nil
}

func (v *Verifier) verify(chain []*x509.Certificate, usage x509.ExtKeyUsage, serverName string) (*x509.Certificate, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, ErrNoCertificate
	}
	leaf := chain[0]
	if len(chain) > MaxChainLen {
		return nil, certError(ErrInvalidCertificate, leaf, fmt.Sprintf("chain of %d certificates, limit %d", len(chain), MaxChainLen), nil)
	}
	if err := CheckPublicKey(leaf.PublicKey); err != nil {
		return nil, certError(ErrUnsupportedKey, leaf, "", err)
	}
	t := v.Now()
	inter := v.inter
	if v.cfg.Issuer == nil && len(chain) > 1 {
		inter = v.inter.Clone()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
	}
	opts := x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   t,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return nil, translateVerifyError(err, leaf, t)
	}
	// The name is checked after chain and usage so that a wrong kind of
	// certificate is reported as such rather than as a name mismatch.
	if serverName != "" {
		if err := leaf.VerifyHostname(serverName); err != nil {
			return nil, certError(ErrNameMismatch, leaf, "", err)
		}
	}
	if v.cfg.Issuer != nil && !leaf.Equal(v.cfg.Issuer) {
		ok := false
		for _, c := range chains {
			if len(c) > 1 && c[1].Equal(v.cfg.Issuer) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, certError(ErrUnknownAuthority, leaf, "not issued by "+v.cfg.Issuer.Subject.String(), nil)
		}
	}
	return leaf, nil
}
