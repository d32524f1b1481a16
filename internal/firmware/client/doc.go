// Package client is the device side of the gateway protocol: the "Wasmbed
// client" of the firmware architecture.
//
// A [Client] drives one device's connection to its gateways. It enrolls the
// device on first boot and then keeps a mutually authenticated session open,
// reconnecting through the link manager's failover and backoff whenever the
// session ends:
//
//	for each connection handed out by link.Manager.Connect:
//	    not enrolled → TLS (server auth) → EnrollRequest → EnrollResponse
//	                   → Identity.Enroll (persist) → EnrollAck → Ack → close
//	    enrolled     → mTLS with the device certificate → session
//
// In a session the device announces itself (Heartbeat, one AppStatus per
// installed application, a MetricsReport), then sends a Heartbeat every
// interval and a MetricsReport every metrics interval and after every
// application change, and answers every gateway message:
//
//	HeartbeatAck      → liveness (and an interval change, if it carries one)
//	Deploy, Update    → Apps.Deploy / Apps.Update → AppStatus (same id)
//	Start, Stop, Remove → Apps.* → AppStatus (same id)
//	ConfigPush        → Apps.Configure → ConfigAck, or Error(refused)
//	RenewResponse     → verify, Renewer.Renew, used from the next handshake
//	Ack, Error        → counted and logged (an Error to a RenewRequest
//	                    schedules the retry)
//	Disconnect        → session ends (revoked: the client stops for good)
//	unknown type      → Error(unsupported), the session goes on
//	undecodable frame → Error(malformed / too large ...) per protocol.ReplyTo
//
// On shutdown (the Run context is cancelled) the client sends a Disconnect
// and closes the connection.
//
// # Resource use
//
// A session costs one goroutine: the one that called Run. Heartbeat and
// metrics timers are runtime timers re-armed with Reset, and wake-ups
// (timers, unsolicited application statuses, shutdown) interrupt the
// blocked read by moving the connection's read deadline; no reader or
// ticker goroutine exists per session. Reads wait for the first byte of a
// frame without a deadline, then read the frame under a bounded deadline,
// so a wake-up never splits a frame.
//
// # Certificate renewal
//
// Device certificates are short-lived. When the Identity is also a
// [Renewer] (the firmware's security manager is), the client renews the
// certificate over the running session once it enters its renewal window
// (pki.NeedsRenewal by the injected clock, two thirds of its lifetime):
//
//	RenewRequest{CSR for the current key} → RenewResponse{chain}
//	    → verify: chain to the pinned root (and DeviceCA), same device id,
//	      leaf key = device key, later NotAfter
//	    → Renewer.Renew (one flash batch) → next handshake presents it
//
// At most one request is outstanding. Every attempt, whatever its outcome
// (Error reply, refused chain, timeout after RenewTimeout, lost session),
// pushes the next one back by RenewBackoff, so a refusing gateway is never
// asked in a loop; refusals are logged with their code and counted in
// [Stats]. The TLS configuration takes the certificate at handshake time
// (GetClientCertificate) and the session cache is dropped after a renewal,
// so the next connection authenticates with the new certificate.
//
// A certificate that expires without a renewal is reported
// (Status.CertificateExpired, an error log). A client with an enrollment
// link (Config.EnrollLink) then enrolls again; one without keeps retrying
// its gateways with backoff.
package client
