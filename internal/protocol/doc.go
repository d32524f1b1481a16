// Package protocol implements the wire protocol between Wasmbed devices and
// gateways: the envelope, the message catalogue, framing and decoding limits.
// It knows nothing about TLS, certificates or artifact cryptography; the
// artifact and seal formats travel through it as opaque bytes.
//
// # Framing
//
// Both sides exchange frames over one TLS 1.3 stream. A frame is a 4-byte
// big-endian unsigned length followed by that many bytes holding one
// envelope. Lengths of zero or above Limits.MaxFrameSize (1 MiB by default)
// are refused, the latter before any of the body is read.
//
// # Envelope
//
// An envelope is the CBOR array
//
//	[version, message-id, type, body]
//
// where version is Version, message-id correlates a reply with its request,
// type is one of the Type constants and body is a CBOR map with small integer
// keys whose layout the type's constant documents. Encoding is deterministic
// (RFC 8949 core deterministic encoding): equal envelopes give equal bytes.
// Each side numbers the requests it sends, devices with odd ids from 1 and
// gateways with even ids from 2; a reply carries its request's id, so the
// parity of an id says who started the exchange.
//
// # Protocol flow
//
// Enrollment, over TLS with server authentication only, while an
// administrator keeps a pairing window open:
//
//   - device → gateway: EnrollRequest (identity public key, its algorithm,
//     device type, capabilities, a CSR signed by the identity key, its
//     X25519 sealing key with the identity key's signature binding it to
//     this connection, optional pairing token)
//   - gateway → device: EnrollResponse (device id, certificate chain, the
//     platform signing key to pin), or Error (CodeUnauthorized when no
//     pairing window is open, CodeRefused for a failed proof)
//   - device: verifies the chain up to its pinned root, stores id,
//     certificate and — if it has none yet — the platform keys in flash
//   - device → gateway: EnrollAck; gateway → device: Ack; device →
//     gateway: Disconnect (DisconnectEnrolled), and it closes
//
// Session, over mutual TLS with the device certificate:
//
//   - device → gateway: Heartbeat every interval; gateway → device:
//     HeartbeatAck (server time, optionally a new interval)
//   - gateway → device: Deploy, Update, Start, Stop, Remove; the device
//     answers each with an AppStatus carrying the command's message id
//   - device → gateway: AppStatus, unsolicited, when an application traps,
//     hits a limit or otherwise changes state; MetricsReport periodically
//   - gateway → device: ConfigPush; device → gateway: ConfigAck or Error
//   - device → gateway: RenewRequest (a CSR for its current key) once its
//     certificate has used about two thirds of its lifetime; gateway →
//     device: RenewResponse (the new chain, used from the next handshake
//     on) or Error
//   - either side: Error in reply to a message it cannot accept, Disconnect
//     before closing the connection
//
// # Compatibility
//
// Version changes only on incompatible changes. Within a version, new message
// types, new optional body keys and new enumeration values may appear: a
// receiver ignores body keys it does not know, and answers a message type it
// does not know with an Error carrying CodeUnsupported (see
// UnsupportedMessageError and ReplyTo) instead of closing the session.
//
// # Limits
//
// A Codec decodes under Limits, each enforced before the memory it guards is
// allocated; every rejection is a typed error (*LimitError,
// *MalformedError, ...) matching one of the sentinel errors. Indefinite
// lengths, CBOR tags, duplicate map keys, null and undefined are refused.
//
// # Usage
//
// Build one Codec per side and configuration and share it between sessions.
// A Reader and a Writer frame one stream. IDs numbers the requests a side
// sends by the odd/even rule, and Calls routes each reply to the request
// waiting for it, so one reader can serve a session while any goroutine
// sends requests:
//
//	codec, err := protocol.NewCodec(protocol.Gateway, protocol.Limits{})
//	r, w := protocol.NewReader(tlsConn, codec), protocol.NewWriter(tlsConn, codec)
//	ids, _ := protocol.NewIDs(protocol.Gateway)
//	var calls protocol.Calls
//	go func() { // the session's reader
//		defer calls.Close(io.EOF)
//		for {
//			env, err := r.ReadEnvelope()
//			if reply, ok := protocol.ReplyTo(err); ok {
//				w.WriteEnvelope(reply)
//				return // a peer that sends bad frames loses its session
//			}
//			if err != nil {
//				return
//			}
//			if protocol.Owns(protocol.Gateway, env.MessageID) && calls.Deliver(env) {
//				continue // a reply to one of our requests
//			}
//			switch m := env.Message.(type) {
//			case *protocol.Heartbeat:
//				w.WriteEnvelope(protocol.Envelope{MessageID: env.MessageID, Message: &protocol.HeartbeatAck{ServerTime: now}})
//			case *protocol.AppStatus:
//				// unsolicited status change
//			}
//		}
//	}()
//	call, err := calls.Register(ids.Next())
//	w.WriteEnvelope(protocol.Envelope{MessageID: call.ID(), Message: &protocol.Deploy{App: "sensor", Sequence: 7, Artifact: a}})
//	reply, err := call.Wait(ctx)
//	// reply.Message is an *AppStatus; err is a *protocol.Error if the device refused.
//
// docs/protocol.md specifies the protocol in CDDL with an example of every
// message; the examples are the test vectors in testdata/vectors.
package protocol
