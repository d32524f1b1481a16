package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// session is one mutually authenticated connection to a gateway.
type session struct {
	c      *Client
	tc     *tls.Conn
	r      *protocol.Reader
	w      *protocol.Writer
	peek   peekReader
	lastRx time.Time
	heard  bool // the gateway sent something: the endpoint accepted us
	hb     protocol.Heartbeat
}

// peekReader returns a byte read ahead of time before reading on.
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

// session runs one session over conn until it ends.
func (c *Client) session(ctx context.Context, conn *link.Conn) error {
	cert, err := c.cfg.Identity.Certificate()
	if err != nil {
		c.cfg.Link.Reject(err)
		return fmt.Errorf("session: device certificate: %w", err)
	}
	c.checkExpiry(cert)
	tc, err := c.handshake(ctx, c.cfg.Link, conn, cert)
	if err != nil {
		return err
	}
	s := &session{c: c, tc: tc, lastRx: c.clock.Now()}
	s.peek.r = tc
	s.r = protocol.NewReader(&s.peek, c.cfg.Codec)
	s.w = protocol.NewWriter(tc, c.cfg.Codec)

	c.mu.Lock()
	c.cur = tc
	c.events &= evShutdown // stale timer events belong to the previous session
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cur = nil
		c.blocking = false
		c.queued = c.queued[:0]
		c.mu.Unlock()
		c.stopTimers()
		c.renewSessionEnded()
		_ = tc.Close()
	}()

	err = s.run(ctx)
	switch {
	case errors.Is(err, errShutdown):
		return ctx.Err()
	case errors.Is(err, ErrRevoked):
		return err
	case s.heard:
		c.stats.sessionErrors.Add(1)
		c.log.Info("gateway session ended", "endpoint", conn.Endpoint(), "err", err)
		c.cfg.Link.Lost(err)
	default:
		c.stats.sessionErrors.Add(1)
		c.log.Info("gateway refused session", "endpoint", conn.Endpoint(), "err", err)
		c.cfg.Link.Reject(err)
	}
	return err
}

func (s *session) run(ctx context.Context) error {
	c := s.c
	// Announce: a heartbeat, the state of every application, metrics.
	if err := s.sendHeartbeat(); err != nil {
		return err
	}
	for _, st := range c.cfg.Apps.Statuses(nil) {
		if err := s.send(c.id(), &st); err != nil {
			return err
		}
	}
	if err := s.sendMetrics(); err != nil {
		return err
	}
	c.armTimers()
	if err := s.renewCheck(ctx); err != nil {
		return err
	}
	for {
		if err := s.serviceEvents(ctx); err != nil {
			return err
		}
		env, err := s.read()
		switch {
		case errors.Is(err, errWoken):
			continue
		case err != nil:
			if reply, ok := protocol.ReplyTo(err); ok {
				if werr := s.sendError(reply); werr != nil {
					return werr
				}
				if errors.Is(err, protocol.ErrFrameTooLarge) {
					return err // the stream is no longer aligned
				}
				s.received()
				continue
			}
			return err
		}
		s.received()
		if err := s.handle(ctx, env); err != nil {
			return err
		}
	}
}

// received records that the gateway spoke.
func (s *session) received() {
	s.lastRx = s.c.clock.Now()
	if !s.heard {
		s.heard = true
		s.c.cfg.Link.Established()
		s.c.stats.sessions.Add(1)
		s.c.phase.Store(uint32(Online))
		s.c.log.Debug("gateway session established", "endpoint", s.tc.RemoteAddr())
	}
}

// serviceEvents handles the pending wake-ups.
func (s *session) serviceEvents(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	ev := c.events
	c.events = 0
	var queued []protocol.AppStatus
	if ev&evStatus != 0 {
		queued = append(queued, c.queued...)
		c.queued = c.queued[:0]
	}
	c.mu.Unlock()
	if ev == 0 {
		return nil
	}
	if ev&evShutdown != 0 || ctx.Err() != nil {
		s.goodbye(protocol.DisconnectShutdown)
		return errShutdown
	}
	if ev&evHeartbeat != 0 {
		timeout := c.cfg.LivenessTimeout
		if timeout <= 0 {
			timeout = 3 * c.heartbeatInterval()
		}
		if idle := c.clock.Now().Sub(s.lastRx); idle >= timeout {
			return fmt.Errorf("gateway silent for %v", idle)
		}
		c.mu.Lock()
		c.hbTimer.Reset(c.interval)
		c.mu.Unlock()
		if err := s.sendHeartbeat(); err != nil {
			return err
		}
	}
	for i := range queued {
		if err := s.send(c.id(), &queued[i]); err != nil {
			return err
		}
	}
	if ev&evRenew != 0 {
		if err := s.renewCheck(ctx); err != nil {
			return err
		}
	}
	if ev&(evMetrics|evChanged) != 0 {
		if ev&evMetrics != 0 && c.mTimer != nil {
			c.mTimer.Reset(c.cfg.MetricsInterval)
		}
		if err := s.sendMetrics(); err != nil {
			return err
		}
	}
	return nil
}

// read waits for the next frame. It returns errWoken if a wake-up came
// first; once a frame's first byte arrived, the rest is read under the I/O
// timeout and wake-ups wait.
func (s *session) read() (protocol.Envelope, error) {
	c := s.c
	_ = s.tc.SetReadDeadline(time.Time{})
	c.mu.Lock()
	if c.events != 0 {
		c.mu.Unlock()
		return protocol.Envelope{}, errWoken
	}
	c.blocking = true
	c.mu.Unlock()
	n, err := s.tc.Read(s.peek.b[:])
	c.mu.Lock()
	c.blocking = false
	c.mu.Unlock()
	if n == 0 {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return protocol.Envelope{}, errWoken
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return protocol.Envelope{}, err
	}
	s.peek.has = true
	_ = s.tc.SetReadDeadline(time.Now().Add(c.cfg.IOTimeout))
	return s.r.ReadEnvelope()
}

// handle answers one gateway message.
func (s *session) handle(ctx context.Context, env protocol.Envelope) error {
	c := s.c
	apps := c.cfg.Apps
	var st protocol.AppStatus
	switch m := env.Message.(type) {
	case *protocol.HeartbeatAck:
		c.stats.heartbeatAcks.Add(1)
		if m.IntervalSeconds > 0 {
			c.setInterval(time.Duration(m.IntervalSeconds) * time.Second)
		}
		return nil
	case *protocol.Ack:
		return nil
	case *protocol.Error:
		c.stats.errorsReceived.Add(1)
		if c.takeRenewal(env.MessageID) {
			return s.renewRefused(ctx, m)
		}
		c.log.Warn("gateway reported an error", "id", env.MessageID, "code", m.Code, "text", m.Text)
		return nil
	case *protocol.RenewResponse:
		return s.renewed(ctx, env.MessageID, m)
	case *protocol.Disconnect:
		c.log.Info("gateway disconnected", "reason", m.Reason, "text", m.Text)
		if m.Reason == protocol.DisconnectRevoked {
			return ErrRevoked
		}
		return fmt.Errorf("gateway disconnected: %s", m.Reason)
	case *protocol.Deploy:
		st = apps.Deploy(ctx, m)
	case *protocol.Update:
		st = apps.Update(ctx, m)
	case *protocol.Start:
		st = apps.Start(ctx, m)
	case *protocol.Stop:
		st = apps.Stop(ctx, m)
	case *protocol.Remove:
		st = apps.Remove(ctx, m)
	case *protocol.ConfigPush:
		c.stats.commands.Add(1)
		if err := apps.Configure(ctx, m); err != nil {
			return s.sendError(protocol.Envelope{MessageID: env.MessageID,
				Message: &protocol.Error{Code: protocol.CodeRefused, Text: err.Error()}})
		}
		return s.send(env.MessageID, &protocol.ConfigAck{App: m.App, Generation: m.Generation})
	default:
		// A message the gateway may send but that has no meaning in a
		// session (an enrollment reply), or one this firmware does not know.
		code := protocol.CodeUnexpected
		if !env.Message.Type().Known() {
			code = protocol.CodeUnsupported
		}
		return s.sendError(protocol.Envelope{MessageID: env.MessageID,
			Message: &protocol.Error{Code: code, Text: env.Message.Type().String() + " not accepted in a session"}})
	}
	c.stats.commands.Add(1)
	if err := s.send(env.MessageID, &st); err != nil {
		return err
	}
	c.signal(evChanged)
	return nil
}

// goodbyeLinger bounds how long a closing session waits for the gateway to
// close its side after a Disconnect.
const goodbyeLinger = time.Second

// goodbye sends a Disconnect and closes the write side, then waits briefly
// for the gateway to close: closing with unread input would reset the
// connection and could destroy the goodbye before the gateway reads it.
func (s *session) goodbye(reason protocol.DisconnectReason) {
	if err := s.send(s.c.id(), &protocol.Disconnect{Reason: reason}); err != nil {
		return
	}
	_ = s.tc.CloseWrite()
	_ = s.tc.SetReadDeadline(time.Now().Add(goodbyeLinger))
	var buf [256]byte
	for {
		if _, err := s.tc.Read(buf[:]); err != nil {
			return
		}
	}
}

func (s *session) send(id uint64, m protocol.Message) error {
	_ = s.tc.SetWriteDeadline(time.Now().Add(s.c.cfg.IOTimeout))
	return s.w.WriteEnvelope(protocol.Envelope{MessageID: id, Message: m})
}

func (s *session) sendError(env protocol.Envelope) error {
	s.c.stats.errorsSent.Add(1)
	_ = s.tc.SetWriteDeadline(time.Now().Add(s.c.cfg.IOTimeout))
	return s.w.WriteEnvelope(env)
}

func (s *session) sendHeartbeat() error {
	c := s.c
	s.hb = protocol.Heartbeat{}
	if c.cfg.Telemetry != nil {
		c.cfg.Telemetry.Heartbeat(&s.hb)
	}
	s.hb.Link = c.linkQuality()
	c.stats.heartbeats.Add(1)
	return s.send(c.id(), &s.hb)
}

func (s *session) sendMetrics() error {
	c := s.c
	var m protocol.MetricsReport
	if c.cfg.Telemetry != nil {
		c.cfg.Telemetry.Metrics(&m)
	}
	m.Link = c.linkQuality()
	c.stats.reports.Add(1)
	return s.send(c.id(), &m)
}

func (c *Client) linkQuality() protocol.Link {
	st := c.cfg.Link.Status()
	l := protocol.Link{LossPermille: uint16(min(max(st.LossPermille, 0), 1000))}
	if st.HasRSSI {
		l.RSSI = int16(min(max(st.RSSI, math.MinInt16), math.MaxInt16)) //nolint:gosec // clamped to the int16 range
	}
	return l
}

func (c *Client) heartbeatInterval() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.interval
}

func (c *Client) setInterval(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d == c.interval {
		return
	}
	c.interval = d
	if c.hbTimer != nil {
		c.hbTimer.Reset(d)
	}
}

// armTimers starts the heartbeat and metrics timers for a new session.
func (c *Client) armTimers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hbTimer == nil {
		c.hbTimer = c.clock.AfterFunc(c.interval, c.onHeartbeat)
	} else {
		c.hbTimer.Reset(c.interval)
	}
	if c.cfg.MetricsInterval > 0 {
		if c.mTimer == nil {
			c.mTimer = c.clock.AfterFunc(c.cfg.MetricsInterval, c.onMetrics)
		} else {
			c.mTimer.Reset(c.cfg.MetricsInterval)
		}
	}
}

func (c *Client) stopTimers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hbTimer != nil {
		c.hbTimer.Stop()
	}
	if c.mTimer != nil {
		c.mTimer.Stop()
	}
}
