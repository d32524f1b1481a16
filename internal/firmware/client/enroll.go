package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// ErrBadEnrollment reports an EnrollResponse the device refuses: its chain
// does not verify up to the pinned root through a CA allowed to issue
// device certificates (the pinned device CA, when configured), or does not
// certify the device's key under the id the response names. Nothing is
// stored.
var ErrBadEnrollment = errors.New("client: bad enrollment response")

// enroll runs the enrollment exchange over conn: EnrollRequest (proof of
// possession bound to this connection) → EnrollResponse → verify the chain
// → persist → EnrollAck → Ack → Disconnect(enrolled). The connection is
// closed when it returns; on success the next connection is opened at
// once, with the new certificate.
func (c *Client) enroll(ctx context.Context, lm *link.Manager, conn *link.Conn) (err error) {
	c.phase.Store(uint32(Enrolling))
	tc, err := c.handshake(ctx, lm, conn, nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	stop := context.AfterFunc(ctx, func() { _ = tc.SetDeadline(aLongTimeAgo) })
	defer stop()
	_ = tc.SetDeadline(time.Now().Add(c.cfg.IOTimeout))

	established := false
	defer func() {
		if err == nil {
			return
		}
		c.stats.sessionErrors.Add(1)
		c.log.Info("enrollment failed", "endpoint", conn.Endpoint(), "err", err)
		if established {
			lm.Lost(err)
		} else {
			lm.Reject(err)
		}
	}()

	r := protocol.NewReader(tc, c.cfg.Codec)
	w := protocol.NewWriter(tc, c.cfg.Codec)
	binding, err := pki.EnrollmentBinding(tc.ConnectionState())
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	req, err := c.cfg.Identity.EnrollRequest(binding)
	if err != nil {
		return fmt.Errorf("enroll: build request: %w", err)
	}
	key, err := pki.PublicKeyFromRaw(pki.KeyAlgorithm(req.KeyAlgorithm.String()), req.PublicKey)
	if err != nil {
		return fmt.Errorf("enroll: identity key: %w", err)
	}
	if len(c.cfg.PairingToken) > 0 {
		req.PairingToken = c.cfg.PairingToken
	}
	reqID := c.id()
	if err := w.WriteEnvelope(protocol.Envelope{MessageID: reqID, Message: req}); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	env, err := readReply(r, w, reqID)
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	// The gateway answered: it is a working endpoint even if it refuses.
	established = true
	var resp *protocol.EnrollResponse
	switch m := env.Message.(type) {
	case *protocol.EnrollResponse:
		resp = m
	case *protocol.Error:
		c.stats.errorsReceived.Add(1)
		return &EnrollError{Code: m.Code, Text: m.Text}
	default:
		return fmt.Errorf("enroll: unexpected %s reply", env.Message.Type())
	}
	// Verify the chain as a renewed one is verified: whoever answered
	// must not hand the device an identity the platform's device CA did
	// not issue for its key.
	if _, err := c.verifyOwnChain(ctx, resp.CertChain, resp.DeviceID, key); err != nil {
		c.stats.enrollmentsRejected.Add(1)
		c.log.Warn("enrollment response refused", "endpoint", conn.Endpoint(), "err", err)
		return fmt.Errorf("enroll: %w: %w", ErrBadEnrollment, err)
	}
	if err := c.cfg.Identity.Enroll(resp); err != nil {
		return fmt.Errorf("enroll: store identity: %w", err)
	}
	c.stats.enrollments.Add(1)
	c.log.Info("device enrolled", "device", resp.DeviceID, "endpoint", conn.Endpoint())
	ackID := c.id()
	if err := w.WriteEnvelope(protocol.Envelope{MessageID: ackID, Message: &protocol.EnrollAck{DeviceID: resp.DeviceID}}); err != nil {
		// The identity is stored; the gateway learns of it at the first
		// session, so this is not worth another enrollment.
		c.log.Debug("enroll ack not sent", "err", err)
	} else if env, err := readReply(r, w, ackID); err == nil {
		if e, ok := env.Message.(*protocol.Error); ok {
			c.stats.errorsReceived.Add(1)
			c.log.Warn("enroll ack refused", "code", e.Code, "text", e.Text)
		}
	}
	_ = w.WriteEnvelope(protocol.Envelope{MessageID: c.id(), Message: &protocol.Disconnect{Reason: protocol.DisconnectEnrolled}})
	lm.Established()
	_ = conn.Close()
	return nil
}

// readReply reads envelopes until the reply to id arrives, answering
// undecodable input as the protocol asks and skipping unrelated messages.
func readReply(r *protocol.Reader, w *protocol.Writer, id uint64) (protocol.Envelope, error) {
	for range 16 {
		env, err := r.ReadEnvelope()
		if err != nil {
			if reply, ok := protocol.ReplyTo(err); ok && !errors.Is(err, protocol.ErrFrameTooLarge) {
				_ = w.WriteEnvelope(reply)
				continue
			}
			return env, err
		}
		if _, ok := env.Message.(*protocol.Disconnect); ok {
			return env, errors.New("gateway disconnected")
		}
		if _, isErr := env.Message.(*protocol.Error); env.MessageID == id || isErr && env.MessageID == 0 {
			return env, nil
		}
	}
	return protocol.Envelope{}, errors.New("no reply")
}
