package clienttest

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// EnrollTap is an enrollment endpoint, with the Server's gateway
// certificate, that records every EnrollRequest it receives and refuses it
// with Error(unauthorized), for tests of what an enrolling device sends.
type EnrollTap struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs []*protocol.EnrollRequest
	more chan struct{} // closed and replaced when a request arrives
}

// StartEnrollTap listens on a free loopback port of the server's host.
func (s *Server) StartEnrollTap() (*EnrollTap, error) {
	v, err := s.ca.DeviceVerifier(nil)
	if err != nil {
		return nil, err
	}
	cfg, err := pki.EnrollmentServerTLSConfig(pki.ServerOptions{Certificate: s.gwCert, Verifier: v})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(s.opts.Host, "0"))
	if err != nil {
		return nil, err
	}
	t := &EnrollTap{ln: ln, more: make(chan struct{})}
	t.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Go(func() {
				tc := tls.Server(c, cfg)
				defer tc.Close()
				_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
				r, w := protocol.NewReader(tc, s.codec), protocol.NewWriter(tc, s.codec)
				env, err := r.ReadEnvelope()
				if err != nil {
					return
				}
				if m, ok := env.Message.(*protocol.EnrollRequest); ok {
					t.mu.Lock()
					t.reqs = append(t.reqs, m)
					close(t.more)
					t.more = make(chan struct{})
					t.mu.Unlock()
				}
				_ = w.WriteEnvelope(errorReply(env.MessageID, protocol.CodeUnauthorized, "recorded, not enrolled"))
			})
		}
	})
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
	_ = t.ln.Close()
	t.wg.Wait()
}
