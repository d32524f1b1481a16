// Package clienttest provides a small gateway for tests of the device
// firmware: a TLS 1.3 server on loopback that speaks the device protocol.
// It enrolls devices on its enrollment listener — checking the proof of
// possession (the CSR signed by the identity key) and the sealing-key proof
// bound to the connection, and issuing certificates from its authority's
// device CA —, serves mutually authenticated sessions on its session
// listener with a gateway-CA certificate (acknowledging heartbeats,
// recording statuses and metrics, renewing device certificates), lets a
// test send any command to a connected device and wait for the reply, and
// can drop every connection or stop listening to simulate a dead gateway.
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
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/seal"
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

// Server is a minimal gateway for tests.
type Server struct {
	opts     Options
	ca       *pki.Authority
	gwCert   tls.Certificate
	signKey  ed25519.PrivateKey
	codec    *protocol.Codec
	log      *slog.Logger
	enrollLn net.Listener
	sessLn   net.Listener
	sessAddr string
	enrAddr  string

	mu       sync.Mutex
	peers    map[string]*Peer
	conns    map[net.Conn]struct{}
	enrolled map[string]bool
	sealing  map[string]*ecdh.PublicKey // device id → sealing key proven at enrollment
	waiters  []chan struct{}
	history  []Record
	nextDev  atomic.Uint64
	closed   bool
	wg       sync.WaitGroup

	refuseRenewal atomic.Bool
	renewals      []Renewal

	// Counters, safe to read at any time.
	Heartbeats    atomic.Uint64
	Sessions      atomic.Uint64
	Goodbyes      atomic.Uint64
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

// Record is one message a device sent.
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
		conns:    map[net.Conn]struct{}{},
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
	if s.codec, err = protocol.NewCodec(protocol.Gateway, protocol.Limits{}); err != nil {
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
	enrCfg, err := pki.EnrollmentServerTLSConfig(pki.ServerOptions{Certificate: s.gwCert, Verifier: v})
	if err != nil {
		return nil, err
	}
	if s.enrollLn, err = net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.EnrollPort))); err != nil {
		return nil, err
	}
	if s.sessLn, err = net.Listen("tcp", net.JoinHostPort(opts.Host, strconv.Itoa(opts.SessionPort))); err != nil {
		_ = s.enrollLn.Close()
		return nil, err
	}
	s.enrAddr, s.sessAddr = s.enrollLn.Addr().String(), s.sessLn.Addr().String()
	s.wg.Add(2)
	go s.accept(s.enrollLn, enrCfg, s.serveEnroll)
	go s.accept(s.sessLn, sessCfg, s.serveSession)
	return s, nil
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

// Close stops listening, drops every connection and waits for the
// server's goroutines.
func (s *Server) Close() {
	s.StopListening()
	s.DropAll()
	s.wg.Wait()
}

// StopListening closes both listeners: new connections are refused.
func (s *Server) StopListening() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	_ = s.enrollLn.Close()
	_ = s.sessLn.Close()
}

// DropAll closes every open connection without a goodbye.
func (s *Server) DropAll() {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
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

// Enrolled returns the number of devices enrolled so far.
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

// History returns the messages devices sent, oldest first (empty when
// Options.Quiet).
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

// WaitRecord waits for a message from a device matching match.
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

func (s *Server) accept(ln net.Listener, cfg *tls.Config, serve func(*tls.Conn)) {
	defer s.wg.Done()
	for {
		raw, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = raw.Close()
			continue
		}
		s.conns[raw] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, raw)
				s.mu.Unlock()
				_ = raw.Close()
			}()
			tc := tls.Server(raw, cfg)
			if err := pki.Handshake(context.Background(), tc, 10*time.Second); err != nil {
				s.log.Debug("handshake failed", "err", err)
				return
			}
			serve(tc)
		}()
	}
}

func (s *Server) serveEnroll(tc *tls.Conn) {
	r := protocol.NewReader(tc, s.codec)
	w := protocol.NewWriter(tc, s.codec)
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		env, err := r.ReadEnvelope()
		if err != nil {
			if reply, ok := protocol.ReplyTo(err); ok {
				_ = w.WriteEnvelope(reply)
				continue
			}
			return
		}
		switch m := env.Message.(type) {
		case *protocol.EnrollRequest:
			_ = w.WriteEnvelope(s.enroll(tc, env.MessageID, m))
		case *protocol.EnrollAck:
			s.mu.Lock()
			s.enrolled[m.DeviceID] = true
			s.changed()
			s.mu.Unlock()
			_ = w.WriteEnvelope(protocol.Envelope{MessageID: env.MessageID, Message: &protocol.Ack{}})
		case *protocol.Disconnect:
			return
		default:
			_ = w.WriteEnvelope(errorReply(env.MessageID, protocol.CodeUnexpected, "enrollment only"))
		}
	}
}

// enroll answers an EnrollRequest as the product gateway must: the CSR
// proves possession of the enrolled key, the sealing-key proof binds the
// sealing key to it and to this connection, and the certificate comes from
// the device CA for exactly that key.
func (s *Server) enroll(tc *tls.Conn, id uint64, m *protocol.EnrollRequest) protocol.Envelope {
	if s.opts.RefuseEnrollment {
		return errorReply(id, protocol.CodeUnauthorized, "no pairing window open")
	}
	refuse := func(text string, err error) protocol.Envelope {
		s.EnrollRefusals.Add(1)
		s.log.Debug("enrollment refused", "reason", text, "err", err)
		return errorReply(id, protocol.CodeRefused, text)
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
		binding, err := pki.EnrollmentBinding(tc.ConnectionState())
		if err != nil {
			return errorReply(id, protocol.CodeInternal, "no enrollment binding")
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
		var re *pki.RequestError
		if errors.As(err, &re) {
			return refuse("bad certificate request", err)
		}
		return errorReply(id, protocol.CodeInternal, err.Error())
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
	return protocol.Envelope{MessageID: id, Message: &protocol.EnrollResponse{
		DeviceID: deviceID, CertChain: chain, SigningKey: s.signKey.Public().(ed25519.PublicKey),
	}}
}

func errorReply(id uint64, code protocol.ErrorCode, text string) protocol.Envelope {
	return protocol.Envelope{MessageID: id, Message: &protocol.Error{Code: code, Text: text}}
}

// Peer is a device's live session on the server.
type Peer struct {
	// DeviceID is the id from the device certificate.
	DeviceID string
	// Certificate is the device certificate the session was opened with
	// (the one the handshake presented, or the resumed session's).
	Certificate *x509.Certificate
	s           *Server
	conn        *tls.Conn
	w           *protocol.Writer
	nextID      atomic.Uint64
	mu          sync.Mutex
	pending     map[uint64]chan protocol.Envelope
	done        chan struct{}
}

func (s *Server) serveSession(tc *tls.Conn) {
	id, err := pki.IdentityFromConnectionState(tc.ConnectionState())
	if err != nil {
		return
	}
	p := &Peer{DeviceID: id.DeviceID, Certificate: id.Certificate, s: s, conn: tc, w: protocol.NewWriter(tc, s.codec),
		pending: map[uint64]chan protocol.Envelope{}, done: make(chan struct{})}
	s.mu.Lock()
	if old := s.peers[p.DeviceID]; old != nil {
		_ = old.conn.Close()
	}
	s.peers[p.DeviceID] = p
	s.changed()
	s.mu.Unlock()
	s.Sessions.Add(1)
	defer func() {
		close(p.done)
		s.mu.Lock()
		if s.peers[p.DeviceID] == p {
			delete(s.peers, p.DeviceID)
		}
		s.changed()
		s.mu.Unlock()
	}()
	r := protocol.NewReader(tc, s.codec)
	for {
		env, err := r.ReadEnvelope()
		if err != nil {
			if reply, ok := protocol.ReplyTo(err); ok && !errors.Is(err, protocol.ErrFrameTooLarge) {
				_ = p.w.WriteEnvelope(reply)
				continue
			}
			if !errors.Is(err, io.EOF) {
				s.log.Debug("session read", "device", p.DeviceID, "err", err)
			}
			return
		}
		if !s.opts.Quiet {
			s.mu.Lock()
			s.history = append(s.history, Record{DeviceID: p.DeviceID, Env: env})
			s.changed()
			s.mu.Unlock()
		}
		if env.MessageID%2 == 0 { // a reply to one of our requests
			p.mu.Lock()
			ch := p.pending[env.MessageID]
			delete(p.pending, env.MessageID)
			p.mu.Unlock()
			if ch != nil {
				ch <- env
			}
			continue
		}
		switch m := env.Message.(type) {
		case *protocol.RenewRequest:
			if reply := s.renew(p, env.MessageID, m); reply.Message != nil {
				_ = p.w.WriteEnvelope(reply)
			}
		case *protocol.Heartbeat:
			s.Heartbeats.Add(1)
			if s.opts.NoHeartbeatAck {
				continue
			}
			ack := &protocol.HeartbeatAck{ServerTime: uint64(time.Now().UnixMilli())}
			if s.opts.HeartbeatInterval > 0 {
				ack.IntervalSeconds = uint32(s.opts.HeartbeatInterval / time.Second)
			}
			_ = p.w.WriteEnvelope(protocol.Envelope{MessageID: env.MessageID, Message: ack})
		case *protocol.Disconnect:
			s.Goodbyes.Add(1)
			return
		}
	}
}

// Send sends a command to the device and waits for the reply with the same
// message id.
func (p *Peer) Send(ctx context.Context, m protocol.Message) (protocol.Envelope, error) {
	id := 2 * p.nextID.Add(1)
	ch := make(chan protocol.Envelope, 1)
	p.mu.Lock()
	p.pending[id] = ch
	p.mu.Unlock()
	if err := p.w.WriteEnvelope(protocol.Envelope{MessageID: id, Message: m}); err != nil {
		return protocol.Envelope{}, err
	}
	select {
	case env := <-ch:
		return env, nil
	case <-p.done:
		return protocol.Envelope{}, errors.New("session closed")
	case <-ctx.Done():
		return protocol.Envelope{}, ctx.Err()
	}
}

// SendFrame writes an already framed envelope (length prefix included)
// whose message id is id, and waits for the device's reply to it. Tests use
// it to send message types the protocol package does not know.
func (p *Peer) SendFrame(ctx context.Context, id uint64, frame []byte) (protocol.Envelope, error) {
	ch := make(chan protocol.Envelope, 1)
	p.mu.Lock()
	p.pending[id] = ch
	p.mu.Unlock()
	if _, err := p.conn.Write(frame); err != nil {
		return protocol.Envelope{}, err
	}
	select {
	case env := <-ch:
		return env, nil
	case <-p.done:
		return protocol.Envelope{}, errors.New("session closed")
	case <-ctx.Done():
		return protocol.Envelope{}, ctx.Err()
	}
}

// Disconnect sends a Disconnect with reason and closes the session.
func (p *Peer) Disconnect(reason protocol.DisconnectReason) {
	_ = p.w.WriteEnvelope(protocol.Envelope{MessageID: 2 * p.nextID.Add(1), Message: &protocol.Disconnect{Reason: reason}})
	// Close the write side only: the session's reader drains the device's
	// input until it closes, so the goodbye is not lost to a reset.
	_ = p.conn.CloseWrite()
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
}

// Drop closes the session without a goodbye.
func (p *Peer) Drop() { _ = p.conn.Close() }

// Done is closed when the session ends.
func (p *Peer) Done() <-chan struct{} { return p.done }

// renew answers a RenewRequest: a certificate from the test authority for
// the CSR's key, under the session's device id, unless renewals are
// refused or the CSR is bad. A reply without a message means no answer.
func (s *Server) renew(p *Peer, id uint64, m *protocol.RenewRequest) protocol.Envelope {
	s.RenewRequests.Add(1)
	rec := Renewal{DeviceID: p.DeviceID, At: s.now()}
	reply := func() protocol.Envelope {
		if s.opts.IgnoreRenewal {
			return protocol.Envelope{}
		}
		if s.refuseRenewal.Load() {
			return errorReply(id, protocol.CodeRefused, "renewal refused")
		}
		csr, err := x509.ParseCertificateRequest(m.CSR)
		if err != nil {
			return errorReply(id, protocol.CodeRefused, "bad certificate request")
		}
		if err := csr.CheckSignature(); err != nil {
			return errorReply(id, protocol.CodeRefused, "bad certificate request signature")
		}
		if s.opts.Renew != nil {
			chain, e := s.opts.Renew(p.DeviceID, csr)
			if e != nil {
				return protocol.Envelope{MessageID: id, Message: e}
			}
			if len(chain) > 0 {
				if leaf, err := x509.ParseCertificate(chain[0]); err == nil {
					rec.Serial = leaf.SerialNumber
				}
			}
			return protocol.Envelope{MessageID: id, Message: &protocol.RenewResponse{CertChain: chain}}
		}
		lifetime := s.opts.RenewLifetime
		if lifetime == 0 {
			lifetime = s.opts.DeviceLifetime
		}
		// The session's device id and key: renewal never changes either.
		cert, err := s.ca.IssueDeviceFromCSR(csr, pki.DeviceRequest{DeviceID: p.DeviceID, PublicKey: p.Certificate.PublicKey, Lifetime: lifetime})
		switch {
		case errors.Is(err, pki.ErrKeyMismatch):
			return errorReply(id, protocol.CodeRefused, "key change not allowed")
		case err != nil:
			var re *pki.RequestError
			if errors.As(err, &re) {
				return errorReply(id, protocol.CodeRefused, "bad certificate request")
			}
			return errorReply(id, protocol.CodeInternal, err.Error())
		}
		rec.Serial = cert.Leaf.SerialNumber
		return protocol.Envelope{MessageID: id, Message: &protocol.RenewResponse{CertChain: cert.DER()}}
	}()
	if e, ok := reply.Message.(*protocol.Error); ok {
		rec.Refused = e.Code
	}
	s.mu.Lock()
	s.renewals = append(s.renewals, rec)
	s.changed()
	s.mu.Unlock()
	return reply
}

// now is the authority's clock.
func (s *Server) now() time.Time {
	if s.ca.Clock != nil {
		return s.ca.Clock()
	}
	return time.Now()
}
