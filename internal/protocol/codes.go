package protocol

import "strconv"

// ErrorCode classifies an Error message. Receivers treat a code they do not
// know like CodeInternal.
type ErrorCode uint32

// Error codes.
const (
	// CodeUnsupported: the message type is unknown to the receiver.
	CodeUnsupported ErrorCode = 1
	// CodeUnsupportedVersion: the envelope's protocol version is not spoken
	// by the receiver. The Error carries the receiver's own version.
	CodeUnsupportedVersion ErrorCode = 2
	// CodeMalformed: the frame or message body could not be decoded, or a
	// required field is missing.
	CodeMalformed ErrorCode = 3
	// CodeTooLarge: the frame exceeds a decoding limit (size, nesting,
	// element count).
	CodeTooLarge ErrorCode = 4
	// CodeUnexpected: the message is valid but not acceptable now, or not
	// from this sender (e.g. a gateway-only message sent by a device, or a
	// Deploy before enrollment).
	CodeUnexpected ErrorCode = 5
	// CodeUnauthorized: the peer is not allowed to perform the request (no
	// pairing window, revoked device, bad pairing token).
	CodeUnauthorized ErrorCode = 6
	// CodeNotFound: the request names an application or device that does
	// not exist.
	CodeNotFound ErrorCode = 7
	// CodeRefused: the request was understood and refused (e.g. invalid
	// configuration); AppStatus carries the detailed reason for application
	// commands.
	CodeRefused ErrorCode = 8
	// CodeRateLimited: the sender sends too often; retry later.
	CodeRateLimited ErrorCode = 9
	// CodeUnavailable: the receiver cannot serve the request now (shutting
	// down, control plane unreachable); retry later.
	CodeUnavailable ErrorCode = 10
	// CodeInternal: the receiver failed for reasons of its own.
	CodeInternal ErrorCode = 11
)

var errorCodeNames = [...]string{
	CodeUnsupported:        "unsupported",
	CodeUnsupportedVersion: "unsupported version",
	CodeMalformed:          "malformed",
	CodeTooLarge:           "too large",
	CodeUnexpected:         "unexpected",
	CodeUnauthorized:       "unauthorized",
	CodeNotFound:           "not found",
	CodeRefused:            "refused",
	CodeRateLimited:        "rate limited",
	CodeUnavailable:        "unavailable",
	CodeInternal:           "internal",
}

// String returns the code's name, e.g. "rate limited".
func (c ErrorCode) String() string {
	return enumName(errorCodeNames[:], uint64(c), "ErrorCode")
}

// DisconnectReason says why a side ends a session.
type DisconnectReason uint32

// Disconnect reasons. Zero means unspecified.
const (
	// DisconnectShutdown: the sender is shutting down.
	DisconnectShutdown DisconnectReason = 1
	// DisconnectReboot: the device is rebooting (e.g. after a firmware
	// update) and will reconnect.
	DisconnectReboot DisconnectReason = 2
	// DisconnectRevoked: the device has been revoked and must not reconnect.
	DisconnectRevoked DisconnectReason = 3
	// DisconnectReplaced: a newer session for the same device replaced this
	// one.
	DisconnectReplaced DisconnectReason = 4
	// DisconnectTimeout: the peer missed its heartbeat deadline.
	DisconnectTimeout DisconnectReason = 5
	// DisconnectProtocolError: the peer violated the protocol.
	DisconnectProtocolError DisconnectReason = 6
	// DisconnectEnrolled: sent by the device once the gateway acknowledged
	// its EnrollAck: enrollment is complete and the device reconnects with
	// its new certificate.
	DisconnectEnrolled DisconnectReason = 7
)

var disconnectNames = [...]string{
	DisconnectShutdown:      "shutdown",
	DisconnectReboot:        "reboot",
	DisconnectRevoked:       "revoked",
	DisconnectReplaced:      "replaced",
	DisconnectTimeout:       "timeout",
	DisconnectProtocolError: "protocol error",
	DisconnectEnrolled:      "enrolled",
}

// String returns the reason's name.
func (r DisconnectReason) String() string {
	return enumName(disconnectNames[:], uint64(r), "DisconnectReason")
}

// KeyAlgorithm names the algorithm of a device's identity key.
type KeyAlgorithm uint32

// Key algorithms.
const (
	// KeyEd25519: a 32-byte Ed25519 public key (RFC 8032).
	KeyEd25519 KeyAlgorithm = 1
	// KeyECDSAP256: an ECDSA P-256 public key as a 65-byte uncompressed SEC 1
	// point.
	KeyECDSAP256 KeyAlgorithm = 2
)

var keyAlgorithmNames = [...]string{
	KeyEd25519:   "ed25519",
	KeyECDSAP256: "ecdsa-p256",
}

// String returns the algorithm's name.
func (a KeyAlgorithm) String() string {
	return enumName(keyAlgorithmNames[:], uint64(a), "KeyAlgorithm")
}

// AppState is the state of an application on a device, as reported by
// AppStatus. Receivers treat an unknown state like StateFailed.
type AppState uint32

// Application states.
const (
	// StateInstalled: the module is verified and installed, not running.
	StateInstalled AppState = 1
	// StateRunning: the application runs.
	StateRunning AppState = 2
	// StateStopped: the application was stopped on request.
	StateStopped AppState = 3
	// StateTrapped: the application trapped; AppStatus.Message says why.
	StateTrapped AppState = 4
	// StateLimitExceeded: the runtime stopped the application because it hit
	// a resource limit; AppStatus.Resource says which.
	StateLimitExceeded AppState = 5
	// StateFailed: a command failed on the device; AppStatus.Reason says why.
	StateFailed AppState = 6
	// StateRefused: the device refused the artifact or command (bad
	// signature, replay, ...); AppStatus.Reason says why.
	StateRefused AppState = 7
	// StateRemoved: the application is no longer installed.
	StateRemoved AppState = 8
)

var appStateNames = [...]string{
	StateInstalled:     "installed",
	StateRunning:       "running",
	StateStopped:       "stopped",
	StateTrapped:       "trapped",
	StateLimitExceeded: "limit exceeded",
	StateFailed:        "failed",
	StateRefused:       "refused",
	StateRemoved:       "removed",
}

// String returns the state's name.
func (s AppState) String() string {
	return enumName(appStateNames[:], uint64(s), "AppState")
}

// Reason details why a device refused or failed an application command.
// Zero means unspecified; receivers treat an unknown reason like
// ReasonInternal.
type Reason uint32

// Reasons reported in AppStatus.
const (
	// ReasonBadSignature: the artifact's signature did not verify against the
	// pinned platform signing key.
	ReasonBadSignature Reason = 1
	// ReasonReplay: the artifact's sequence is not newer than the installed
	// one (replay or downgrade).
	ReasonReplay Reason = 2
	// ReasonExpired: the artifact has expired.
	ReasonExpired Reason = 3
	// ReasonWrongDevice: the artifact is addressed to another device.
	ReasonWrongDevice Reason = 4
	// ReasonDecryptFailed: the sealed payload could not be opened.
	ReasonDecryptFailed Reason = 5
	// ReasonInvalidModule: the WebAssembly module does not compile or does not
	// export what the runtime requires.
	ReasonInvalidModule Reason = 6
	// ReasonNoSpace: not enough flash or memory to install.
	ReasonNoSpace Reason = 7
	// ReasonLimitsUnsupported: the requested limits exceed what the device
	// can grant.
	ReasonLimitsUnsupported Reason = 8
	// ReasonNotInstalled: the command names an application that is not
	// installed.
	ReasonNotInstalled Reason = 9
	// ReasonMalformedArtifact: the artifact bytes could not be parsed.
	ReasonMalformedArtifact Reason = 10
	// ReasonInternal: the device failed for reasons of its own.
	ReasonInternal Reason = 11
)

var reasonNames = [...]string{
	ReasonBadSignature:      "bad signature",
	ReasonReplay:            "replay",
	ReasonExpired:           "expired",
	ReasonWrongDevice:       "wrong device",
	ReasonDecryptFailed:     "decrypt failed",
	ReasonInvalidModule:     "invalid module",
	ReasonNoSpace:           "no space",
	ReasonLimitsUnsupported: "limits unsupported",
	ReasonNotInstalled:      "not installed",
	ReasonMalformedArtifact: "malformed artifact",
	ReasonInternal:          "internal",
}

// String returns the reason's name.
func (r Reason) String() string {
	return enumName(reasonNames[:], uint64(r), "Reason")
}

// Resource names the runtime limit an application exceeded.
type Resource uint32

// Resources reported with StateLimitExceeded.
const (
	// ResourceMemory: linear memory above the application's memory limit.
	ResourceMemory Resource = 1
	// ResourceFuel: CPU budget (fuel) exhausted.
	ResourceFuel Resource = 2
	// ResourceTime: a call ran past the execution timeout.
	ResourceTime Resource = 3
	// ResourceStack: the call stack exceeded the maximum stack size.
	ResourceStack Resource = 4
)

var resourceNames = [...]string{
	ResourceMemory: "memory",
	ResourceFuel:   "fuel",
	ResourceTime:   "execution time",
	ResourceStack:  "stack",
}

// String returns the resource's name.
func (r Resource) String() string {
	return enumName(resourceNames[:], uint64(r), "Resource")
}

// enumName returns names[v] or "prefix(v)" when v has no name.
func enumName(names []string, v uint64, prefix string) string {
	if v < uint64(len(names)) && names[v] != "" {
		return names[v]
	}
	return prefix + "(" + strconv.FormatUint(v, 10) + ")"
}
