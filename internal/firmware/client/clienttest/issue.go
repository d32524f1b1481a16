package clienttest

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/seal"
	"github.com/wasmbed/wasmbed/internal/session"
)

// refused is a refusal with Error(refused) sent to the device.
func refused(reason, text string, err error) *session.Refusal {
	return &session.Refusal{Code: protocol.CodeRefused, Reason: reason, Text: text, Err: err}
}

// enroller is the server's session.Enroller: it issues device certificates
// from the server's authority.
type enroller struct{ s *Server }

// Enroll answers an EnrollRequest as the product gateway must: the CSR
// proves possession of the enrolled key, the sealing-key proof binds the
// sealing key to it and to this connection, and the certificate comes from
// the device CA for exactly that key.
func (e enroller) Enroll(_ context.Context, en *session.Enrollment) (*protocol.EnrollResponse, error) {
	s, m := e.s, en.Request
	if s.opts.RefuseEnrollment {
		return nil, &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "PairingClosed", Text: "no pairing window open"}
	}
	refuse := func(text string, err error) (*protocol.EnrollResponse, error) {
		s.EnrollRefusals.Add(1)
		return nil, refused("BadProof", text, err)
	}
	pub, err := pki.PublicKeyFromRaw(pki.KeyAlgorithm(m.KeyAlgorithm.String()), m.PublicKey)
	if err != nil {
		return refuse("identity key not accepted", err)
	}
	csr, err := pki.ParseCSR(m.CSR)
	if err != nil {
		return refuse("bad certificate request", err)
	}
	var sealing *ecdh.PublicKey
	if len(m.SealingKey) > 0 {
		binding, err := pki.EnrollmentBinding(en.State)
		if err != nil {
			return nil, fmt.Errorf("enrollment binding: %w", err)
		}
		if err := pki.VerifySealingKeyProof(pub, binding, m.SealingKey, m.SealingKeyProof); err != nil {
			return refuse("sealing key proof invalid", err)
		}
		if sealing, err = seal.ParsePublicKey(m.SealingKey); err != nil {
			return refuse("sealing key not accepted", err)
		}
	}
	deviceID := fmt.Sprintf("%s-%06d", m.DeviceType, s.nextDev.Add(1))
	cert, err := s.ca.IssueDeviceFromCSR(csr, pki.DeviceRequest{DeviceID: deviceID, PublicKey: pub, Lifetime: s.opts.DeviceLifetime})
	if err != nil {
		if re := (*pki.RequestError)(nil); errors.As(err, &re) {
			return refuse("bad certificate request", err)
		}
		return nil, fmt.Errorf("issue %s: %w", deviceID, err)
	}
	chain := cert.DER()
	if s.opts.Enroll != nil {
		chain = s.opts.Enroll(deviceID, pub)
	}
	if sealing != nil {
		s.mu.Lock()
		s.sealing[deviceID] = sealing
		s.mu.Unlock()
	}
	return &protocol.EnrollResponse{DeviceID: deviceID, CertChain: chain, SigningKey: s.signKey.Public().(ed25519.PublicKey)}, nil
}

// Enrolled counts the device as enrolled.
func (e enroller) Enrolled(_ context.Context, _ *session.Enrollment, ack *protocol.EnrollAck) error {
	s := e.s
	s.mu.Lock()
	s.enrolled[ack.DeviceID] = true
	s.changed()
	s.mu.Unlock()
	return nil
}

// renewer is the server's session.Renewer: it renews from the server's
// authority, or refuses or ignores the request as the knobs say, and
// records every request.
type renewer struct{ s *Server }

// Renew answers a RenewRequest and records it in Server.Renewals.
func (r renewer) Renew(_ context.Context, sess *session.Session, der []byte) ([][]byte, error) {
	s := r.s
	rec := Renewal{DeviceID: sess.DeviceID(), At: s.now()}
	chain, err := s.renew(sess, der)
	var rf *session.Refusal
	switch {
	case errors.As(err, &rf):
		rec.Refused = rf.Code
	case errors.Is(err, session.ErrNoReply):
	case err != nil:
		rec.Refused = protocol.CodeInternal
	case len(chain) > 0:
		if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
			rec.Serial = leaf.SerialNumber
		}
	}
	s.mu.Lock()
	s.renewals = append(s.renewals, rec)
	s.changed()
	s.mu.Unlock()
	return chain, err
}

// renew issues a certificate from the test authority for the CSR's key,
// under the session's device id, unless renewals are refused or ignored or
// the CSR is bad.
func (s *Server) renew(sess *session.Session, der []byte) ([][]byte, error) {
	if s.opts.IgnoreRenewal {
		return nil, session.ErrNoReply
	}
	if s.refuseRenewal.Load() {
		return nil, refused("RenewalRefused", "renewal refused", nil)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, refused("BadRequest", "bad certificate request", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, refused("BadRequest", "bad certificate request signature", err)
	}
	if s.opts.Renew != nil {
		chain, e := s.opts.Renew(sess.DeviceID(), csr)
		if e != nil {
			return nil, &session.Refusal{Code: e.Code, Reason: "Scripted", Text: e.Text}
		}
		return chain, nil
	}
	lifetime := s.opts.RenewLifetime
	if lifetime == 0 {
		lifetime = s.opts.DeviceLifetime
	}
	// The session's device id and key: renewal never changes either.
	cert, err := s.ca.IssueDeviceFromCSR(csr, pki.DeviceRequest{
		DeviceID: sess.DeviceID(), PublicKey: sess.Identity().Certificate.PublicKey, Lifetime: lifetime,
	})
	if err != nil {
		if errors.Is(err, pki.ErrKeyMismatch) {
			return nil, refused("KeyMismatch", "key change not allowed", err)
		}
		if re := (*pki.RequestError)(nil); errors.As(err, &re) {
			return nil, refused("BadRequest", "bad certificate request", err)
		}
		return nil, fmt.Errorf("renew %s: %w", sess.DeviceID(), err)
	}
	return cert.DER(), nil
}
