package pki

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultHandshakeTimeout bounds a TLS handshake. Servers must apply a
// handshake deadline (Handshake does) so a peer that stalls mid-handshake
// cannot hold a connection slot: crypto/tls has no deadline of its own.
const DefaultHandshakeTimeout = 10 * time.Second

// DefaultSessionCacheSize is the number of gateway sessions a client keeps
// for resumption when ClientOptions.SessionCache is nil.
const DefaultSessionCacheSize = 8

// ServerOptions configure ServerTLSConfig and EnrollmentServerTLSConfig.
type ServerOptions struct {
	// Certificate is the gateway's certificate chain (leaf, intermediate) and key.
	Certificate tls.Certificate
	// Verifier verifies device certificates: root, device CA, revocation and
	// clock. Authority.Verifier builds one. Required.
	Verifier *Verifier
	// SessionTicketKeys, when set, are the session ticket keys: the first
	// encrypts new tickets, all decrypt. Gateway replicas behind one address
	// share them so a device resumes on any replica; rotate by calling
	// SetSessionTicketKeys on the returned config with a new first key and the
	// previous keys after it. When nil, crypto/tls generates and rotates keys
	// per process (new key every 24h, tickets accepted for 7 days).
	SessionTicketKeys [][32]byte
	// DisableSessionTickets turns resumption off (for measurements).
	DisableSessionTickets bool
	// Logger receives refused handshakes at debug level; nil discards.
	Logger *slog.Logger
}

// ServerTLSConfig returns the gateway's device-facing TLS configuration:
//
//   - TLS 1.3 only (MinVersion = MaxVersion = TLS 1.3);
//   - a client certificate is required and verified explicitly in
//     VerifyConnection by opts.Verifier (x509.Verify against the root through
//     the device CA, ExtKeyUsageClientAuth, device id, revocation), on full
//     and on resumed handshakes alike;
//   - session tickets on, so reconnect storms resume instead of re-running
//     the certificate exchange.
//
// crypto/tls itself only checks that a certificate was sent
// (RequireAnyClientCert): its ClientCAs-based verification would treat the
// pool as roots, so the config lists root and intermediate in ClientCAs only
// as the acceptable-issuer hint. The VerifyConnection error (a
// *CertificateError) is returned by the server's Handshake; the device only
// sees a bad_certificate alert.
func ServerTLSConfig(opts ServerOptions) (*tls.Config, error) {
	return serverConfig(opts, tls.RequireAnyClientCert)
}

// EnrollmentServerTLSConfig is ServerTLSConfig for the enrollment listener,
// which the gateway serves on a separate port: a client certificate is
// requested but optional. Devices without one (new devices) connect to enrol;
// a certificate that is presented (a device renewing) is verified exactly as
// in ServerTLSConfig and refused if invalid. The gateway tells the two apart
// with IdentityFromConnectionState (ErrNoCertificate for new devices) and must
// serve nothing but enrollment and renewal on this listener.
func EnrollmentServerTLSConfig(opts ServerOptions) (*tls.Config, error) {
	return serverConfig(opts, tls.RequestClientCert)
}

func serverConfig(opts ServerOptions, auth tls.ClientAuthType) (*tls.Config, error) {
	if opts.Verifier == nil {
		return nil, errors.New("server tls config: verifier is required")
	}
	if len(opts.Certificate.Certificate) == 0 || opts.Certificate.PrivateKey == nil {
		return nil, errors.New("server tls config: certificate and key are required")
	}
	leaf := opts.Certificate.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(opts.Certificate.Certificate[0]); err != nil {
			return nil, fmt.Errorf("server tls config: parse certificate: %w", err)
		}
	}
	// Refuse to start with a certificate devices will refuse.
	chain := []*x509.Certificate{leaf}
	for _, der := range opts.Certificate.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("server tls config: parse chain: %w", err)
		}
		chain = append(chain, c)
	}
	if _, err := opts.Verifier.verify(chain, x509.ExtKeyUsageServerAuth, ""); err != nil {
		return nil, fmt.Errorf("server tls config: gateway certificate: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hint := x509.NewCertPool()
	hint.AddCert(opts.Verifier.cfg.Root)
	if opts.Verifier.cfg.Issuer != nil {
		hint.AddCert(opts.Verifier.cfg.Issuer)
	}
	v := opts.Verifier
	base := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{opts.Certificate},
		ClientAuth:             auth,
		ClientCAs:              hint,
		Time:                   v.cfg.Clock,
		SessionTicketsDisabled: opts.DisableSessionTickets,
	}
	if len(opts.SessionTicketKeys) > 0 {
		base.SetSessionTicketKeys(opts.SessionTicketKeys)
	}
	verify := func(ctx context.Context, cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if auth == tls.RequestClientCert {
				return nil // enrollment without a certificate
			}
			return ErrNoCertificate
		}
		if _, err := v.verifyDevice(ctx, cs.PeerCertificates, cs.DidResume); err != nil {
			logger.LogAttrs(ctx, slog.LevelDebug, "device certificate refused",
				slog.String("subject", cs.PeerCertificates[0].Subject.String()),
				slog.Bool("resumed", cs.DidResume),
				slog.Any("error", err))
			return err
		}
		return nil
	}
	// The handshake context reaches the revocation checker through a
	// per-handshake clone; ticket keys keep coming from base (rotation applies).
	// base.VerifyConnection only runs if a caller bypasses GetConfigForClient
	// (e.g. wraps the config in its own); verification must never be skipped.
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		return verify(context.TODO(), cs)
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		ctx := hello.Context()
		c.VerifyConnection = func(cs tls.ConnectionState) error { return verify(ctx, cs) }
		c.GetConfigForClient = nil
		return c, nil
	}
	return base, nil
}

// ClientOptions configure ClientTLSConfig.
type ClientOptions struct {
	// Root is the pinned trust anchor; no system roots are used. Required.
	Root *x509.Certificate
	// Issuer, when set, pins the CA that must have issued the gateway's certificate.
	Issuer *x509.Certificate
	// Certificate is the device certificate (leaf, intermediate) and key; nil
	// for an enrollment connection.
	Certificate *tls.Certificate
	// ServerName is the gateway's DNS name or IP address as in its
	// certificate. Required.
	ServerName string
	// SessionCache keeps sessions for resumption; an LRU of
	// DefaultSessionCacheSize entries when nil.
	SessionCache tls.ClientSessionCache
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
}

// ClientTLSConfig returns a device's TLS configuration: TLS 1.3 only, the
// root pinned as the only trust anchor, the gateway certificate verified
// explicitly in VerifyConnection (chain, ExtKeyUsageServerAuth, ServerName)
// on full and resumed handshakes, the device certificate presented, and a
// session cache for resumption.
//
// Verification is done by the package's Verifier rather than by crypto/tls
// so that both sides report the same typed errors; InsecureSkipVerify only
// disables the built-in check that VerifyConnection replaces.
func ClientTLSConfig(opts ClientOptions) (*tls.Config, error) {
	if opts.Root == nil {
		return nil, errors.New("client tls config: root certificate is required")
	}
	if opts.ServerName == "" {
		return nil, errors.New("client tls config: server name is required")
	}
	v, err := NewVerifier(VerifierConfig{Root: opts.Root, Issuer: opts.Issuer, Clock: opts.Clock})
	if err != nil {
		return nil, fmt.Errorf("client tls config: %w", err)
	}
	cache := opts.SessionCache
	if cache == nil {
		cache = tls.NewLRUClientSessionCache(DefaultSessionCacheSize)
	}
	roots := x509.NewCertPool()
	roots.AddCert(opts.Root)
	serverName := opts.ServerName
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		RootCAs:            roots,
		ServerName:         serverName,
		ClientSessionCache: cache,
		Time:               opts.Clock,
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection below, which always runs
		VerifyConnection: func(cs tls.ConnectionState) error {
			return v.verifyGateway(context.TODO(), cs.PeerCertificates, serverName, cs.DidResume)
		},
	}
	if opts.Certificate != nil {
		cfg.Certificates = []tls.Certificate{*opts.Certificate}
	}
	return cfg, nil
}

// Handshake runs conn's TLS handshake bounded by ctx and timeout
// (DefaultHandshakeTimeout when timeout <= 0).
func Handshake(ctx context.Context, conn *tls.Conn, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake with %s: %w", conn.RemoteAddr(), err)
	}
	return nil
}

// NewSessionTicketKey returns a random 32-byte session ticket key for
// ServerOptions.SessionTicketKeys.
func NewSessionTicketKey() ([32]byte, error) {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("session ticket key: %w", err)
	}
	return k, nil
}
