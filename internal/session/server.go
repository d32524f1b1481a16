package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Handler is the gateway's side of established sessions. Its methods are
// called from the session's own goroutine, one at a time per session, and
// must not block for long: work that waits on the network or on Kubernetes
// belongs on the handler's own goroutines.
type Handler interface {
	// Open is called once the handshake verified the device certificate. It
	// decides whether the device may have a session: a non-nil error refuses
	// it (a *Refusal says what to tell the device and which reason to
	// count). Open may keep s and call its methods later from any goroutine.
	Open(ctx context.Context, s *Session) error
	// Handle is given every message of the device that is not a reply to a
	// request of the gateway: heartbeats (after they were answered),
	// application statuses, metrics reports, configuration acknowledgements.
	Handle(s *Session, env protocol.Envelope)
	// Closed is called once when a session that Open accepted ends, with
	// why it ended.
	Closed(s *Session, reason CloseReason, err error)
}

// Enroller answers enrollment requests on the enrollment listener.
type Enroller interface {
	// Enroll answers an EnrollRequest with the device's identity, or
	// refuses it with an error (a *Refusal for what to tell the device).
	Enroll(ctx context.Context, e *Enrollment) (*protocol.EnrollResponse, error)
	// Enrolled is told that the device stored the identity it was given
	// (EnrollAck). An error is reported to the device.
	Enrolled(ctx context.Context, e *Enrollment, ack *protocol.EnrollAck) error
}

// Renewer issues renewed device certificates over live sessions.
type Renewer interface {
	// Renew answers a RenewRequest of the session's device with the new
	// chain (DER, leaf first), or refuses it with an error. ErrNoReply
	// leaves the request unanswered.
	Renew(ctx context.Context, s *Session, csr []byte) ([][]byte, error)
}

// ErrNoReply is returned by a Renewer to leave the RenewRequest unanswered, as
// a gateway that lost it would, so that the device's own timeout has to
// fire. It exists for tests of devices; the product gateway answers every
// request.
var ErrNoReply = errors.New("session: request left unanswered")

// Limits bound what a Server accepts. Zero fields take the defaults
// documented on each.
type Limits struct {
	// AcceptRate is how many connections per second each listener accepts,
	// with AcceptBurst in reserve; beyond it new connections wait in the
	// kernel's backlog. Default 5000/s, burst 1000: about what two cores
	// handshake.
	AcceptRate  float64
	AcceptBurst int
	// MaxPendingConns caps connections accepted but not through their
	// handshake, per listener; beyond it new connections are closed at once.
	// Default 4096.
	MaxPendingConns int
	// MaxPendingPerSource caps such connections per source IP address.
	// Default 64.
	MaxPendingPerSource int
	// HelloTimeout bounds the wait for a connection's ClientHello. Default 5s.
	HelloTimeout time.Duration
	// MaxHandshakes caps handshakes doing cryptography at once (after the
	// ClientHello); a ClientHello waits for a slot within HelloTimeout.
	// Default 4 × GOMAXPROCS.
	MaxHandshakes int
	// HandshakeTimeout bounds a whole handshake. Default 10s.
	HandshakeTimeout time.Duration
	// IOTimeout bounds the rest of a frame once its first byte arrived, and
	// every write. Default 30s.
	IOTimeout time.Duration
	// IdleTimeout ends a session that sent nothing for this long (devices
	// send a heartbeat every interval). Default 90s.
	IdleTimeout time.Duration
	// MaxEnrollments caps enrollments being answered at once (the
	// Enroller's work: Kubernetes objects and a certificate to sign). An
	// EnrollRequest beyond it waits up to EnrollWait for a slot, with at
	// most 4 × MaxEnrollments waiting; otherwise it is refused with
	// "unavailable", reason Busy, and the device retries after its
	// backoff. It keeps the wait for a signature short when a whole fleet
	// enrolls together, so that enrollments finish instead of timing out
	// and starting over. Default 256.
	MaxEnrollments int
	// EnrollWait bounds an EnrollRequest's wait for an enrollment slot.
	// Default 10s: with the signature, well within a device's 30-second
	// budget for the whole exchange.
	EnrollWait time.Duration
	// EnrollTimeout bounds a whole enrollment exchange. Default 60s.
	EnrollTimeout time.Duration
	// RenewTimeout bounds a Renewer call. Default 60s.
	RenewTimeout time.Duration
	// MaxSessions caps live sessions; beyond it handshakes are refused.
	// Zero means no cap.
	MaxSessions int
	// GoroutinePerSession gives each session a reader goroutine instead of
	// parking idle sessions in the server's poller (always the case where
	// the poller is not available).
	GoroutinePerSession bool
}

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.AcceptRate <= 0 {
		l.AcceptRate = 5000
	}
	if l.AcceptBurst <= 0 {
		l.AcceptBurst = 1000
	}
	if l.MaxPendingConns <= 0 {
		l.MaxPendingConns = 4096
	}
	if l.MaxPendingPerSource <= 0 {
		l.MaxPendingPerSource = 64
	}
	if l.MaxHandshakes <= 0 {
		l.MaxHandshakes = 4 * runtime.GOMAXPROCS(0)
	}
	if l.MaxEnrollments <= 0 {
		l.MaxEnrollments = 256
	}
	def(&l.HelloTimeout, 5*time.Second)
	def(&l.HandshakeTimeout, pki.DefaultHandshakeTimeout)
	def(&l.IOTimeout, 30*time.Second)
	def(&l.IdleTimeout, 90*time.Second)
	def(&l.EnrollWait, 10*time.Second)
	def(&l.EnrollTimeout, time.Minute)
	def(&l.RenewTimeout, time.Minute)
	return l
}

// Config configures a Server.
type Config struct {
	// Handler accepts sessions and receives their messages. Required.
	Handler Handler
	// Enroller answers enrollments; nil refuses every enrollment with
	// Error(unauthorized).
	Enroller Enroller
	// Renewer renews device certificates; nil refuses renewals.
	Renewer Renewer
	// Codec decodes device messages; nil means a Gateway codec with the
	// protocol's default limits.
	Codec *protocol.Codec
	// Limits bound what the server accepts.
	Limits Limits
	// HeartbeatInterval, when set, is announced in every HeartbeatAck.
	HeartbeatInterval time.Duration
	// NoHeartbeatAck leaves the devices' heartbeats unanswered, as a gateway
	// that stopped answering would; they still reach Handler.Handle. It
	// exists for tests of devices' liveness checks: the product gateway
	// answers every heartbeat.
	NoHeartbeatAck bool
	// Observe, when set, is shown every message a session receives, in
	// order and before the session acts on it: heartbeats, goodbyes, renewal
	// requests and replies to Session.Request included. It runs on the
	// session's reader, one message at a time per session, and must not
	// block. The firmware's test gateway records transcripts with it; the
	// product gateway leaves it nil.
	Observe func(s *Session, env protocol.Envelope)
	// Clock is the gateway's clock; time.Now when nil.
	Clock func() time.Time
	// Metrics counts what the server does; nil counts nothing.
	Metrics *Metrics
	// Logger receives session events; nil discards them.
	Logger *slog.Logger
}

// ErrServerClosed is returned by the Serve methods after Shutdown or Close.
var ErrServerClosed = errors.New("session: server closed")

// Server serves device sessions and enrollments. Create it with NewServer.
type Server struct {
	cfg     Config
	lim     Limits
	codec   *protocol.Codec
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	handshakes chan struct{} // semaphore of handshakes doing cryptography
	enrolling  chan struct{} // semaphore of enrollments being answered
	enrollQ    atomic.Int64  // EnrollRequests waiting for a slot
	poller     *poller       // nil in goroutine-per-session mode
	ctx        context.Context
	cancel     context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*Session]struct{}
	shutdown  bool           // Shutdown or Close ran
	abrupt    bool           // Close ran: sessions end without a goodbye
	wg        sync.WaitGroup // accept loops and connection goroutines

	live atomic.Int64 // sessions accepted by Open and not yet closed
}

// NewServer returns a Server for cfg.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("session: a handler is required")
	}
	if cfg.Codec == nil {
		c, err := protocol.NewCodec(protocol.Gateway, protocol.Limits{})
		if err != nil {
			return nil, fmt.Errorf("session: codec: %w", err)
		}
		cfg.Codec = c
	}
	if cfg.Codec.Side() != protocol.Gateway {
		return nil, fmt.Errorf("session: the codec is for the %v side, want gateway", cfg.Codec.Side())
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		lim:       cfg.Limits.withDefaults(),
		codec:     cfg.Codec,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		now:       cfg.Clock,
		listeners: map[net.Listener]struct{}{},
		sessions:  map[*Session]struct{}{},
	}
	s.handshakes = make(chan struct{}, s.lim.MaxHandshakes)
	s.enrolling = make(chan struct{}, s.lim.MaxEnrollments)
	// The server's own lifetime, the root of its sessions' contexts: it
	// ends with Close, not with any caller's context.
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if !s.lim.GoroutinePerSession {
		p, err := newPoller(s)
		switch {
		case errors.Is(err, errNoPoller):
		case err != nil:
			return nil, fmt.Errorf("session: %w", err)
		default:
			s.poller = p
		}
	}
	return s, nil
}

// Sessions returns the number of live sessions.
func (s *Server) Sessions() int { return int(s.live.Load()) }

// Parked reports whether idle sessions are parked in the server's poller
// rather than each held by a goroutine.
func (s *Server) Parked() bool { return s.poller != nil }

// Range calls fn for every live session until fn returns false.
func (s *Server) Range(fn func(*Session) bool) {
	s.mu.Lock()
	all := make([]*Session, 0, len(s.sessions))
	for sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	for _, sess := range all {
		if !fn(sess) {
			return
		}
	}
}

// ServeSessions accepts mutually authenticated device sessions on ln until
// the server shuts down. cfg must require and verify client certificates
// (pki.ServerTLSConfig builds one). It returns ErrServerClosed after
// Shutdown or Close.
func (s *Server) ServeSessions(ln net.Listener, cfg *tls.Config) error {
	if cfg == nil || cfg.ClientAuth != tls.RequireAnyClientCert && cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("session: the session listener needs a TLS config that requires client certificates")
	}
	return s.serve(ln, cfg, listenerSession)
}

// ServeEnrollment accepts enrollment connections on ln until the server
// shuts down. cfg authenticates the gateway; devices present no certificate
// (pki.EnrollmentServerTLSConfig builds one).
func (s *Server) ServeEnrollment(ln net.Listener, cfg *tls.Config) error {
	if cfg == nil {
		return errors.New("session: the enrollment listener needs a TLS config")
	}
	return s.serve(ln, cfg, listenerEnroll)
}

// listenerKind tells the two listeners apart in metrics and logs.
type listenerKind string

const (
	listenerSession listenerKind = "session"
	listenerEnroll  listenerKind = "enroll"
)

func (s *Server) serve(ln net.Listener, cfg *tls.Config, kind listenerKind) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	a := newAdmission(s, kind, cfg)
	for {
		if err := a.bucket.wait(s.ctx); err != nil {
			return ErrServerClosed
		}
		raw, err := ln.Accept()
		if err != nil {
			if s.closing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				// Its owner closed the listener: stop accepting on it, and
				// keep serving the sessions it brought.
				s.forget(ln)
				return fmt.Errorf("session: %s listener: %w", kind, err)
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Out of file descriptors and the like: back off briefly.
			s.log.Warn("accept failed", "listener", string(kind), "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.ctx.Done():
				return ErrServerClosed
			}
			continue
		}
		a.admit(raw)
	}
}

// forget drops a listener its owner closed.
func (s *Server) forget(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// closing reports whether Shutdown or Close was called.
func (s *Server) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shutdown
}

// track registers a goroutine of the server unless it is shutting down.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	s.wg.Add(1)
	return true
}

// Shutdown stops accepting, says goodbye (Disconnect shutdown) to every
// session, closes them and waits for the server's goroutines, or until ctx
// ends, when it closes what is left. After Close, which leaves no session
// to say goodbye to, Shutdown only waits for the goroutines to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopListening()
	var wg sync.WaitGroup
	s.Range(func(sess *Session) bool {
		wg.Go(func() { sess.Close(CloseShutdown, &protocol.Disconnect{Reason: protocol.DisconnectShutdown}) })
		return true
	})
	wg.Wait()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
	s.Close()
	return nil
}

// Close stops accepting and closes every session and connection at once,
// without goodbyes. It does not wait for the server's goroutines to end:
// Shutdown after Close does.
func (s *Server) Close() {
	s.mu.Lock()
	s.abrupt = true
	s.mu.Unlock()
	s.stopListening()
	s.Range(func(sess *Session) bool {
		sess.Close(CloseShutdown, nil)
		return true
	})
	s.cancel()
	if s.poller != nil {
		s.poller.close()
	}
}

func (s *Server) stopListening() {
	s.mu.Lock()
	s.shutdown = true
	lns := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		lns = append(lns, ln)
	}
	s.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
	s.cancel()
}
