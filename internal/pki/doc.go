// Package pki is Wasmbed's public key infrastructure: the certificate chain
// Root CA → gateway CA → gateway server certificates and Root CA → device
// CA → device client certificates, the signing of certificate requests, the
// enrollment proof of possession, the TLS 1.3 configurations of both ends
// of a device session with their session tickets, revocation, and the
// public-key encoding the Device resource uses. It depends on the standard
// library (and internal/edkey) only and has no Kubernetes code: the
// controller and the gateway call it.
//
// # Chain and keys
//
// NewAuthority creates a root (MaxPathLen 1) and two intermediates
// (MaxPathLen 0), each restricted by its extended key usage to one kind of
// leaf: the gateway CA to serverAuth, the device CA to clientAuth. Chain
// verification refuses a leaf whose usage its issuer does not allow, so a
// device certificate can never pass as a gateway's, nor the reverse. Keys
// are Ed25519 by default; ECDSA P-256 is accepted for every role. Anything
// else — RSA of any size, other curves, Ed25519 keys of small order — is
// refused with an *UnsupportedKeyError (ErrUnsupportedKey).
//
// Gateways hold no CA key. Certificates are requested with a PKCS#10 request
// and signed by the holder of the intermediate key (the controller) with
// IssueDeviceFromCSR or IssueGatewayFromCSR, which take what the signer
// expects — the device id and identity key, the gateway's names — and refuse
// anything else with a *RequestError:
//
//	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
//	dev, err := ca.IssueDeviceFromCSR(csr, pki.DeviceRequest{DeviceID: "esp32-0001", PublicKey: enrolledKey})
//	gw, err := ca.IssueGatewayFromCSR(gwCSR, pki.GatewayRequest{Name: "gw-0", DNSNames: []string{"gw.local"}})
//
// Device certificates carry the device id as Subject CN and as the URI SAN
// urn:wasmbed:device:<id>, live DefaultDeviceLifetime (24h) and are renewed
// from RenewAt (two thirds of the lifetime); gateway certificates live
// DefaultGatewayLifetime (72h).
//
// # Enrollment
//
// A new device proves possession of its identity key with the request's
// signature, and binds its X25519 sealing key to that key and to the
// enrollment connection with SignSealingKeyProof over EnrollmentBinding, a
// TLS exporter value; the gateway checks it with VerifySealingKeyProof.
//
// # Sessions
//
// The gateway listens with ServerTLSConfig (client certificate required) and,
// on a separate port, EnrollmentServerTLSConfig (certificate optional). Both
// verify device chains explicitly with a Verifier — x509.Verify against the
// pinned root through the device CA, ExtKeyUsageClientAuth, device id and
// revocation — in VerifyConnection, on full and resumed handshakes. Devices
// dial with ClientTLSConfig, pinning the root and the gateway CA. Every
// handshake should go through Handshake, which bounds it with
// DefaultHandshakeTimeout.
//
//	v, err := ca.DeviceVerifier(revocations)
//	srv, err := pki.ServerTLSConfig(pki.ServerOptions{Certificate: gwCert, Verifier: v, TicketKeys: ring})
//	...
//	id, err := pki.IdentityFromConnectionState(conn.ConnectionState())
//	// look the Device up by id.EncodedKey (spec.publicKey)
//
// Session tickets are encrypted under a TicketKeyRing that gateway replicas
// share and rotate. A ticket key lets its holder resume as any device: it
// must be protected like a CA key.
//
// # Revocation
//
// A RevocationChecker is consulted on every handshake. MemoryRevocation keeps
// revoked serials and keys in memory and announces each revocation to
// subscribers so live sessions can be closed; Verifier.Check re-validates a
// live session's certificate.
//
// # Errors
//
// Refusals are *CertificateError values whose Reason is a sentinel
// (ErrUnknownAuthority, ErrExpired, ErrNotYetValid, ErrRevoked, ErrKeyUsage,
// ErrNameMismatch, ...); refused requests are *RequestError values
// (ErrKeyMismatch, ErrRequestedName, ErrCSRSignature, ...); parsing errors
// wrap ErrMalformedPEM or ErrTooLarge. All input is bounded by MaxInputSize
// before parsing.
package pki
