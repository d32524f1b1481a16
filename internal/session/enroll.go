package session

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Enrollment is one enrollment exchange, as an Enroller sees it.
type Enrollment struct {
	// Request is the device's EnrollRequest.
	Request *protocol.EnrollRequest
	// State is the enrollment connection's TLS state. Its
	// ExportKeyingMaterial gives the exporter value that binds the request's
	// proofs to this connection.
	State tls.ConnectionState
	// Remote is the device's address.
	Remote net.Addr
	// DeviceID is set by the server from the Enroller's response.
	DeviceID string
	// Value is the Enroller's own data, kept from Enroll to Enrolled.
	Value any
}

// maxEnrollMessages bounds the messages of one enrollment exchange.
const maxEnrollMessages = 8

// enroll runs an enrollment exchange on a server-authenticated connection:
// EnrollRequest → EnrollResponse (or Error), then EnrollAck → Ack, until the
// device says goodbye. Anything else, or a second request, ends it.
func (s *Server) enroll(tc *tls.Conn, raw net.Conn, cs tls.ConnectionState) {
	defer raw.Close()
	ctx, cancel := context.WithTimeout(s.ctx, s.lim.EnrollTimeout)
	defer cancel()
	_ = raw.SetDeadline(s.now().Add(s.lim.EnrollTimeout))
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(aLongTimeAgo) })
	defer stop()

	r := protocol.NewReader(tc, s.codec)
	w := protocol.NewWriter(tc, s.codec)
	reply := func(id uint64, m protocol.Message) error {
		return w.WriteEnvelope(protocol.Envelope{Version: protocol.Version, MessageID: id, Message: m})
	}
	var e *Enrollment
	for range maxEnrollMessages {
		env, err := r.ReadEnvelope()
		if err != nil {
			if rep, ok := protocol.ReplyTo(err); ok {
				s.metrics.rejected(err)
				_ = reply(rep.MessageID, rep.Message)
				if errors.Is(err, protocol.ErrUnsupported) {
					continue
				}
			}
			if e != nil && e.DeviceID != "" {
				s.log.Debug("enrollment connection ended", "device", e.DeviceID, "err", err)
			}
			return
		}
		s.metrics.received(env.Message.Type())
		switch m := env.Message.(type) {
		case *protocol.EnrollRequest:
			if e != nil {
				_ = reply(env.MessageID, &protocol.Error{Code: protocol.CodeUnexpected, Text: "one enrollment per connection"})
				return
			}
			e = &Enrollment{Request: m, State: cs, Remote: raw.RemoteAddr()}
			resp, err := s.answerEnroll(ctx, e)
			if err != nil {
				rf := asRefusal(err)
				s.metrics.enrollment(rf.Reason)
				level := slog.LevelInfo
				if rf.Reason == ReasonBusy {
					level = slog.LevelDebug // counted; one line each would flood the log when a fleet enrolls
				}
				s.log.Log(ctx, level, "enrollment refused", "remote", raw.RemoteAddr().String(), "deviceType", m.DeviceType,
					"reason", rf.Reason, "err", rf.Err)
				_ = reply(env.MessageID, &protocol.Error{Code: rf.Code, Text: rf.Text})
				return
			}
			e.DeviceID = resp.DeviceID
			if err := reply(env.MessageID, resp); err != nil {
				return
			}
		case *protocol.EnrollAck:
			if e == nil || e.DeviceID == "" || m.DeviceID != e.DeviceID {
				_ = reply(env.MessageID, &protocol.Error{Code: protocol.CodeUnexpected, Text: "acknowledges no enrollment"})
				return
			}
			if err := s.cfg.Enroller.Enrolled(ctx, e, m); err != nil {
				rf := asRefusal(err)
				s.log.Warn("enrollment acknowledgement failed", "device", e.DeviceID, "err", rf.Err)
				_ = reply(env.MessageID, &protocol.Error{Code: rf.Code, Text: rf.Text})
				return
			}
			s.metrics.enrollment("ok")
			s.log.Info("device enrolled", "device", e.DeviceID, "remote", raw.RemoteAddr().String())
			_ = reply(env.MessageID, &protocol.Ack{})
		case *protocol.Disconnect:
			return
		default:
			_ = reply(env.MessageID, &protocol.Error{Code: protocol.CodeUnexpected, Text: "enrollment only"})
			return
		}
	}
}

// answerEnroll asks the Enroller, or refuses when there is none or when no
// enrollment slot frees up in time.
func (s *Server) answerEnroll(ctx context.Context, e *Enrollment) (*protocol.EnrollResponse, error) {
	if s.cfg.Enroller == nil {
		return nil, &Refusal{Code: protocol.CodeUnauthorized, Reason: "PairingClosed", Text: "enrollment is not open"}
	}
	if !s.enrollSlot(ctx) {
		return nil, &Refusal{Code: protocol.CodeUnavailable, Reason: ReasonBusy, Text: "gateway busy with other enrollments, retry later"}
	}
	defer func() { <-s.enrolling }()
	resp, err := s.cfg.Enroller.Enroll(ctx, e)
	if err == nil && (resp == nil || resp.DeviceID == "") {
		err = errors.New("enroller returned no device id")
	}
	return resp, err
}

// enrollSlot takes one of the MaxEnrollments slots, waiting up to
// EnrollWait when they are taken and fewer than 4 × MaxEnrollments requests
// wait already. It reports whether it took one.
func (s *Server) enrollSlot(ctx context.Context) bool {
	select {
	case s.enrolling <- struct{}{}:
		return true
	default:
	}
	if s.enrollQ.Add(1) > int64(4*s.lim.MaxEnrollments) {
		s.enrollQ.Add(-1)
		return false
	}
	s.metrics.waitingEnrollments(1)
	defer func() {
		s.enrollQ.Add(-1)
		s.metrics.waitingEnrollments(-1)
	}()
	t := time.NewTimer(s.lim.EnrollWait)
	defer t.Stop()
	select {
	case s.enrolling <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}
