package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// CloseReason says why a session ended.
type CloseReason string

// Close reasons, also the values of the closed-sessions metric's label.
const (
	// CloseGoodbye: the device said goodbye (Disconnect).
	CloseGoodbye CloseReason = "goodbye"
	// CloseIdle: the device sent nothing for Limits.IdleTimeout.
	CloseIdle CloseReason = "idle"
	// CloseLost: the connection failed or the device closed it without a
	// goodbye.
	CloseLost CloseReason = "lost"
	// CloseProtocol: the device sent a frame that does not decode, is too
	// large, or arrived out of order.
	CloseProtocol CloseReason = "protocol"
	// CloseReplaced: a newer session of the same device replaced this one.
	CloseReplaced CloseReason = "replaced"
	// CloseRevoked: the device was revoked or deleted.
	CloseRevoked CloseReason = "revoked"
	// CloseShutdown: the gateway shut down.
	CloseShutdown CloseReason = "shutdown"
	// CloseRefused: the handler refused the device after the handshake.
	CloseRefused CloseReason = "refused"
)

// Session is one device's live session. Its methods are safe for concurrent
// use.
type Session struct {
	srv      *Server
	conn     *tls.Conn
	raw      net.Conn
	identity *pki.DeviceIdentity
	resumed  bool
	since    time.Time

	r     *protocol.Reader
	w     *protocol.Writer
	ids   protocol.IDs
	calls protocol.Calls
	peek  peekReader

	lastHeard atomic.Int64 // Unix nanoseconds of the last frame
	closed    atomic.Bool
	closeOnce sync.Once
	value     atomic.Value // the handler's data
	park      parkState    // poller bookkeeping (Linux)
}

// Identity returns the device identity from the session's certificate.
func (s *Session) Identity() *pki.DeviceIdentity { return s.identity }

// DeviceID returns the device id from the session's certificate.
func (s *Session) DeviceID() string { return s.identity.DeviceID }

// Resumed reports whether the session's handshake resumed an earlier one.
func (s *Session) Resumed() bool { return s.resumed }

// Since returns when the session was established.
func (s *Session) Since() time.Time { return s.since }

// RemoteAddr returns the device's address.
func (s *Session) RemoteAddr() net.Addr { return s.raw.RemoteAddr() }

// LastHeard returns when the device last sent a frame.
func (s *Session) LastHeard() time.Time { return time.Unix(0, s.lastHeard.Load()) }

// Closed reports whether the session has ended.
func (s *Session) Closed() bool { return s.closed.Load() }

// SetValue stores the handler's data for this session.
func (s *Session) SetValue(v any) { s.value.Store(v) }

// Value returns what SetValue stored, or nil.
func (s *Session) Value() any { return s.value.Load() }

// ErrClosed matches errors of operations on a session that has ended.
var ErrClosed = errors.New("session: closed")

// Request sends msg to the device and waits for the device's reply to it.
// A device that answers with an Error message gives the *protocol.Error as
// the error. The session ending first gives an error matching ErrClosed and
// protocol.ErrConnClosed.
func (s *Session) Request(ctx context.Context, msg protocol.Message) (protocol.Envelope, error) {
	return s.request(ctx, s.ids.Next(), func(id uint64) error {
		return s.write(protocol.Envelope{MessageID: id, Message: msg})
	})
}

// ErrMessageID is returned by RequestFrame for an id the gateway does not
// allocate: the reply to it would not be routed back.
var ErrMessageID = errors.New("session: not a gateway message id")

// RequestFrame sends body, an already encoded envelope (no length prefix)
// whose message id is id, and waits for the device's reply to id as Request
// does. The body is not checked: tests use it to send what Encode refuses,
// such as message types the device does not know. id must be one the
// gateway allocates (protocol.Owns(protocol.Gateway, id)) and that no
// request in flight uses.
func (s *Session) RequestFrame(ctx context.Context, id uint64, body []byte) (protocol.Envelope, error) {
	if !protocol.Owns(protocol.Gateway, id) {
		return protocol.Envelope{}, fmt.Errorf("%w: %d", ErrMessageID, id)
	}
	return s.request(ctx, id, func(uint64) error {
		if s.closed.Load() {
			return ErrClosed
		}
		if err := s.w.WriteFrame(body); err != nil {
			if s.closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("session %s: %w", s.DeviceID(), err)
		}
		return nil
	})
}

// request registers a call for id, sends it with send and waits for the
// reply.
func (s *Session) request(ctx context.Context, id uint64, send func(id uint64) error) (protocol.Envelope, error) {
	call, err := s.calls.Register(id)
	if err != nil {
		return protocol.Envelope{}, fmt.Errorf("%w: %w", ErrClosed, err)
	}
	if err := send(id); err != nil {
		call.Cancel()
		return protocol.Envelope{}, err
	}
	env, err := call.Wait(ctx)
	if errors.Is(err, protocol.ErrConnClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return env, err
}

// Send sends msg to the device without waiting for a reply.
func (s *Session) Send(msg protocol.Message) error {
	return s.write(protocol.Envelope{MessageID: s.ids.Next(), Message: msg})
}

// reply sends msg as the reply to the device's message with id.
func (s *Session) reply(id uint64, msg protocol.Message) error {
	return s.write(protocol.Envelope{MessageID: id, Message: msg})
}

func (s *Session) write(env protocol.Envelope) error {
	if s.closed.Load() {
		return ErrClosed
	}
	env.Version = protocol.Version
	if err := s.w.WriteEnvelope(env); err != nil {
		if s.closed.Load() {
			return ErrClosed
		}
		return fmt.Errorf("session %s: %w", s.DeviceID(), err)
	}
	return nil
}

// Close ends the session with reason: it sends goodbye when it is non-nil
// (typically a Disconnect), closes the connection and tells the handler.
// Closing a closed session does nothing.
func (s *Session) Close(reason CloseReason, goodbye protocol.Message) {
	s.closeWith(reason, goodbye, nil)
}

func (s *Session) closeWith(reason CloseReason, goodbye protocol.Message, cause error) {
	s.closeOnce.Do(func() {
		if goodbye != nil {
			_ = s.write(protocol.Envelope{MessageID: s.ids.Next(), Message: goodbye})
		}
		s.closed.Store(true)
		if goodbye != nil {
			_ = s.conn.CloseWrite()
		}
		srv := s.srv
		if srv.poller != nil {
			srv.poller.remove(s)
		}
		if goodbye != nil {
			lingerClose(s.raw)
		} else {
			_ = s.raw.Close()
		}
		s.calls.Close(closeError(reason, cause))
		srv.mu.Lock()
		delete(srv.sessions, s)
		srv.mu.Unlock()
		srv.live.Add(-1)
		srv.metrics.closed(reason)
		srv.log.Debug("session closed", "device", s.DeviceID(), "reason", string(reason), "err", cause)
		srv.cfg.Handler.Closed(s, reason, cause)
	})
}

func closeError(reason CloseReason, cause error) error {
	if cause != nil {
		return fmt.Errorf("%s: %w", reason, cause)
	}
	return errors.New(string(reason))
}

// openSession asks the handler whether the device of a verified handshake
// may have a session, and starts serving it.
func (s *Server) openSession(tc *tls.Conn, raw net.Conn, cs tls.ConnectionState) {
	id, err := pki.IdentityFromConnectionState(cs)
	if err != nil {
		s.metrics.sessionRefused("bad_certificate")
		s.log.Warn("session refused", "remote", raw.RemoteAddr().String(), "err", err)
		_ = raw.Close()
		return
	}
	now := s.now()
	sess := &Session{srv: s, conn: tc, raw: raw, identity: id, resumed: cs.DidResume, since: now}
	_ = sess.ids.Init(protocol.Gateway)
	sess.peek.r = tc
	sess.r = protocol.NewReader(&sess.peek, s.codec)
	sess.w = protocol.NewWriter(deadlineWriter{tc, s.lim.IOTimeout}, s.codec)
	sess.lastHeard.Store(now.UnixNano())

	ctx, cancel := context.WithTimeout(s.ctx, s.lim.IOTimeout)
	err = s.cfg.Handler.Open(ctx, sess)
	cancel()
	if err != nil {
		s.refuse(sess, err)
		return
	}
	s.mu.Lock()
	s.sessions[sess] = struct{}{}
	shutdown, abrupt := s.shutdown, s.abrupt
	s.mu.Unlock()
	s.live.Add(1)
	s.metrics.opened()
	if shutdown {
		// Shutdown or Close ran while the handler was deciding: it did not
		// see this session, so end it here as they would have, with a
		// goodbye unless the server was closed abruptly.
		var goodbye protocol.Message
		if !abrupt {
			goodbye = &protocol.Disconnect{Reason: protocol.DisconnectShutdown}
		}
		sess.Close(CloseShutdown, goodbye)
		return
	}
	s.log.Debug("session opened", "device", id.DeviceID, "remote", raw.RemoteAddr().String(), "resumed", cs.DidResume)
	if s.poller != nil {
		err := s.poller.add(sess)
		if err == nil {
			return
		}
		s.log.Warn("cannot park session, serving it with a goroutine", "device", id.DeviceID, "err", err)
	}
	sess.serve()
}

// refuse tells a device the handler refused it and closes the connection.
func (s *Server) refuse(sess *Session, err error) {
	var r *Refusal
	if !errors.As(err, &r) {
		r = &Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "session refused", Err: err}
	}
	s.metrics.sessionRefused(r.Reason)
	s.log.Info("session refused", "device", sess.DeviceID(), "remote", sess.raw.RemoteAddr().String(),
		"reason", r.Reason, "err", r.Err)
	var msg protocol.Message = &protocol.Error{Code: r.Code, Text: r.Text}
	if r.Disconnect != 0 {
		msg = &protocol.Disconnect{Reason: r.Disconnect, Text: r.Text}
	}
	_ = sess.w.WriteEnvelope(protocol.Envelope{Version: protocol.Version, MessageID: sess.ids.Next(), Message: msg})
	_ = sess.conn.CloseWrite()
	lingerClose(sess.raw)
}

// goodbyeLinger is how long a connection stays open, half-closed, after
// the gateway's last frame.
const goodbyeLinger = 2 * time.Second

// lingerClose closes raw after a goodbye without resetting the connection.
// A socket closed with input unread sends a reset, and a device still
// writing (a device announces itself as soon as its handshake ends) then
// sees its write fail before it reads the goodbye, and takes the session
// for lost rather than refused, revoked or replaced. So the write side is
// shut at once (a FIN after the goodbye) and the socket closed only after
// goodbyeLinger, by when the device has read the goodbye.
func lingerClose(raw net.Conn) {
	if hc, ok := raw.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		time.AfterFunc(goodbyeLinger, func() { _ = raw.Close() })
		return
	}
	_ = raw.Close()
}

// serve is the reader goroutine of a session not parked in a poller.
func (s *Session) serve() {
	for {
		if err := s.waitFrame(); err != nil {
			s.ended(err)
			return
		}
		if err := s.drain(); err != nil {
			s.ended(err)
			return
		}
	}
}

// waitFrame blocks until the first byte of a frame arrives or the session's
// idle deadline passes.
func (s *Session) waitFrame() error {
	deadline := s.LastHeard().Add(s.srv.lim.IdleTimeout)
	_ = s.conn.SetReadDeadline(deadline)
	n, err := s.conn.Read(s.peek.b[:])
	if n == 1 {
		s.peek.has = true
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errIdle
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

var errIdle = errors.New("idle")

// buffered reports, without waiting, whether the TLS connection holds
// decrypted bytes not read yet; if so the first of them is kept for the next
// frame. A read deadline in the past makes the read return at once unless
// crypto/tls has data buffered, and leaves the connection usable.
func (s *Session) buffered() bool {
	if s.peek.has {
		return true
	}
	_ = s.conn.SetReadDeadline(aLongTimeAgo)
	n, _ := s.conn.Read(s.peek.b[:])
	s.peek.has = n == 1
	return s.peek.has
}

var aLongTimeAgo = time.Unix(1, 0)

// drain reads and handles frames while any are buffered. It returns nil when
// the session should wait for more bytes, or why it must end.
func (s *Session) drain() error {
	for {
		_ = s.conn.SetReadDeadline(s.srv.now().Add(s.srv.lim.IOTimeout))
		env, err := s.r.ReadEnvelope()
		if err != nil {
			return s.frameError(err)
		}
		if s.closed.Load() {
			// Closed after a goodbye, and still open for the device to
			// read it: what the device sends now is not served.
			return ErrClosed
		}
		s.lastHeard.Store(s.srv.now().UnixNano())
		if observe := s.srv.cfg.Observe; observe != nil {
			observe(s, env)
		}
		if err := s.dispatch(env); err != nil {
			return err
		}
		if !s.buffered() {
			return nil
		}
	}
}

// errRejected marks a session ended for a bad frame, after the Error reply.
type rejectedError struct{ err error }

func (e *rejectedError) Error() string { return "frame rejected: " + e.err.Error() }
func (e *rejectedError) Unwrap() error { return e.err }

// frameError handles a read or decode error. An unknown message type is
// answered and the session goes on (nil); every other decode error is
// answered with an Error frame and ends the session.
func (s *Session) frameError(err error) error {
	reply, ok := protocol.ReplyTo(err)
	if !ok {
		return err // the stream failed or ended
	}
	s.srv.metrics.rejected(err)
	_ = s.reply(reply.MessageID, reply.Message)
	if errors.Is(err, protocol.ErrUnsupported) {
		s.srv.log.Info("unsupported message from device", "device", s.DeviceID(), "err", err)
		return nil
	}
	s.srv.log.Warn("bad frame from device", "device", s.DeviceID(), "err", err)
	return &rejectedError{err}
}

// errOutOfOrder reports a message that is valid but not acceptable in a
// session.
var errOutOfOrder = errors.New("message not accepted in a session")

// dispatch handles one message of the device.
func (s *Session) dispatch(env protocol.Envelope) error {
	srv := s.srv
	srv.metrics.received(env.Message.Type())
	if protocol.Owns(protocol.Gateway, env.MessageID) {
		if s.calls.Deliver(env) {
			return nil
		}
		if _, ok := env.Message.(*protocol.Error); ok {
			return nil // a late refusal of a request nobody waits for
		}
		if _, ok := env.Message.(*protocol.AppStatus); ok {
			srv.cfg.Handler.Handle(s, env) // a late reply still says what the device runs
			return nil
		}
		return s.reject(env, protocol.CodeUnexpected, "reply to no request")
	}
	switch m := env.Message.(type) {
	case *protocol.Heartbeat:
		if !srv.cfg.NoHeartbeatAck {
			ack := &protocol.HeartbeatAck{ServerTime: uint64(srv.now().UnixMilli())} //nolint:gosec // positive until 292277026
			if srv.cfg.HeartbeatInterval > 0 {
				ack.IntervalSeconds = uint32(srv.cfg.HeartbeatInterval / time.Second) //nolint:gosec // bounded by configuration
			}
			srv.metrics.heartbeat()
			if err := s.reply(env.MessageID, ack); err != nil {
				return err
			}
		}
		srv.cfg.Handler.Handle(s, env)
	case *protocol.Disconnect:
		return errGoodbye
	case *protocol.RenewRequest:
		srv.renew(s, env.MessageID, m)
	case *protocol.AppStatus, *protocol.MetricsReport, *protocol.ConfigAck, *protocol.Ack, *protocol.Error:
		srv.cfg.Handler.Handle(s, env)
	default:
		return s.reject(env, protocol.CodeUnexpected, env.Message.Type().String()+" not accepted in a session")
	}
	return nil
}

var errGoodbye = errors.New("goodbye")

// reject answers a message that may not be sent in a session and ends the
// session.
func (s *Session) reject(env protocol.Envelope, code protocol.ErrorCode, text string) error {
	s.srv.metrics.rejectedReason("unexpected")
	s.srv.log.Warn("unexpected message from device", "device", s.DeviceID(), "type", env.Message.Type().String(), "id", env.MessageID)
	_ = s.reply(env.MessageID, &protocol.Error{Code: code, Text: text})
	return &rejectedError{fmt.Errorf("%w: %s", errOutOfOrder, env.Message.Type())}
}

// ended closes the session after its reader stopped with err.
func (s *Session) ended(err error) {
	var rej *rejectedError
	switch {
	case errors.Is(err, errGoodbye):
		s.closeWith(CloseGoodbye, nil, nil)
	case errors.Is(err, errIdle):
		s.closeWith(CloseIdle, &protocol.Disconnect{Reason: protocol.DisconnectTimeout}, nil)
	case errors.As(err, &rej):
		s.closeWith(CloseProtocol, &protocol.Disconnect{Reason: protocol.DisconnectProtocolError}, err)
	default:
		if s.closed.Load() {
			return // closed by someone else; the read failed because of it
		}
		s.closeWith(CloseLost, nil, err)
	}
}

// renew answers a RenewRequest on a goroutine of its own: the Renewer may
// wait for Kubernetes.
func (s *Server) renew(sess *Session, id uint64, m *protocol.RenewRequest) {
	if s.cfg.Renewer == nil {
		s.metrics.renewal("refused")
		_ = sess.reply(id, &protocol.Error{Code: protocol.CodeUnsupported, Text: "renewal not offered"})
		return
	}
	if !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.lim.RenewTimeout)
		defer cancel()
		chain, err := s.cfg.Renewer.Renew(ctx, sess, m.CSR)
		if errors.Is(err, ErrNoReply) {
			s.metrics.renewal("unanswered")
			s.log.Debug("renewal left unanswered", "device", sess.DeviceID())
			return
		}
		if err != nil {
			r := asRefusal(err)
			s.metrics.renewal("refused")
			s.log.Info("renewal refused", "device", sess.DeviceID(), "reason", r.Reason, "err", r.Err)
			_ = sess.reply(id, &protocol.Error{Code: r.Code, Text: r.Text})
			return
		}
		s.metrics.renewal("ok")
		_ = sess.reply(id, &protocol.RenewResponse{CertChain: chain})
	}()
}

// peekReader returns a byte read ahead before reading on.
type peekReader struct {
	r   io.Reader
	b   [1]byte
	has bool
}

func (p *peekReader) Read(b []byte) (int, error) {
	if p.has {
		if len(b) == 0 {
			return 0, nil
		}
		b[0] = p.b[0]
		p.has = false
		return 1, nil
	}
	return p.r.Read(b)
}

// deadlineWriter bounds every write with a deadline.
type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(b []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(b)
}
