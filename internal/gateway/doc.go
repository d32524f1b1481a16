// Package gateway is the product gateway: the process that holds devices'
// mutually authenticated sessions, enrolls new devices, delivers
// applications, reports what devices do back into Kubernetes, and serves
// the fleet's HTTP API.
//
// The device side (listeners, handshakes, enrollment exchange, the
// read/dispatch loop, renewal) is package session, which knows nothing of
// Kubernetes; this package plugs the cluster in:
//
//   - Lookup. A device is found by the key in its certificate through the
//     informer cache and a field index on spec.publicKey: no API call per
//     connection. Unknown, revoked or mismatching devices are refused,
//     logged and counted. Setting spec.revoked or deleting the Device closes
//     its live session at once (an informer event).
//   - Session state. A session marks its Device Connected with this
//     replica's name and connectedSince. Heartbeats stay in memory; lastSeen
//     is written at a coarse period; a missed-heartbeat deadline makes the
//     device Unreachable and a goodbye Disconnected. Status is written on
//     change only. Each replica renews a Lease named after itself, which the
//     controller watches to mark the devices of a dead replica Unreachable.
//   - Replicas. A device may connect to any replica; the newest session
//     wins and the replica holding an older one closes it with
//     Disconnect(replaced) once it sees connectedSince move past its own.
//   - Delivery. Level-triggered, per device: on every connection, every
//     status report and every change of a DeviceApplication, the gateway
//     compares what the device reports with what is desired and sends
//     Deploy, Update, Start, Stop or Remove; it writes the outcome into the
//     DeviceApplication's status and releases the removal finalizer once the
//     device confirms. Module bytes are fetched once per version (an
//     immutable ConfigMap named by the artifact) and joined with each
//     device's signed manifest; a gateway restart redelivers nothing a
//     device already runs.
//   - Enrollment and renewal. Device certificates are requested through
//     Kubernetes CertificateSigningRequests (signer wasmbed.github.io/device)
//     and signed by the controller: the gateway holds no CA key.
//
// Run builds the whole gateway from Options; docs/operations.md describes
// running it.
package gateway
