package clienttest

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// EnrollTap is an enrollment endpoint, with the Server's gateway
// certificate, that records every EnrollRequest it receives and refuses it
// with Error(unauthorized), for tests of what an enrolling device sends.
type EnrollTap struct {
	core *session.Server
	ln   net.Listener
	done chan struct{} // closed when the Serve call returned

	mu   sync.Mutex
	reqs []*protocol.EnrollRequest
	more chan struct{} // closed and replaced when a request arrives
}

// StartEnrollTap listens on a free loopback port of the server's host.
func (s *Server) StartEnrollTap() (*EnrollTap, error) {
	t := &EnrollTap{done: make(chan struct{}), more: make(chan struct{})}
	lim := limits
	lim.GoroutinePerSession = true // it holds no session to park
	core, err := session.NewServer(session.Config{Handler: noSessions{}, Enroller: tapEnroller{t}, Limits: lim, Logger: s.log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, "0"))
	if err != nil {
		core.Close()
		return nil, err
	}
	t.core, t.ln = core, ln
	go func() {
		defer close(t.done)
		_ = core.ServeEnrollment(ln, s.enrollTLS)
	}()
	return t, nil
}

// Addr returns the tap's address, to use as a device's enrollment endpoint.
func (t *EnrollTap) Addr() string { return t.ln.Addr().String() }

// Next waits for the n-th request (from 0) and returns it.
func (t *EnrollTap) Next(ctx context.Context, n int) (*protocol.EnrollRequest, error) {
	for {
		t.mu.Lock()
		if n < len(t.reqs) {
			r := t.reqs[n]
			t.mu.Unlock()
			return r, nil
		}
		ch := t.more
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close stops listening and waits for the connections to end.
func (t *EnrollTap) Close() {
	t.core.Close()
	// After Close nobody is left to say goodbye to: Shutdown only waits for
	// the core's goroutines, and has nothing to give up on.
	_ = t.core.Shutdown(context.Background())
	<-t.done
}

// tapEnroller records every request and refuses it.
type tapEnroller struct{ t *EnrollTap }

func (e tapEnroller) Enroll(_ context.Context, en *session.Enrollment) (*protocol.EnrollResponse, error) {
	t := e.t
	t.mu.Lock()
	t.reqs = append(t.reqs, en.Request)
	close(t.more)
	t.more = make(chan struct{})
	t.mu.Unlock()
	return nil, &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "Recorded", Text: "recorded, not enrolled"}
}

func (tapEnroller) Enrolled(context.Context, *session.Enrollment, *protocol.EnrollAck) error {
	return errors.New("the tap enrolls nobody")
}

// noSessions is the handler of a core that serves enrollment only.
type noSessions struct{}

func (noSessions) Open(context.Context, *session.Session) error {
	return &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "NoSessions", Text: "enrollment only"}
}
func (noSessions) Handle(*session.Session, protocol.Envelope)          {}
func (noSessions) Closed(*session.Session, session.CloseReason, error) {}
