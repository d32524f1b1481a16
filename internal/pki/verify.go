package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
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
	// trustID names the trust configuration (root and issuer) in the
	// session tickets bound to this verifier's verifications.
	trustID [32]byte
	// fullChecks counts chain verifications with signatures (tests check
	// which path a resumed handshake took).
	fullChecks atomic.Uint64
	// pinnedChecks counts the verifications that took the pinned-issuer
	// path (one signature), a subset of fullChecks.
	pinnedChecks atomic.Uint64
	// pinnedUsages are the extended key usages for which a leaf of the
	// pinned issuer is verified with one signature check (see pinned);
	// empty when the issuer or root carries constraints that only
	// x509.Verify evaluates.
	pinnedUsages []x509.ExtKeyUsage
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
	h := sha256.New()
	h.Write([]byte("wasmbed/trust/v1\x00"))
	for _, c := range append([]*x509.Certificate{cfg.Root, cfg.Issuer}, cfg.Intermediates...) {
		var raw []byte
		if c != nil {
			raw = c.Raw
		}
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(raw)))) //nolint:gosec // certificates are small
		h.Write(raw)
	}
	v := &Verifier{cfg: cfg, roots: roots, inter: inter}
	h.Sum(v.trustID[:0])
	if cfg.Issuer != nil && !cfg.Issuer.Equal(cfg.Root) && plainCA(cfg.Root, 1) && plainCA(cfg.Issuer, 0) {
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			if allowsUsage(cfg.Root, u) && allowsUsage(cfg.Issuer, u) {
				v.pinnedUsages = append(v.pinnedUsages, u)
			}
		}
	}
	return v, nil
}

// plainCA reports whether ca is a CA certificate whose only constraints the
// pinned-issuer path checks itself: no name or policy constraints, no
// critical extension x509 does not handle, and a path length that allows
// below reaches intermediates under it.
func plainCA(ca *x509.Certificate, below int) bool {
	return ca.IsCA && ca.BasicConstraintsValid &&
		len(ca.UnhandledCriticalExtensions) == 0 &&
		!ca.PermittedDNSDomainsCritical &&
		len(ca.PermittedDNSDomains) == 0 && len(ca.ExcludedDNSDomains) == 0 &&
		len(ca.PermittedIPRanges) == 0 && len(ca.ExcludedIPRanges) == 0 &&
		len(ca.PermittedEmailAddresses) == 0 && len(ca.ExcludedEmailAddresses) == 0 &&
		len(ca.PermittedURIDomains) == 0 && len(ca.ExcludedURIDomains) == 0 &&
		len(ca.PolicyIdentifiers) == 0 && len(ca.Policies) == 0 &&
		ca.RequireExplicitPolicy <= 0 && !ca.RequireExplicitPolicyZero &&
		ca.InhibitPolicyMapping <= 0 && !ca.InhibitPolicyMappingZero &&
		ca.InhibitAnyPolicy <= 0 && !ca.InhibitAnyPolicyZero &&
		(ca.MaxPathLen < 0 || ca.MaxPathLen >= below || (ca.MaxPathLen == 0 && !ca.MaxPathLenZero))
}

// allowsUsage reports whether a CA's extended key usages let it take part
// in a chain for usage, as x509.Verify decides it.
func allowsUsage(ca *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if len(ca.ExtKeyUsage) == 0 && len(ca.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(ca.ExtKeyUsage, x509.ExtKeyUsageAny) || slices.Contains(ca.ExtKeyUsage, usage)
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

// verifyDevice is VerifyDevice; verified selects the resumption fast path
// (see resumable): the caller knows the chain was verified in full earlier
// under this configuration (a ticket bound to that verification).
func (v *Verifier) verifyDevice(ctx context.Context, chain []*x509.Certificate, verified bool) (*DeviceIdentity, error) {
	leaf, ok := (*x509.Certificate)(nil), false
	if verified {
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

// resumable is the fast path for resumed TLS sessions: it re-checks,
// without any signature operation, what can have changed since the chain
// was verified in full — the validity window of every certificate involved
// at the current time, key algorithm, extended key usage, the server name,
// and that the leaf still hangs off the configured issuer and root (by
// subject and key identifier). Revocation is checked by the caller in both
// paths. When anything does not fit, resumable returns false and the caller
// verifies in full, which produces the precise error.
//
// Skipping the signatures is sound only when the chain comes from a source
// that only the verifying side could have written after a full
// verification:
//
//   - on a device, its own session cache in RAM;
//   - on a gateway, a session ticket bound to this verifier's trust
//     configuration and to the leaf (see tickets.go). Whoever holds a
//     ticket key can write such a ticket for any leaf — a forged one
//     included — so on this path a ticket key is as strong as a CA key.
//     The ticket keys must be protected like the CA keys (docs/pki.md).
func (v *Verifier) resumable(chain []*x509.Certificate, usage x509.ExtKeyUsage, serverName string) (*x509.Certificate, bool) {
	if len(chain) == 0 || len(chain) > MaxChainLen || chain[0] == nil {
		return nil, false
	}
	leaf := chain[0]
	if checkCertKey(leaf.PublicKey) != nil || !slices.Contains(leaf.ExtKeyUsage, usage) {
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
	v.fullChecks.Add(1)
	if len(chain) == 0 || chain[0] == nil {
		return nil, ErrNoCertificate
	}
	leaf := chain[0]
	if len(chain) > MaxChainLen {
		return nil, certError(ErrInvalidCertificate, leaf, fmt.Sprintf("chain of %d certificates, limit %d", len(chain), MaxChainLen), nil)
	}
	if err := checkCertKey(leaf.PublicKey); err != nil {
		return nil, certError(ErrUnsupportedKey, leaf, "", err)
	}
	t := v.Now()
	if v.pinned(leaf, usage, t) {
		if serverName == "" || leaf.VerifyHostname(serverName) == nil {
			v.pinnedChecks.Add(1)
			return leaf, nil
		}
	}
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

// pinned is the full verification of a leaf under a pinned issuer, with
// one signature check: the issuer's own link to the root was verified
// once, in NewVerifier, so a chain leaf → issuer → root is sound when the
// leaf names the issuer, its signature verifies under the issuer's key
// (CheckSignatureFrom also requires the issuer to be a CA allowed to sign
// certificates and refuses insecure algorithms), and leaf, issuer and root
// are valid at t. x509.Verify's other checks are met by construction
// (pinnedUsages: no name or policy constraints, path length, the CAs'
// extended key usages) or here: the leaf has no unhandled critical
// extension and lists usage. Anything else returns false and the caller
// runs x509.Verify, which also gives the precise error.
func (v *Verifier) pinned(leaf *x509.Certificate, usage x509.ExtKeyUsage, t time.Time) bool {
	if !slices.Contains(v.pinnedUsages, usage) {
		return false
	}
	iss, root := v.cfg.Issuer, v.cfg.Root
	valid := func(c *x509.Certificate) bool { return !t.Before(c.NotBefore) && !t.After(c.NotAfter) }
	return len(leaf.UnhandledCriticalExtensions) == 0 &&
		slices.Contains(leaf.ExtKeyUsage, usage) &&
		bytes.Equal(leaf.RawIssuer, iss.RawSubject) &&
		(len(leaf.AuthorityKeyId) == 0 || bytes.Equal(leaf.AuthorityKeyId, iss.SubjectKeyId)) &&
		valid(leaf) && valid(iss) && valid(root) &&
		leaf.CheckSignatureFrom(iss) == nil
}

// DevicePins are the certificates a device trusts: the root, always, and
// the gateway CA and device CA when it was provisioned with them. Pinning
// the gateway CA keeps any other CA under the root from authenticating a
// gateway; pinning the device CA does the same for the device's own
// certificates. Without them the intermediates' extended key usages still
// keep each kind of certificate to its own role.
type DevicePins struct {
	Root, GatewayCA, DeviceCA *x509.Certificate
}

// PinsFromCertificates sorts a device's trust bundle (the root, optionally
// followed by the intermediates, in any order) into DevicePins: the one
// self-signed CA certificate is the root; a CA certificate restricted to
// server authentication is the gateway CA, one restricted to client
// authentication the device CA. Each intermediate must be signed by the
// root; anything else in the bundle is refused.
func PinsFromCertificates(certs []*x509.Certificate) (DevicePins, error) {
	var p DevicePins
	var inter []*x509.Certificate
	for _, c := range certs {
		switch {
		case !c.IsCA:
			return DevicePins{}, certError(ErrInvalidCertificate, c, "not a CA certificate", nil)
		case bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil:
			if p.Root != nil {
				return DevicePins{}, certError(ErrInvalidCertificate, c, "a second root", nil)
			}
			p.Root = c
		default:
			inter = append(inter, c)
		}
	}
	if p.Root == nil {
		return DevicePins{}, fmt.Errorf("%w: no self-signed root certificate", ErrInvalidCertificate)
	}
	for _, c := range inter {
		if err := c.CheckSignatureFrom(p.Root); err != nil {
			return DevicePins{}, certError(ErrUnknownAuthority, c, "not issued by root "+p.Root.Subject.String(), err)
		}
		slot := &p.DeviceCA
		switch {
		case slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}):
			slot = &p.GatewayCA
		case slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}):
		default:
			return DevicePins{}, certError(ErrKeyUsage, c, "intermediate not restricted to one kind of certificate", nil)
		}
		if *slot != nil {
			return DevicePins{}, certError(ErrInvalidCertificate, c, "a second intermediate of the same kind", nil)
		}
		*slot = c
	}
	return p, nil
}
