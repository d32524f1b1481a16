package protocol

import "strconv"

// Version is the protocol version carried in every envelope. It changes only
// on incompatible changes: adding a message type, adding an optional field to
// a message body, or adding a value to an enumeration does not change it,
// because receivers ignore unknown body keys, answer unknown message types
// with an Error (CodeUnsupported) and keep the session, and treat unknown
// enumeration values as documented for each enumeration.
const Version uint16 = 1

// Type identifies the kind of message an envelope carries. On the wire it is
// the third element of the envelope array (an unsigned integer below 2^32).
//
// Values 1-23 encode in a single byte; they are allotted to the messages
// defined by version 1. Each constant documents who may send the message and
// the layout of its body, a CBOR map with small integer keys ("?" marks an
// optional key, omitted when its value is the zero value).
type Type uint32

// Message types. The layouts are normative and mirrored, in CDDL, by
// docs/protocol.md.
const (
	// TypeAck is sent by either side to acknowledge a request that has no
	// more specific reply. It carries the request's message id.
	//
	//	{}
	TypeAck Type = 1

	// TypeError is sent by either side to refuse a request or report a
	// problem with a message it received; it carries the offending message's
	// id, or 0 when that id could not be read.
	//
	//	{1: code uint, ?2: text tstr}
	TypeError Type = 2

	// TypeDisconnect is a graceful goodbye sent by either side before it
	// closes the connection.
	//
	//	{?1: reason uint, ?2: text tstr}
	TypeDisconnect Type = 3

	// TypeEnrollRequest is the first message of a new device, sent over a
	// server-authenticated TLS connection while a pairing window is open.
	// The CSR (PKCS#10, DER, at most MaxCSRSize bytes) is signed by the
	// identity key: it proves the device holds the key it enrolls. The
	// sealing key (X25519, 32 bytes) comes with the sealing-key proof, a
	// signature by the identity key over the sealing key and a TLS exporter
	// value of this connection (at most MaxProofSize bytes; the message is
	// defined by pki.SealingKeyProofMessage); one is sent only with the
	// other.
	//
	//	{1: public-key bstr, 2: key-algorithm uint, 3: device-type tstr,
	//	 ?4: [* capability tstr], 5: csr bstr, ?6: firmware-version tstr,
	//	 ?7: pairing-token bstr, ?8: sealing-key bstr,
	//	 ?9: sealing-key-proof bstr}
	TypeEnrollRequest Type = 4

	// TypeEnrollResponse answers an EnrollRequest (gateway to device).
	//
	//	{1: device-id tstr, 2: [+ certificate bstr], 3: signing-key bstr,
	//	 ?4: sealing-key bstr}
	TypeEnrollResponse Type = 5

	// TypeEnrollAck tells the gateway the device stored its identity (device
	// to gateway); the gateway answers with an Ack, and the device then
	// sends Disconnect (DisconnectEnrolled) and closes.
	//
	//	{1: device-id tstr}
	TypeEnrollAck Type = 6

	// TypeHeartbeat is sent by a device every heartbeat interval.
	//
	//	{1: uptime-seconds uint, 2: free-memory uint, 3: running-apps uint,
	//	 4: [rssi int, loss-permille uint]}
	TypeHeartbeat Type = 7

	// TypeHeartbeatAck answers a Heartbeat (gateway to device).
	//
	//	{1: server-time-unix-ms uint, ?2: interval-seconds uint}
	TypeHeartbeatAck Type = 8

	// TypeDeploy installs an application (gateway to device). The device
	// answers with an AppStatus carrying the Deploy's message id. Key 4 is
	// reserved and must be absent: a confidential module travels sealed
	// inside the signed artifact, and a device refuses a Deploy carrying
	// key 4 (AppStatus refused, ReasonMalformedArtifact).
	//
	//	{1: app tstr, 2: sequence uint, 3: artifact bstr, ?4: reserved bstr,
	//	 ?5: start bool}
	TypeDeploy Type = 9

	// TypeUpdate replaces an installed application with a newer artifact
	// (gateway to device); same layout, reserved key and reply as Deploy.
	//
	//	{1: app tstr, 2: sequence uint, 3: artifact bstr, ?4: reserved bstr,
	//	 ?5: start bool}
	TypeUpdate Type = 10

	// TypeStart starts an installed application (gateway to device); the
	// device answers with an AppStatus.
	//
	//	{1: app tstr, ?2: sequence uint}
	TypeStart Type = 11

	// TypeStop stops a running application (gateway to device); the device
	// answers with an AppStatus.
	//
	//	{1: app tstr, ?2: sequence uint}
	TypeStop Type = 12

	// TypeRemove uninstalls an application (gateway to device); the device
	// answers with an AppStatus in state removed.
	//
	//	{1: app tstr, ?2: sequence uint}
	TypeRemove Type = 13

	// TypeAppStatus reports the state of one application (device to
	// gateway), either as the reply to an application command or unsolicited
	// when the state changes (a trap, a limit hit).
	//
	//	{1: app tstr, ?2: sequence uint, 3: state uint, ?4: reason uint,
	//	 ?5: resource uint, ?6: message tstr}
	TypeAppStatus Type = 14

	// TypeMetricsReport carries device and per-application metrics (device
	// to gateway).
	//
	//	{1: uptime-seconds uint, 2: free-memory uint,
	//	 3: [rssi int, loss-permille uint],
	//	 ?4: [* {1: app tstr, 2: memory-bytes uint, 3: fuel uint,
	//	        4: cpu-micros uint, 5: executions uint, 6: traps uint}]}
	TypeMetricsReport Type = 15

	// TypeConfigPush delivers configuration to an application (gateway to
	// device); the device answers with a ConfigAck or an Error.
	//
	//	{1: app tstr, ?2: generation uint, ?3: {* tstr => tstr}, ?4: sealed bstr}
	TypeConfigPush Type = 16

	// TypeConfigAck confirms a ConfigPush was applied (device to gateway).
	//
	//	{1: app tstr, ?2: generation uint}
	TypeConfigAck Type = 17

	// TypeRenewRequest asks for a new device certificate over an established
	// mutual-TLS session (device to gateway), before the current one
	// expires. The CSR is a PKCS#10 request (DER) for the device's current
	// identity key, signed by it: renewal never changes the key (a device
	// that needs a new identity key enrolls again). The gateway answers with
	// a RenewResponse or an Error. CSR size: at most MaxCSRSize bytes.
	//
	//	{1: csr bstr}
	TypeRenewRequest Type = 18

	// TypeRenewResponse answers a RenewRequest (gateway to device) with the
	// new certificate chain, DER encoded, leaf first, as in EnrollResponse.
	// The device uses it from its next TLS handshake on. At most
	// MaxChainLength certificates of at most MaxCertSize bytes each.
	//
	//	{1: [+ certificate bstr]}
	TypeRenewResponse Type = 19
)

// typeNames holds the name of every known message type.
var typeNames = [...]string{
	TypeAck:            "Ack",
	TypeError:          "Error",
	TypeDisconnect:     "Disconnect",
	TypeEnrollRequest:  "EnrollRequest",
	TypeEnrollResponse: "EnrollResponse",
	TypeEnrollAck:      "EnrollAck",
	TypeHeartbeat:      "Heartbeat",
	TypeHeartbeatAck:   "HeartbeatAck",
	TypeDeploy:         "Deploy",
	TypeUpdate:         "Update",
	TypeStart:          "Start",
	TypeStop:           "Stop",
	TypeRemove:         "Remove",
	TypeAppStatus:      "AppStatus",
	TypeMetricsReport:  "MetricsReport",
	TypeConfigPush:     "ConfigPush",
	TypeConfigAck:      "ConfigAck",
	TypeRenewRequest:   "RenewRequest",
	TypeRenewResponse:  "RenewResponse",
}

// typeSenders records who may send each known message type.
var typeSenders = [...]Side{
	TypeAck:            Either,
	TypeError:          Either,
	TypeDisconnect:     Either,
	TypeEnrollRequest:  Device,
	TypeEnrollResponse: Gateway,
	TypeEnrollAck:      Device,
	TypeHeartbeat:      Device,
	TypeHeartbeatAck:   Gateway,
	TypeDeploy:         Gateway,
	TypeUpdate:         Gateway,
	TypeStart:          Gateway,
	TypeStop:           Gateway,
	TypeRemove:         Gateway,
	TypeAppStatus:      Device,
	TypeMetricsReport:  Device,
	TypeConfigPush:     Gateway,
	TypeConfigAck:      Device,
	TypeRenewRequest:   Device,
	TypeRenewResponse:  Gateway,
}

// Known reports whether t is a message type this version of the package
// understands.
func (t Type) Known() bool {
	return t > 0 && int(t) < len(typeNames) && typeNames[t] != ""
}

// String returns the message name, or "Type(n)" for an unknown type.
func (t Type) String() string {
	if t.Known() {
		return typeNames[t]
	}
	return "Type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// Sender reports who may send a message of type t: Device, Gateway or
// Either. It returns Either for unknown types.
func (t Type) Sender() Side {
	if t.Known() {
		return typeSenders[t]
	}
	return Either
}

// Types returns every message type defined by this version, in tag order.
func Types() []Type {
	ts := make([]Type, 0, len(typeNames))
	for t := range typeNames {
		if Type(t).Known() {
			ts = append(ts, Type(t))
		}
	}
	return ts
}

// Side names one end of a session.
type Side uint8

const (
	// Either is used for messages both sides may send, and for a Codec that
	// does not check directions (tools and tests).
	Either Side = iota
	// Device is the firmware end of a session.
	Device
	// Gateway is the gateway end of a session.
	Gateway
)

// String returns "device", "gateway" or "either".
func (s Side) String() string {
	switch s {
	case Device:
		return "device"
	case Gateway:
		return "gateway"
	case Either:
		return "either"
	}
	return "Side(" + strconv.Itoa(int(s)) + ")"
}

// peer returns the other end of a session.
func (s Side) peer() Side {
	switch s {
	case Device:
		return Gateway
	case Gateway:
		return Device
	}
	return Either
}
