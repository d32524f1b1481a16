// Package session is the gateway end of device sessions: the listeners, the
// TLS handshakes, the enrollment exchange, and the read, dispatch and
// request/reply loop of every mutually authenticated session. It knows
// nothing of Kubernetes: the product gateway (package gateway) plugs its
// device registry, enrollment and certificate issuing in through the
// Handler, Enroller and Renewer interfaces, and so does the firmware's test
// gateway (clienttest).
//
// # Listeners
//
// A Server serves two kinds of listener. ServeSessions accepts mutually
// authenticated TLS 1.3 connections of enrolled devices; ServeEnrollment
// accepts server-authenticated connections of new devices and runs the
// enrollment exchange (EnrollRequest → EnrollResponse, EnrollAck → Ack).
// Both apply the same admission limits (Limits) before any cryptography
// runs: an accept rate (token bucket), a cap on connections that have not
// finished their handshake, overall and per source address, a short
// deadline for the ClientHello and a cap on handshakes doing cryptography at
// once. A reconnect storm therefore queues in the kernel's backlog instead of
// exhausting the gateway, and a flood of connections that never finish their
// handshake cannot hold the slots legitimate devices need.
//
// # Sessions
//
// After a verified handshake the Handler's Open decides whether the device
// may have a session (it looks the device up by the key in its certificate
// and refuses unknown or revoked devices with a *Refusal). The session then
// answers heartbeats itself (recording when the device was last heard),
// routes replies to the requests the gateway sent with Session.Request, hands
// every other message to Handler.Handle, and forwards certificate renewals to
// the Renewer. A frame that does not decode, is too large or arrives out of
// order ends only that session, after an Error frame; an unknown message type
// is answered with Error(unsupported) and the session goes on, as the
// protocol's compatibility rule asks.
//
// # Test hooks
//
// The firmware's test gateway plays gateways that misbehave, on the same
// core. A few options exist for it, each off by default and unused by the
// product gateway: Config.Observe shows every received message (replies,
// heartbeats and goodbyes included) to record transcripts;
// Config.NoHeartbeatAck leaves heartbeats unanswered; a Renewer's
// ErrNoReply leaves a renewal request unanswered; Session.RequestFrame sends
// an already encoded frame (a message type the device does not know) and
// waits for its reply; Session.Close with no goodbye drops a session as a
// failing network would.
//
// # Memory
//
// An idle session holds no goroutine. On Linux a Server parks every session
// between frames in an epoll set of its own and hands a session to a
// short-lived goroutine only when bytes arrive; elsewhere (or with
// Limits.GoroutinePerSession) each session has a reader goroutine. With
// nothing outstanding a session holds its TLS state, a small read buffer and
// a few words: see docs/benchmarks.md for the measured resident and private
// memory per session.
//
// # Usage
//
//	srv, err := session.NewServer(session.Config{Handler: h, Enroller: e, Renewer: r})
//	go srv.ServeSessions(sessionListener, sessionTLS)
//	go srv.ServeEnrollment(enrollListener, enrollTLS)
//	...
//	reply, err := s.Request(ctx, &protocol.Deploy{...}) // s from Handler.Open
//	...
//	srv.Shutdown(ctx) // Disconnect(shutdown) to every device, then close
package session
