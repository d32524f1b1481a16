package clienttest

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// Peer is a device's live session on the server.
type Peer struct {
	// DeviceID is the id from the device certificate.
	DeviceID string
	// Certificate is the device certificate the session was opened with
	// (the one the handshake presented, or the resumed session's).
	Certificate *x509.Certificate
	s           *Server
	sess        *session.Session
	done        chan struct{}
}

// Send sends a command to the device and waits for the reply with the same
// message id. A refusal is a reply like any other: an Error message in the
// envelope, not an error.
func (p *Peer) Send(ctx context.Context, m protocol.Message) (protocol.Envelope, error) {
	return replyOf(p.sess.Request(ctx, m))
}

// ErrBadFrame is returned by SendFrame for bytes that are not one frame.
var ErrBadFrame = errors.New("clienttest: not one frame")

// SendFrame writes an already framed envelope (length prefix included)
// whose message id is id, and waits for the device's reply to it. Tests use
// it to send message types the protocol package does not know. id must be
// even (a gateway's id) and not in use by another command in flight.
func (p *Peer) SendFrame(ctx context.Context, id uint64, frame []byte) (protocol.Envelope, error) {
	if len(frame) < 4 || int(binary.BigEndian.Uint32(frame)) != len(frame)-4 {
		return protocol.Envelope{}, fmt.Errorf("%w: %d bytes", ErrBadFrame, len(frame))
	}
	return replyOf(p.sess.RequestFrame(ctx, id, frame[4:]))
}

// replyOf turns the session core's answer to a request into a Peer's: the
// device's Error reply is the envelope, not an error.
func replyOf(env protocol.Envelope, err error) (protocol.Envelope, error) {
	var perr *protocol.Error
	if _, isErr := env.Message.(*protocol.Error); isErr && errors.As(err, &perr) {
		return env, nil
	}
	return env, err
}

// Disconnect sends a Disconnect with reason and closes the session.
func (p *Peer) Disconnect(reason protocol.DisconnectReason) {
	p.sess.Close(closeReason(reason), &protocol.Disconnect{Reason: reason})
}

// closeReason is the session core's name for a goodbye's reason.
func closeReason(r protocol.DisconnectReason) session.CloseReason {
	switch r {
	case protocol.DisconnectRevoked:
		return session.CloseRevoked
	case protocol.DisconnectReplaced:
		return session.CloseReplaced
	case protocol.DisconnectTimeout:
		return session.CloseIdle
	case protocol.DisconnectProtocolError:
		return session.CloseProtocol
	}
	return session.CloseShutdown
}

// Drop closes the session without a goodbye.
func (p *Peer) Drop() { p.sess.Close(session.CloseLost, nil) }

// Done is closed when the session ends.
func (p *Peer) Done() <-chan struct{} { return p.done }

// handler is the server's session.Handler: it keeps the live sessions as
// Peers. What devices send is recorded by Server.observe.
type handler struct{ s *Server }

// Open registers the session; a newer session of a device replaces the
// older one, which is closed without a goodbye.
func (h handler) Open(_ context.Context, sess *session.Session) error {
	s := h.s
	id := sess.Identity()
	p := &Peer{DeviceID: id.DeviceID, Certificate: id.Certificate, s: s, sess: sess, done: make(chan struct{})}
	sess.SetValue(p)
	s.Sessions.Add(1)
	s.mu.Lock()
	old := s.peers[p.DeviceID]
	s.peers[p.DeviceID] = p
	s.changed()
	s.mu.Unlock()
	if old != nil {
		old.sess.Close(session.CloseReplaced, nil)
	}
	return nil
}

// Handle is given what the core does not handle itself; observe has
// already recorded it.
func (handler) Handle(*session.Session, protocol.Envelope) {}

// Closed forgets the session's Peer.
func (h handler) Closed(sess *session.Session, _ session.CloseReason, _ error) {
	p, ok := sess.Value().(*Peer)
	if !ok {
		return
	}
	close(p.done)
	s := h.s
	s.mu.Lock()
	if s.peers[p.DeviceID] == p {
		delete(s.peers, p.DeviceID)
	}
	s.changed()
	s.mu.Unlock()
}

// observe counts and records every message a device sends in a session,
// before the core acts on it.
func (s *Server) observe(sess *session.Session, env protocol.Envelope) {
	switch env.Message.(type) {
	case *protocol.Heartbeat:
		s.Heartbeats.Add(1)
	case *protocol.Disconnect:
		s.Goodbyes.Add(1)
	case *protocol.RenewRequest:
		s.RenewRequests.Add(1)
	}
	if s.opts.Quiet {
		return
	}
	s.mu.Lock()
	s.history = append(s.history, Record{DeviceID: sess.DeviceID(), Env: env})
	s.changed()
	s.mu.Unlock()
}
