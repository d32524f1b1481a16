package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Identity is the device's security state, as the client needs it. The
// firmware's security manager implements it.
type Identity interface {
	// DeviceID returns the enrolled device id, or "" before enrollment.
	DeviceID() string
	// EnrollRequest describes the device for enrollment over the
	// connection whose pki.EnrollmentBinding is binding: public key and
	// algorithm, a certificate request signed by the key, type,
	// capabilities, firmware version, and the sealing key with its proof
	// (pki.SignSealingKeyProof over binding).
	EnrollRequest(binding []byte) (*protocol.EnrollRequest, error)
	// Enroll persists the identity the gateway issued; the client has
	// verified the chain up to the pinned root and that its leaf certifies
	// the enrolled key and device id. After it returns nil, DeviceID and
	// Certificate reflect the new identity, also after a reboot. An
	// identity that already trusts platform keys keeps them (see
	// security.Manager.Enroll).
	Enroll(resp *protocol.EnrollResponse) error
	// Certificate returns the device's TLS client certificate (chain and
	// private key) for mutually authenticated sessions.
	Certificate() (*tls.Certificate, error)
}

// Apps executes application commands; the firmware's application manager
// (with artifact verification by the security manager) implements it. Every
// command returns the AppStatus to report; refusals carry StateRefused or
// StateFailed and a Reason.
type Apps interface {
	Deploy(ctx context.Context, m *protocol.Deploy) protocol.AppStatus
	Update(ctx context.Context, m *protocol.Update) protocol.AppStatus
	Start(ctx context.Context, m *protocol.Start) protocol.AppStatus
	Stop(ctx context.Context, m *protocol.Stop) protocol.AppStatus
	Remove(ctx context.Context, m *protocol.Remove) protocol.AppStatus
	// Configure applies a configuration push; an error is reported to the
	// gateway as Error(refused) with the error's text.
	Configure(ctx context.Context, m *protocol.ConfigPush) error
	// Statuses appends the status of every installed application to dst.
	Statuses(dst []protocol.AppStatus) []protocol.AppStatus
}

// Telemetry fills the device part of heartbeats and metrics reports; the
// client adds the link quality.
type Telemetry interface {
	Heartbeat(hb *protocol.Heartbeat)
	Metrics(m *protocol.MetricsReport)
}

// Config configures a [Client].
type Config struct {
	// Link is the device's connectivity manager, dialing the gateways'
	// session endpoints. Required.
	Link *link.Manager
	// EnrollLink dials the gateways' enrollment endpoints; nil means Link
	// (gateways that serve both on one port).
	EnrollLink *link.Manager
	// Identity is the device's security state. Required.
	Identity Identity
	// Apps executes application commands. Required.
	Apps Apps
	// Telemetry fills heartbeats and metrics; nil sends zeros.
	Telemetry Telemetry
	// Root is the pinned trust anchor. Required.
	Root *x509.Certificate
	// GatewayCA, when set, pins the CA that issues gateway certificates.
	GatewayCA *x509.Certificate
	// DeviceCA, when set, pins the CA that issues the device's own
	// certificates, at enrollment and at renewal.
	DeviceCA *x509.Certificate
	// ServerName is the name expected in gateway certificates; empty means
	// the host part of the endpoint being dialed.
	ServerName string
	// Codec decodes gateway messages; nil means a shared default Device
	// codec.
	Codec *protocol.Codec
	// HeartbeatInterval defaults to 30s; a HeartbeatAck may change it.
	HeartbeatInterval time.Duration
	// MetricsInterval defaults to 60s; negative disables periodic reports
	// (reports after application changes are still sent).
	MetricsInterval time.Duration
	// LivenessTimeout ends a session that received nothing for this long;
	// zero means three heartbeat intervals.
	LivenessTimeout time.Duration
	// IOTimeout bounds a TLS handshake, the read of a frame once its first
	// byte arrived, and each write; zero means 30s.
	IOTimeout time.Duration
	// PairingToken is sent with the EnrollRequest when set.
	PairingToken []byte
	// RenewTimeout bounds the wait for the reply to a RenewRequest; zero
	// means one minute. A request that times out counts as a failed
	// attempt.
	RenewTimeout time.Duration
	// RenewBackoff spaces renewal attempts: attempt n is sent no earlier
	// than Ceiling(n-1) after attempt n-1, whatever its outcome, so a
	// refusing gateway is never asked in a loop. Zero means
	// DefaultRenewBackoff.
	RenewBackoff link.Backoff
	// RenewJitter spreads renewals over a fleet: each certificate is renewed
	// at two thirds of its lifetime plus a fraction of the lifetime, up to
	// RenewJitter, derived from its serial number, so devices enrolled
	// together do not renew together. Zero means DefaultRenewJitter;
	// negative renews at exactly two thirds.
	RenewJitter float64
	// Clock times heartbeats, liveness and certificate renewal; nil means
	// link.SystemClock.
	Clock hal.Clock
	// Logger receives client events; nil discards them.
	Logger *slog.Logger
}

// Phase is the client's coarse state.
type Phase uint32

const (
	// Idle means Run has not been called or has returned.
	Idle Phase = iota
	// Connecting means waiting for the link or a TLS handshake.
	Connecting
	// Enrolling means an enrollment exchange is in progress.
	Enrolling
	// Online means a session is established.
	Online
	// Revoked means the gateway disconnected the device as revoked; the client
	// does not reconnect.
	Revoked
)

// DefaultRenewBackoff spaces certificate renewal attempts when
// Config.RenewBackoff is zero: 30s after the first attempt, doubling up to
// 30 minutes, which leaves a 24h certificate (renewed at about 16h) many
// attempts before it expires.
var DefaultRenewBackoff = link.Backoff{Base: 30 * time.Second, Max: 30 * time.Minute}

// DefaultRenewJitter spreads renewals between two thirds and three quarters
// of a certificate's lifetime when Config.RenewJitter is zero.
const DefaultRenewJitter = 1.0 / 12

// String returns the lower-case phase name.
func (p Phase) String() string {
	switch p {
	case Idle:
		return "idle"
	case Connecting:
		return "connecting"
	case Enrolling:
		return "enrolling"
	case Online:
		return "online"
	case Revoked:
		return "revoked"
	}
	return fmt.Sprintf("phase(%d)", uint32(p))
}

// Stats are cumulative client counters.
type Stats struct {
	Sessions    uint64 // sessions established
	Enrollments uint64 // successful enrollments
	// EnrollmentsRejected counts enrollment responses the device refused:
	// a chain that does not verify up to the pinned root, or is not for
	// its key.
	EnrollmentsRejected uint64
	Heartbeats          uint64 // heartbeats sent
	HeartbeatAcks       uint64 // heartbeat acks received
	Commands            uint64 // application and configuration commands handled
	Reports             uint64 // metrics reports sent
	ErrorsSent          uint64 // Error replies sent
	ErrorsReceived      uint64 // Error messages received
	SessionErrors       uint64 // sessions or attempts that ended in an error

	RenewalRequests  uint64 // RenewRequests sent
	Renewals         uint64 // renewed certificates accepted and stored
	RenewalsRefused  uint64 // RenewRequests the gateway answered with an Error
	RenewalsRejected uint64 // renewed chains the device refused (wrong key, id, chain, expiry)
	RenewalTimeouts  uint64 // RenewRequests that got no reply in time
	Reenrollments    uint64 // enrollments started because the certificate expired
}

// Status is a snapshot of the client.
type Status struct {
	Phase    Phase
	DeviceID string
	// CertificateExpired is set while the device certificate has expired
	// without a successful renewal: the gateway refuses the device until it
	// renews (impossible without a session) or re-enrolls.
	CertificateExpired bool
	Stats
}

// Errors returned by Run.
var (
	// ErrRevoked: the gateway disconnected the device as revoked.
	ErrRevoked = errors.New("device revoked")
	// errWoken: a read was interrupted by a wake-up (internal).
	errWoken = errors.New("woken")
	// errShutdown: the session ended because Run's context ended.
	errShutdown = errors.New("shutdown")
)

// EnrollError is the gateway's refusal of an enrollment.
type EnrollError struct {
	Code protocol.ErrorCode
	Text string
}

func (e *EnrollError) Error() string {
	return fmt.Sprintf("enrollment refused: %s: %s", e.Code, e.Text)
}

// events a session loop reacts to.
const (
	evHeartbeat uint32 = 1 << iota
	evMetrics
	evChanged // application state changed: send a metrics report
	evStatus  // unsolicited statuses queued
	evRenew   // certificate renewal timer
	evShutdown
)

var (
	defaultCodecOnce sync.Once
	defaultCodec     *protocol.Codec
)

// DefaultCodec returns the shared Device-side codec with default limits.
func DefaultCodec() *protocol.Codec {
	defaultCodecOnce.Do(func() {
		c, err := protocol.NewCodec(protocol.Device, protocol.Limits{})
		if err != nil {
			panic(err) // default limits are valid
		}
		defaultCodec = c
	})
	return defaultCodec
}

// Client is the gateway client of one device.
type Client struct {
	cfg   Config
	clock hal.Clock
	log   *slog.Logger
	cache tls.ClientSessionCache

	phase atomic.Uint32
	stats struct {
		sessions, enrollments, enrollmentsRejected, heartbeats, heartbeatAcks, commands, reports,
		errorsSent, errorsReceived, sessionErrors atomic.Uint64
		renewalRequests, renewals, renewalsRefused, renewalsRejected,
		renewalTimeouts, reenrollments atomic.Uint64
	}
	expired atomic.Bool // certificate expired, not renewed

	mu       sync.Mutex
	events   uint32
	blocking bool     // the session goroutine waits for a frame's first byte
	cur      net.Conn // connection whose read to interrupt
	queued   []protocol.AppStatus
	hbTimer  hal.Timer
	mTimer   hal.Timer
	interval time.Duration // heartbeat interval in force
	ids      protocol.IDs  // device-originated message ids

	renew    renewState    // guarded by mu
	verifier *pki.Verifier // of the gateways' chains, built at the first connection
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Link == nil:
		return nil, errors.New("client: link manager is required")
	case cfg.Identity == nil:
		return nil, errors.New("client: identity is required")
	case cfg.Apps == nil:
		return nil, errors.New("client: apps is required")
	case cfg.Root == nil:
		return nil, errors.New("client: gateway root certificate is required")
	}
	if cfg.Codec == nil {
		cfg.Codec = DefaultCodec()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 30 * time.Second
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = 60 * time.Second
	}
	if cfg.IOTimeout <= 0 {
		cfg.IOTimeout = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = hal.SystemClock{}
	}
	if cfg.RenewTimeout <= 0 {
		cfg.RenewTimeout = time.Minute
	}
	if cfg.RenewBackoff.Base <= 0 {
		cfg.RenewBackoff = DefaultRenewBackoff
	}
	if cfg.RenewJitter == 0 {
		cfg.RenewJitter = DefaultRenewJitter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:      cfg,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		cache:    tls.NewLRUClientSessionCache(max(1, len(cfg.Link.Endpoints()))),
		interval: cfg.HeartbeatInterval,
	}
	if err := c.ids.Init(protocol.Device); err != nil {
		return nil, err
	}
	return c, nil
}

// Status returns a snapshot of the client.
func (c *Client) Status() Status {
	return Status{
		Phase:              Phase(c.phase.Load()),
		DeviceID:           c.cfg.Identity.DeviceID(),
		CertificateExpired: c.expired.Load(),
		Stats: Stats{
			Sessions:            c.stats.sessions.Load(),
			Enrollments:         c.stats.enrollments.Load(),
			EnrollmentsRejected: c.stats.enrollmentsRejected.Load(),
			Heartbeats:          c.stats.heartbeats.Load(),
			HeartbeatAcks:       c.stats.heartbeatAcks.Load(),
			Commands:            c.stats.commands.Load(),
			Reports:             c.stats.reports.Load(),
			ErrorsSent:          c.stats.errorsSent.Load(),
			ErrorsReceived:      c.stats.errorsReceived.Load(),
			SessionErrors:       c.stats.sessionErrors.Load(),

			RenewalRequests:  c.stats.renewalRequests.Load(),
			Renewals:         c.stats.renewals.Load(),
			RenewalsRefused:  c.stats.renewalsRefused.Load(),
			RenewalsRejected: c.stats.renewalsRejected.Load(),
			RenewalTimeouts:  c.stats.renewalTimeouts.Load(),
			Reenrollments:    c.stats.reenrollments.Load(),
		},
	}
}

// Notify queues an unsolicited application status (a trap, a limit hit)
// for the gateway. It never blocks; statuses queued while offline are sent
// when the next session starts only through Apps.Statuses.
func (c *Client) Notify(st protocol.AppStatus) {
	c.mu.Lock()
	if c.cur != nil && len(c.queued) < 64 {
		c.queued = append(c.queued, st)
	}
	c.mu.Unlock()
	c.signal(evStatus | evChanged)
}

// ReportMetrics has the client send a metrics report now, ahead of the
// periodic one, for a change the device's monitor judged worth reporting.
// It never blocks; while offline it does nothing.
func (c *Client) ReportMetrics() { c.signal(evChanged) }

// Run connects, enrolls if needed and serves sessions until ctx ends (it
// then says goodbye and returns ctx's error) or the device is revoked
// (ErrRevoked).
func (c *Client) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.signal(evShutdown) })
	defer stop()
	defer c.phase.Store(uint32(Idle))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.phase.Store(uint32(Connecting))
		lm := c.cfg.Link
		enrolled := c.cfg.Identity.DeviceID() != ""
		if enrolled && c.certificateExpired() && c.cfg.EnrollLink != nil {
			// Renewal did not happen in time: enroll again rather than
			// knock forever at gateways that refuse the certificate.
			enrolled = false
			c.stats.reenrollments.Add(1)
			c.log.Warn("device certificate expired, enrolling again")
		}
		if !enrolled && c.cfg.EnrollLink != nil {
			lm = c.cfg.EnrollLink
		}
		conn, err := lm.Connect(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			return fmt.Errorf("client: %w", err)
		}
		if !enrolled {
			err = c.enroll(ctx, lm, conn)
		} else {
			err = c.session(ctx, conn)
		}
		switch {
		case errors.Is(err, ErrRevoked):
			c.phase.Store(uint32(Revoked))
			<-ctx.Done()
			return ErrRevoked
		case ctx.Err() != nil:
			return ctx.Err()
		}
	}
}

// signal records events and interrupts the session's blocked read.
func (c *Client) signal(ev uint32) {
	c.mu.Lock()
	c.events |= ev
	if c.blocking && c.cur != nil {
		_ = c.cur.SetReadDeadline(aLongTimeAgo)
	}
	c.mu.Unlock()
}

var aLongTimeAgo = time.Unix(1, 0)

func (c *Client) onHeartbeat() { c.signal(evHeartbeat) }
func (c *Client) onMetrics()   { c.signal(evMetrics) }

// tlsConfig returns the client TLS configuration for endpoint, with the
// device certificate when cert is non-nil.
func (c *Client) tlsConfig(endpoint string, cert *tls.Certificate) (*tls.Config, error) {
	name := c.cfg.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(endpoint)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
		}
		name = host
	}
	c.mu.Lock()
	cache := c.cache
	if c.verifier == nil {
		v, err := pki.NewVerifier(pki.VerifierConfig{Root: c.cfg.Root, Issuer: c.cfg.GatewayCA, Clock: c.clock.Now})
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("gateway trust: %w", err)
		}
		c.verifier = v
	}
	verifier := c.verifier
	c.mu.Unlock()
	cfg, err := pki.ClientTLSConfig(pki.ClientOptions{
		Root:         c.cfg.Root,
		GatewayCA:    c.cfg.GatewayCA,
		Certificate:  cert,
		ServerName:   name,
		SessionCache: cache,
		Clock:        c.clock.Now,
		Verifier:     verifier,
	})
	if err != nil || cert == nil {
		return cfg, err
	}
	// Take the certificate at handshake time, so a certificate renewed
	// since the configuration was built is the one presented.
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		cur, err := c.cfg.Identity.Certificate()
		if err != nil {
			return nil, fmt.Errorf("device certificate: %w", err)
		}
		return cur, nil
	}
	return cfg, nil
}

// handshake runs the TLS handshake over conn; a failure rejects the
// endpoint.
func (c *Client) handshake(ctx context.Context, lm *link.Manager, conn *link.Conn, cert *tls.Certificate) (*tls.Conn, error) {
	cfg, err := c.tlsConfig(conn.Endpoint(), cert)
	if err != nil {
		lm.Reject(err)
		return nil, err
	}
	tc := tls.Client(conn, cfg)
	if err := pki.Handshake(ctx, tc, c.cfg.IOTimeout); err != nil {
		c.stats.sessionErrors.Add(1)
		c.log.Debug("gateway handshake failed", "endpoint", conn.Endpoint(), "err", err)
		_ = tc.Close()
		lm.Reject(err)
		return nil, err
	}
	return tc, nil
}

// id returns the next device-originated message id.
func (c *Client) id() uint64 { return c.ids.Next() }
