package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
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
			if err := cfg.Issuer.CheckSignatureFrom(cfg.Root); err != nil ||
				!bytes.Equal(cfg.Issuer.RawIssuer, cfg.Root.RawSubject) ||
				!bytes.Equal(cfg.Issuer.AuthorityKeyId, cfg.Root.SubjectKeyId) {
				return nil, certError(ErrUnknownAuthority, cfg.Issuer, "issuer not issued by root "+cfg.Root.Subject.String(), err)
			}
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
	return v.verifyDevice(ctx, chain, false)
}

// verifyDevice is VerifyDevice; resumed selects the resumption fast path
// (see resumable) when the chain qualifies.
func (v *Verifier) verifyDevice(ctx context.Context, chain []*x509.Certificate, resumed bool) (*DeviceIdentity, error) {
	leaf, ok := (*x509.Certificate)(nil), false
	if resumed {
		leaf, ok = v.resumable(chain, x509.ExtKeyUsageClientAuth, "")
	}
	if !ok {
		var err error
		if leaf, err = v.verify(chain, x509.ExtKeyUsageClientAuth, ""); err != nil {
			return nil, err
		}
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
	return v.verifyGateway(ctx, chain, serverName, false)
}

func (v *Verifier) verifyGateway(ctx context.Context, chain []*x509.Certificate, serverName string, resumed bool) error {
	leaf, ok := (*x509.Certificate)(nil), false
	if resumed {
		leaf, ok = v.resumable(chain, x509.ExtKeyUsageServerAuth, serverName)
	}
	if !ok {
		var err error
		if leaf, err = v.verify(chain, x509.ExtKeyUsageServerAuth, serverName); err != nil {
			return err
		}
	}
	return v.checkRevoked(ctx, leaf)
}

// resumable is the fast path for resumed TLS sessions. Their peer
// certificates were verified in full when the session was established and
// come back from an authenticated source (the server's encrypted session
// ticket, the client's own session cache), so the signatures need not be
// checked again. What can have changed is re-checked without any signature
// operation: the validity window of every certificate involved at the
// current time, key algorithm, extended key usage, the server name, and
// that the leaf still hangs off the configured issuer and root (by subject
// and key identifier), so tickets from before a CA change do not pass.
// Revocation is checked by the caller in both paths. When anything does not
// fit, resumable returns false and the caller verifies in full, which
// produces the precise error.
func (v *Verifier) resumable(chain []*x509.Certificate, usage x509.ExtKeyUsage, serverName string) (*x509.Certificate, bool) {
	if len(chain) == 0 || len(chain) > MaxChainLen || chain[0] == nil {
		return nil, false
	}
	leaf := chain[0]
	if CheckPublicKey(leaf.PublicKey) != nil || !slices.Contains(leaf.ExtKeyUsage, usage) {
		return nil, false
	}
	t := v.Now()
	valid := func(c *x509.Certificate) bool { return !t.Before(c.NotBefore) && !t.After(c.NotAfter) }
	issuedBy := func(c, issuer *x509.Certificate) bool {
		return bytes.Equal(c.RawIssuer, issuer.RawSubject) && bytes.Equal(c.AuthorityKeyId, issuer.SubjectKeyId)
	}
	root := v.cfg.Root
	if !valid(leaf) || !valid(root) {
		return nil, false
	}
	// Walk the path leaf → (configured issuer | presented intermediates) → root.
	cur := leaf
	if iss := v.cfg.Issuer; iss != nil {
		if !issuedBy(leaf, iss) || !valid(iss) {
			return nil, false
		}
		cur = iss
	} else {
		for _, c := range chain[1:] {
			if !issuedBy(cur, c) || !valid(c) || !c.IsCA {
				return nil, false
			}
			cur = c
		}
	}
	if !cur.Equal(root) && !issuedBy(cur, root) {
		return nil, false
	}
	if serverName != "" && leaf.VerifyHostname(serverName) != nil {
		return nil, false
	}
	return leaf, true
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
// that outlive a check: validity windows of the certificate, the issuer and
// the root at the verifier's clock, and revocation. A gateway calls it periodically on live sessions and when a
// revocation is announced (see MemoryRevocation.Subscribe).
func (v *Verifier) Check(ctx context.Context, cert *x509.Certificate) error {
	if cert == nil {
		return ErrNoCertificate
	}
	t := v.Now()
	for _, c := range []*x509.Certificate{cert, v.cfg.Issuer, v.cfg.Root} {
		if c == nil {
			continue
		}
		if t.Before(c.NotBefore) {
			return certError(ErrNotYetValid, cert, validityDetail(c, t), nil)
		}
		if t.After(c.NotAfter) {
			return certError(ErrExpired, cert, validityDetail(c, t), nil)
		}
	}
	return v.checkRevoked(ctx, cert)
}

func validityDetail(c *x509.Certificate, t time.Time) string {
	return fmt.Sprintf("%q valid from %s to %s, checked at %s", c.Subject.String(),
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
