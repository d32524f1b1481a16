package session

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// admission applies a listener's limits to new connections, before and
// during their handshakes.
type admission struct {
	s      *Server
	kind   listenerKind
	cfg    *tls.Config // the caller's config wrapped with the handshake slot hook
	bucket *tokenBucket

	mu        sync.Mutex
	pending   int
	perSource map[string]int
}

// handshakeState travels in a handshake's context to the ClientHello hook.
type handshakeState struct {
	raw  net.Conn
	slot bool // holds a handshake slot
}

type handshakeKey struct{}

func newAdmission(s *Server, kind listenerKind, cfg *tls.Config) *admission {
	a := &admission{
		s:         s,
		kind:      kind,
		bucket:    newTokenBucket(s.lim.AcceptRate, s.lim.AcceptBurst, s.now),
		perSource: map[string]int{},
	}
	inner := cfg.GetConfigForClient
	c := cfg.Clone()
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if err := a.acquireSlot(hello.Context()); err != nil {
			return nil, err
		}
		if inner != nil {
			return inner(hello)
		}
		return nil, nil
	}
	a.cfg = c
	return a
}

// admit takes a newly accepted connection: it closes it at once when too
// many connections are already handshaking (overall or from its source),
// else handshakes it on a goroutine of its own.
func (a *admission) admit(raw net.Conn) {
	src := sourceOf(raw)
	a.mu.Lock()
	switch {
	case a.pending >= a.s.lim.MaxPendingConns:
		a.mu.Unlock()
		a.s.metrics.refused(a.kind, "pending")
		_ = raw.Close()
		return
	case a.perSource[src] >= a.s.lim.MaxPendingPerSource:
		a.mu.Unlock()
		a.s.metrics.refused(a.kind, "per_source")
		_ = raw.Close()
		return
	}
	a.pending++
	a.perSource[src]++
	a.mu.Unlock()
	if !a.s.track() {
		a.done(src)
		_ = raw.Close()
		return
	}
	go func() {
		defer a.s.wg.Done()
		a.handshake(raw, src)
	}()
}

// done releases a connection's pending counts.
func (a *admission) done(src string) {
	a.mu.Lock()
	a.pending--
	if a.perSource[src]--; a.perSource[src] <= 0 {
		delete(a.perSource, src)
	}
	a.mu.Unlock()
}

// handshake runs the TLS handshake of raw under the hello and handshake
// deadlines, then serves the connection.
func (a *admission) handshake(raw net.Conn, src string) {
	s := a.s
	st := &handshakeState{raw: raw}
	_ = raw.SetDeadline(s.now().Add(s.lim.HelloTimeout))
	tc := tls.Server(raw, a.cfg)
	ctx := context.WithValue(s.ctx, handshakeKey{}, st)
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	if st.slot {
		<-s.handshakes
	}
	a.done(src)
	if err != nil {
		s.metrics.handshake(a.kind, handshakeResult(err), false, time.Since(start))
		s.log.Debug("handshake failed", "listener", string(a.kind), "remote", raw.RemoteAddr().String(), "err", err)
		_ = raw.Close()
		return
	}
	cs := tc.ConnectionState()
	s.metrics.handshake(a.kind, "ok", cs.DidResume, time.Since(start))
	_ = raw.SetDeadline(time.Time{})
	switch a.kind {
	case listenerSession:
		s.openSession(tc, raw, cs)
	case listenerEnroll:
		s.enroll(tc, raw, cs)
	}
}

// acquireSlot waits for a handshake slot once the ClientHello arrived, and
// gives the rest of the handshake its own deadline.
func (a *admission) acquireSlot(ctx context.Context) error {
	st, _ := ctx.Value(handshakeKey{}).(*handshakeState)
	if st == nil {
		return errors.New("session: handshake outside the server")
	}
	s := a.s
	if s.lim.MaxSessions > 0 && a.kind == listenerSession && s.Sessions() >= s.lim.MaxSessions {
		s.metrics.refused(a.kind, "max_sessions")
		return errTooManySessions
	}
	select {
	case s.handshakes <- struct{}{}:
	default:
		// Wait for a slot, but no longer than the hello deadline allows.
		timer := time.NewTimer(s.lim.HelloTimeout)
		defer timer.Stop()
		select {
		case s.handshakes <- struct{}{}:
		case <-timer.C:
			s.metrics.refused(a.kind, "handshake_slots")
			return errNoHandshakeSlot
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	st.slot = true
	_ = st.raw.SetDeadline(s.now().Add(s.lim.HandshakeTimeout))
	return nil
}

var (
	errTooManySessions = errors.New("session: too many sessions")
	errNoHandshakeSlot = errors.New("session: no handshake slot free")
)

// handshakeResult classifies a handshake error for metrics.
func handshakeResult(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errNoHandshakeSlot), errors.Is(err, errTooManySessions):
		return "throttled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "failed"
}

// sourceOf returns the IP address a connection comes from.
func sourceOf(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// tokenBucket limits a rate with a burst.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	now    func() time.Time
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int, now func() time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), now: now, tokens: float64(burst), last: now()}
}

// wait takes a token, waiting for one if none is left. It is called by one
// goroutine (the accept loop).
func (b *tokenBucket) wait(ctx context.Context) error {
	for {
		now := b.now()
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
		if b.tokens >= 1 {
			b.tokens--
			return nil
		}
		d := time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
