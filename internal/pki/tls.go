package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
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
	// clock. Authority.DeviceVerifier builds one. Required; a verifier
	// without an Issuer pin is refused, so that only the device CA's
	// certificates are ever accepted.
	Verifier *Verifier
	// TicketKeys encrypts and decrypts session tickets (see TicketKeyRing).
	// Gateway replicas behind one address share one ring's keys so a device
	// resumes on any replica; rotating the ring takes effect at once. A
	// ticket key lets its holder resume as any device: protect it like a
	// CA key. When nil, the config keeps a private ring of its own, rotated
	// every DefaultTicketLifetime; tickets then resume on this process only.
	TicketKeys *TicketKeyRing
	// TicketLifetime bounds how long after issue a ticket is accepted;
	// DefaultTicketLifetime when zero. A ticket of a key no longer in the
	// ring is refused whatever its age.
	TicketLifetime time.Duration
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
// pool as roots, so the config lists root and device CA in ClientCAs only
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
	if opts.Verifier.cfg.Issuer == nil {
		return nil, errors.New("server tls config: the verifier must pin the device CA (VerifierConfig.Issuer)")
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
	// Refuse to start with a certificate devices will refuse: one that
	// does not chain to the root through a CA allowed to issue server
	// certificates (the gateway CA), or has expired.
	chain := []*x509.Certificate{leaf}
	for _, der := range opts.Certificate.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("server tls config: parse chain: %w", err)
		}
		chain = append(chain, c)
	}
	self, err := NewVerifier(VerifierConfig{Root: opts.Verifier.cfg.Root, Clock: opts.Verifier.cfg.Clock})
	if err != nil {
		return nil, fmt.Errorf("server tls config: %w", err)
	}
	if _, err := self.verify(chain, x509.ExtKeyUsageServerAuth, ""); err != nil {
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
	ring := opts.TicketKeys
	if ring == nil {
		first, err := NewTicketKey(v.Now())
		if err != nil {
			return nil, fmt.Errorf("server tls config: %w", err)
		}
		if ring, err = NewTicketKeyRing(first); err != nil {
			return nil, fmt.Errorf("server tls config: %w", err)
		}
		ring.rotateAfter = DefaultTicketLifetime
	}
	lifetime := opts.TicketLifetime
	if lifetime <= 0 {
		lifetime = DefaultTicketLifetime
	}
	base := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{opts.Certificate},
		ClientAuth:             auth,
		ClientCAs:              hint,
		Time:                   v.cfg.Clock,
		SessionTicketsDisabled: opts.DisableSessionTickets,
		CurvePreferences:       ServerKeyExchanges(),
	}
	verify := func(ctx context.Context, cs tls.ConnectionState, tk *ticketer) error {
		if len(cs.PeerCertificates) == 0 {
			if auth == tls.RequestClientCert {
				return nil // enrollment without a certificate
			}
			return ErrNoCertificate
		}
		// Signatures are skipped only for a chain that comes back from a
		// ticket bound to its full verification under this configuration.
		fast := cs.DidResume && tk != nil && tk.boundTo(cs.PeerCertificates[0])
		if _, err := v.verifyDevice(ctx, cs.PeerCertificates, fast); err != nil {
			logger.LogAttrs(ctx, slog.LevelDebug, "device certificate refused",
				slog.String("subject", cs.PeerCertificates[0].Subject.String()),
				slog.Bool("resumed", cs.DidResume),
				slog.Any("err", err))
			return err
		}
		return nil
	}
	// Each handshake gets its own clone (GetConfigForClient): it hands the
	// handshake's context to the revocation checker and lets the ticket
	// binding found by UnwrapSession reach VerifyConnection. The ring is
	// shared, so rotation applies at once.
	// base's own callbacks only run if a caller bypasses GetConfigForClient
	// (e.g. wraps the config in its own): verification is never skipped,
	// and resumed chains are then verified in full.
	// crypto/tls gives VerifyConnection no context, and none is at hand.
	base.VerifyConnection = func(cs tls.ConnectionState) error {
		return verify(context.Background(), cs, nil)
	}
	plain := &ticketer{ring: ring, trust: v.trustID, lifetime: lifetime, now: v.Now}
	base.WrapSession = plain.wrap
	base.UnwrapSession = func(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		t := *plain // no binding recorded: base is not per handshake
		return t.unwrap(ticket, cs)
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		ctx := hello.Context()
		tk := &ticketer{ring: ring, trust: v.trustID, lifetime: lifetime, now: v.Now}
		c.WrapSession, c.UnwrapSession = tk.wrap, tk.unwrap
		c.VerifyConnection = func(cs tls.ConnectionState) error { return verify(ctx, cs, tk) }
		c.GetConfigForClient = nil
		return c, nil
	}
	return base, nil
}

// ClientOptions configure ClientTLSConfig.
type ClientOptions struct {
	// Root is the pinned trust anchor; no system roots are used. Required.
	Root *x509.Certificate
	// GatewayCA, when set, pins the CA that must have issued the gateway's
	// certificate. Without it any intermediate under Root whose extended
	// key usage allows server authentication is accepted — never the
	// device CA, which is restricted to client authentication.
	GatewayCA *x509.Certificate
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
	// X25519Only offers the X25519 key exchange alone on every handshake,
	// for boards that cannot afford ML-KEM; see KeyExchanges.
	X25519Only bool
	// Verifier, when set, checks the gateway's chain instead of one built
	// from Root, GatewayCA and Clock for this configuration: a device that
	// connects often builds it once (NewVerifier checks GatewayCA's
	// signature, a cost a microcontroller feels on every connection).
	Verifier *Verifier
}

// Key exchange.
//
// A full handshake offers the hybrid X25519MLKEM768 (and X25519, which a
// gateway never prefers): what is recorded today cannot be decrypted by a
// future quantum computer. A resumption offers X25519 alone: its keys come
// from the resumption secret of a hybrid handshake and from a fresh X25519
// exchange, so breaking X25519 alone does not reveal them, and the device
// and the gateway skip ML-KEM's cost and its 2.3 KB of key shares. A full
// handshake that ended without ML-KEM (a resumption the gateway refused,
// then X25519 alone) leaves no ticket behind, so that the next connection
// is a full hybrid one rather than a chain of resumptions from a classical
// secret. Devices that cannot afford ML-KEM (ClientOptions.X25519Only)
// offer X25519 on every handshake; gateways accept them.

// ServerKeyExchanges returns the key exchanges a gateway accepts,
// preferred first: the hybrid when a device offers it, else X25519.
func ServerKeyExchanges() []tls.CurveID { return []tls.CurveID{tls.X25519MLKEM768, tls.X25519} }

// KeyExchanges returns the key exchanges a device offers for a handshake:
// X25519 alone when it resumes a session or x25519Only is set, else the
// hybrid X25519MLKEM768 first.
func KeyExchanges(resuming, x25519Only bool) []tls.CurveID {
	if resuming || x25519Only {
		return []tls.CurveID{tls.X25519}
	}
	return []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
}

// hybridTickets is a device's session cache that keeps only the tickets of
// sessions whose secret a hybrid key exchange protects: a resumption, or a
// full handshake that agreed on X25519MLKEM768.
type hybridTickets struct {
	tls.ClientSessionCache
	classical atomic.Bool // the handshake was full and without ML-KEM
}

func (c *hybridTickets) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil && c.classical.Load() {
		cs = nil
	}
	c.ClientSessionCache.Put(key, cs)
}

// ClientTLSConfig returns a device's TLS configuration: TLS 1.3 only, the
// root pinned as the only trust anchor (and the gateway CA, when given), the
// gateway certificate verified explicitly in VerifyConnection (chain,
// ExtKeyUsageServerAuth, ServerName) on full and resumed handshakes, the
// device certificate presented, and a session cache for resumption.
//
// The key exchanges offered (see KeyExchanges) are chosen when the
// configuration is built, by whether the session cache holds a session for
// ServerName: build one configuration per connection.
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
	v := opts.Verifier
	if v == nil {
		var err error
		if v, err = NewVerifier(VerifierConfig{Root: opts.Root, Issuer: opts.GatewayCA, Clock: opts.Clock}); err != nil {
			return nil, fmt.Errorf("client tls config: %w", err)
		}
	}
	cache := opts.SessionCache
	if cache == nil {
		cache = tls.NewLRUClientSessionCache(DefaultSessionCacheSize)
	}
	roots := x509.NewCertPool()
	roots.AddCert(opts.Root)
	serverName := opts.ServerName
	// crypto/tls keys its session cache by the server name.
	_, resuming := cache.Get(serverName)
	tickets := cache
	var hybrid *hybridTickets
	if !opts.X25519Only {
		hybrid = &hybridTickets{ClientSessionCache: cache}
		tickets = hybrid
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		RootCAs:            roots,
		ServerName:         serverName,
		ClientSessionCache: tickets,
		CurvePreferences:   KeyExchanges(resuming, opts.X25519Only),
		Time:               opts.Clock,
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection below, which always runs
		VerifyConnection: func(cs tls.ConnectionState) error {
			if hybrid != nil {
				hybrid.classical.Store(!cs.DidResume && cs.CurveID != tls.X25519MLKEM768)
			}
			// crypto/tls gives VerifyConnection no context: a client's
			// handshake context does not reach it.
			return v.verifyGateway(context.Background(), cs.PeerCertificates, serverName, cs.DidResume)
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
