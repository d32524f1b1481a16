// Package pki is Wasmbed's public key infrastructure: the certificate chain
// Root CA → Intermediate CA → gateway server and device client certificates,
// the TLS 1.3 configurations of both ends of a device session, revocation,
// and the public-key encoding the Device resource uses.
//
// # Chain and keys
//
// NewAuthority creates a root (MaxPathLen 1) and an intermediate (MaxPathLen
// 0, the "device CA") that issues every leaf. Keys are Ed25519 by default;
// ECDSA P-256 is accepted for every role. Anything else — RSA of any size,
// other curves — is refused with an *UnsupportedKeyError (ErrUnsupportedKey).
//
//	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
//	gw, err := ca.IssueGateway(pki.GatewayOptions{Name: "gw-0", DNSNames: []string{"gw.local"}})
//	dev, err := ca.IssueDevice(devicePub, pki.DeviceOptions{DeviceID: "esp32-0001"})
//
// Device certificates carry the device id as Subject CN and as the URI SAN
// urn:wasmbed:device:<id>, live DefaultDeviceLifetime (24h) and are renewed
// from RenewAt (two thirds of the lifetime).
//
// # Sessions
//
// The gateway listens with ServerTLSConfig (client certificate required) and,
// on a separate port, EnrollmentServerTLSConfig (certificate optional). Both
// verify device chains explicitly with a Verifier — x509.Verify against the
// pinned root through the intermediate, ExtKeyUsageClientAuth, device id and
// revocation — in VerifyConnection, on full and resumed handshakes. Devices
// dial with ClientTLSConfig. Every handshake should go through Handshake, which
// bounds it with DefaultHandshakeTimeout.
//
//	v, err := ca.Verifier(revocations)
//	srv, err := pki.ServerTLSConfig(pki.ServerOptions{Certificate: gwCert, Verifier: v})
//	...
//	id, err := pki.IdentityFromConnectionState(conn.ConnectionState())
//	// look the Device up by id.EncodedKey (spec.publicKey)
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
// ErrNameMismatch, ...); parsing errors wrap ErrMalformedPEM, ErrTooLarge or
// ErrCSRSignature. All input is bounded by MaxInputSize before parsing.
package pki
