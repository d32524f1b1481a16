// Package clienttest provides a small gateway for tests of the device
// firmware: a TLS 1.3 server on loopback that speaks the device protocol.
//
// The listeners, handshakes, enrollment exchange, read loop, message ids and
// reply routing are the product gateway's own session core
// (internal/session); this package adds only what a test needs around it:
//
//   - a certificate authority of its own, which issues the gateway's
//     certificate and, at enrollment and renewal, device certificates after
//     the checks the product gateway makes (the CSR proves possession of the
//     enrolled key, the sealing key is bound to it and to the connection,
//     a renewal keeps the session's device id and key);
//   - a record of what devices send (History, WaitRecord) and counters;
//   - knobs that make it misbehave as a failing gateway would: no heartbeat
//     acknowledgements, refused or unanswered renewals, refused enrollments,
//     chains a device must refuse, dropped sessions, closed listeners;
//   - Peer, to send any command to a connected device and wait for its
//     reply, and helpers to sign and deploy artifacts with the platform key.
//
// It is a test double, not the product's gateway: no control plane, no
// persistence, no authorisation beyond the TLS handshake.
package clienttest

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// Options configure a [Server]. Zero values take defaults.
type Options struct {
	// Host is the loopback address to listen on; default 127.0.0.1.
	Host string
	// EnrollPort and SessionPort default to 0 (any free port).
	EnrollPort, SessionPort int
	// Authority issues the gateway and device certificates; nil creates one.
	Authority *pki.Authority
	// SigningKey is the platform artifact signing key whose public half is
	// given to enrolling devices; nil generates one.
	SigningKey ed25519.PrivateKey
	// HeartbeatInterval, when set, is announced in every HeartbeatAck.
	HeartbeatInterval time.Duration
	// NoHeartbeatAck leaves heartbeats unanswered (a silent gateway).
	NoHeartbeatAck bool
	// RefuseEnrollment answers EnrollRequests with Error(unauthorized).
	RefuseEnrollment bool
	// DeviceLifetime of issued certificates; pki's default when zero.
	DeviceLifetime time.Duration
	// RenewLifetime of certificates issued on renewal; DeviceLifetime when
	// zero.
	RenewLifetime time.Duration
	// RefuseRenewal answers RenewRequests with Error(refused); see also
	// Server.SetRefuseRenewal.
	RefuseRenewal bool
	// IgnoreRenewal leaves RenewRequests unanswered (a gateway that lost
	// them); they are still counted and recorded.
	IgnoreRenewal bool
	// Enroll, when set, replaces the certificate the server issues at
	// enrollment, after the request's proofs were checked: it gets the
	// assigned device id and the enrolled key and returns the chain to send
	// (DER, leaf first). Tests use it to send chains a device must refuse.
	Enroll func(deviceID string, key crypto.PublicKey) [][]byte
	// Renew, when set, replaces the server's renewal: it gets the session's
	// device id and the parsed request, and returns the chain to send (DER,
	// leaf first) or an Error to answer with. Tests use it to send chains a
	// device must refuse.
	Renew func(deviceID string, csr *x509.CertificateRequest) ([][]byte, *protocol.Error)
	// Quiet stops recording per-message history (for large fleets).
	Quiet bool
	// Logger receives server events; nil discards them.
	Logger *slog.Logger
}

// limits are the session core's limits for a test gateway: every device
// dials from loopback, often hundreds at once, so the accept rate and the
// per-source cap that protect a product gateway from floods are lifted; and
// a silent device keeps its session (tests drive devices' clocks by hand,
// and test their liveness checks with NoHeartbeatAck instead).
var limits = session.Limits{
	AcceptRate:          1e6,
	AcceptBurst:         1 << 16,
	MaxPendingConns:     1 << 16,
	MaxPendingPerSource: 1 << 16,
	HelloTimeout:        10 * time.Second,
	IdleTimeout:         24 * time.Hour,
}

// Server is a minimal gateway for tests.
type Server struct {
	opts      Options
	ca        *pki.Authority
	gwCert    tls.Certificate
	enrollTLS *tls.Config
	signKey   ed25519.PrivateKey
	log       *slog.Logger
	core      *session.Server
	enrollLn  net.Listener
	sessLn    net.Listener
	sessAddr  string
	enrAddr   string
	serving   sync.WaitGroup // the two Serve calls

	mu       sync.Mutex
	peers    map[string]*Peer
	enrolled map[string]bool
	sealing  map[string]*ecdh.PublicKey // device id → sealing key proven at enrollment
	waiters  []chan struct{}
	history  []Record
	renewals []Renewal
	nextDev  atomic.Uint64

	refuseRenewal atomic.Bool

	// Counters, safe to read at any time.

	// Heartbeats counts heartbeats received, answered or not.
	Heartbeats atomic.Uint64
	// Sessions counts sessions opened.
	Sessions atomic.Uint64
	// Goodbyes counts Disconnect messages devices sent in sessions.
	Goodbyes atomic.Uint64
	// RenewRequests counts RenewRequests received, answered or not.
	RenewRequests atomic.Uint64
	// EnrollRefusals counts EnrollRequests refused for a failed proof: a
	// CSR that does not verify or is not for the enrolled key, or a
	// sealing-key proof that does not verify for the connection.
	EnrollRefusals atomic.Uint64
}

// Renewal records one RenewRequest the server received.
type Renewal struct {
	// DeviceID is the session's device.
	DeviceID string
	// At is the authority's clock when the request arrived.
	At time.Time
	// Serial is the serial number of the certificate issued, nil if the
	// request was refused.
	Serial *big.Int
	// Refused is the Error code sent instead of a certificate, or zero.
	Refused protocol.ErrorCode
}

// Record is one message a device sent in a session.
type Record struct {
	DeviceID string
	Env      protocol.Envelope
}

// Start starts a server listening on two loopback ports.
func Start(opts Options) (*Server, error) {
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	s := &Server{
		opts:     opts,
		ca:       opts.Authority,
		signKey:  opts.SigningKey,
		log:      opts.Logger,
		peers:    map[string]*Peer{},
		enrolled: map[string]bool{},
		sealing:  map[string]*ecdh.PublicKey{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.refuseRenewal.Store(opts.RefuseRenewal)
	var err error
	if s.ca == nil {
		if s.ca, err = pki.NewAuthority(pki.AuthorityOptions{}); err != nil {
			return nil, err
		}
	}
	if s.signKey == nil {
		if _, s.signKey, err = ed25519.GenerateKey(nil); err != nil {
			return nil, err
		}
	}
	gw, err := s.ca.IssueGateway(pki.GatewayOptions{Name: "test-gateway", IPAddresses: []net.IP{net.ParseIP(opts.Host)}, DNSNames: []string{"localhost"}})
	if err != nil {
		return nil, err
	}
	if s.gwCert, err = gw.TLSCertificate(); err != nil {
		return nil, err
	}
	v, err := s.ca.DeviceVerifier(nil)
	if err != nil {
		return nil, err
	}
	sessCfg, err := pki.ServerTLSConfig(pki.ServerOptions{Certificate: s.gwCert, Verifier: v})
	if err != nil {
		return nil, err
	}
	if s.enrollTLS, err = pki.EnrollmentServerTLSConfig(pki.ServerOptions{Certificate: s.gwCert, Verifier: v}); err != nil {
		return nil, err
	}
	s.core, err = session.NewServer(session.Config{
		Handler:           handler{s},
		Enroller:          enroller{s},
		Renewer:           renewer{s},
		Limits:            limits,
		HeartbeatInterval: opts.HeartbeatInterval,
		NoHeartbeatAck:    opts.NoHeartbeatAck,
		Observe:           s.observe,
		Logger:            s.log,
	})
	if err != nil {
		return nil, err
	}
	if s.enrollLn, err = net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.EnrollPort))); err != nil {
		s.core.Close()
		return nil, err
	}
	if s.sessLn, err = net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.SessionPort))); err != nil {
		_ = s.enrollLn.Close()
		s.core.Close()
		return nil, err
	}
	s.enrAddr, s.sessAddr = s.enrollLn.Addr().String(), s.sessLn.Addr().String()
	s.serving.Go(func() { s.served("enroll", s.core.ServeEnrollment(s.enrollLn, s.enrollTLS)) })
	s.serving.Go(func() { s.served("session", s.core.ServeSessions(s.sessLn, sessCfg)) })
	return s, nil
}

// served logs why a listener stopped, unless the server or the test
// stopped it.
func (s *Server) served(listener string, err error) {
	if !errors.Is(err, session.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Warn("listener stopped", "listener", listener, "err", err)
	}
}

// EnrollAddr returns the enrollment listener's address.
func (s *Server) EnrollAddr() string { return s.enrAddr }

// SessionAddr returns the session listener's address.
func (s *Server) SessionAddr() string { return s.sessAddr }

// Root returns the authority's root certificate, the devices' trust anchor.
func (s *Server) Root() *x509.Certificate { return s.ca.Root.Cert }

// GatewayCA returns the CA that issued the server's certificate, which
// devices may pin.
func (s *Server) GatewayCA() *x509.Certificate { return s.ca.GatewayCA.Cert }

// DeviceCA returns the CA that issues device certificates, which devices
// may pin for their own chains.
func (s *Server) DeviceCA() *x509.Certificate { return s.ca.DeviceCA.Cert }

// Authority returns the server's certificate authority.
func (s *Server) Authority() *pki.Authority { return s.ca }

// SigningKey returns the platform artifact signing key.
func (s *Server) SigningKey() ed25519.PrivateKey { return s.signKey }

// Close stops listening, drops every connection without a goodbye and
// waits for the server's goroutines.
func (s *Server) Close() {
	s.core.Close()
	s.StopListening()
	// After Close there is nobody left to say goodbye to: Shutdown only
	// waits for the core's goroutines, and has nothing to give up on.
	_ = s.core.Shutdown(context.Background())
	s.serving.Wait()
}

// StopListening closes both listeners: new connections are refused, live
// sessions go on.
func (s *Server) StopListening() {
	_ = s.enrollLn.Close()
	_ = s.sessLn.Close()
}

// DropAll closes every session without a goodbye, as a gateway that lost
// its network would.
func (s *Server) DropAll() {
	s.core.Range(func(sess *session.Session) bool {
		sess.Close(session.CloseLost, nil)
		return true
	})
}

// SetRefuseRenewal switches refusing RenewRequests on or off.
func (s *Server) SetRefuseRenewal(refuse bool) { s.refuseRenewal.Store(refuse) }

// Renewals returns the RenewRequests received, oldest first.
func (s *Server) Renewals() []Renewal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Renewal(nil), s.renewals...)
}

// SealingKey returns the sealing key a device proved at enrollment, or nil.
func (s *Server) SealingKey(deviceID string) *ecdh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sealing[deviceID]
}

// Enrolled returns the number of devices that acknowledged their
// enrollment so far.
func (s *Server) Enrolled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.enrolled)
}

// Connected returns the number of devices with a live session.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// History returns the messages devices sent in sessions, oldest first:
// heartbeats, replies to commands, statuses, metrics reports, renewal
// requests and goodbyes (empty when Options.Quiet).
func (s *Server) History() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.history...)
}

// Peer returns the live session of a device, or nil.
func (s *Server) Peer(deviceID string) *Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[deviceID]
}

// Peers returns every live session.
func (s *Server) Peers() []*Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Peer, 0, len(s.peers))
	for _, p := range s.peers {
		out = append(out, p)
	}
	return out
}

// WaitPeer waits until the device has a live session.
func (s *Server) WaitPeer(ctx context.Context, deviceID string) (*Peer, error) {
	return waitFor(ctx, s, func() (*Peer, bool) {
		p := s.peers[deviceID]
		return p, p != nil
	})
}

// AnyPeer waits until some device has a live session and returns it.
func (s *Server) AnyPeer(ctx context.Context) (*Peer, error) {
	return waitFor(ctx, s, func() (*Peer, bool) {
		for _, p := range s.peers {
			return p, true
		}
		return nil, false
	})
}

// WaitRecord waits for a message from a device matching match. It looks
// through the messages recorded so far again whenever the server's state
// changes: a message arrives, a session opens or closes, an enrollment is
// acknowledged, a renewal is answered.
func (s *Server) WaitRecord(ctx context.Context, match func(Record) bool) (Record, error) {
	return waitFor(ctx, s, func() (Record, bool) {
		for _, r := range s.history {
			if match(r) {
				return r, true
			}
		}
		return Record{}, false
	})
}

// waitFor polls cond under s.mu whenever the server's state changes.
func waitFor[T any](ctx context.Context, s *Server, cond func() (T, bool)) (T, error) {
	for {
		s.mu.Lock()
		v, ok := cond()
		var ch chan struct{}
		if !ok {
			ch = make(chan struct{})
			s.waiters = append(s.waiters, ch)
		}
		s.mu.Unlock()
		if ok {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}

// changed wakes the waiters; s.mu must be held.
func (s *Server) changed() {
	for _, ch := range s.waiters {
		close(ch)
	}
	s.waiters = s.waiters[:0]
}

// now is the authority's clock.
func (s *Server) now() time.Time {
	if s.ca.Clock != nil {
		return s.ca.Clock()
	}
	return time.Now()
}
