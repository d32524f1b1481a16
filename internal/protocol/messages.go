package protocol

import (
	"errors"
	"fmt"
	"time"
)

// Message is the body of an envelope: one of the pointer types defined in
// this package (*Heartbeat, *Deploy, ...). Decoding always yields pointers, so
// type switches on Envelope.Message use the pointer types.
type Message interface {
	// Type returns the message type written to the envelope.
	Type() Type
	// validate reports a missing required field.
	validate() error
}

// MaxNameLen bounds the length in bytes of application names and device ids.
const MaxNameLen = 253

// Ack acknowledges a request that has no more specific reply.
type Ack struct{}

// Error refuses a request or reports a problem with a received message.
type Error struct {
	// Code classifies the error.
	Code ErrorCode `cbor:"1,keyasint"`
	// Text is a human-readable explanation, safe to show to the peer.
	Text string `cbor:"2,keyasint,omitempty"`
}

// Disconnect is a graceful goodbye, sent by either side before closing.
type Disconnect struct {
	// Reason says why the session ends; zero means unspecified.
	Reason DisconnectReason `cbor:"1,keyasint,omitempty"`
	// Text is an optional human-readable explanation.
	Text string `cbor:"2,keyasint,omitempty"`
}

// EnrollRequest asks a gateway to enroll a new device.
type EnrollRequest struct {
	// PublicKey is the device's identity public key, in the format named by
	// KeyAlgorithm. It is the key the device certificate is issued for.
	PublicKey []byte `cbor:"1,keyasint"`
	// KeyAlgorithm names PublicKey's algorithm.
	KeyAlgorithm KeyAlgorithm `cbor:"2,keyasint"`
	// DeviceType is the hardware type, e.g. "esp32" or "hifive1".
	DeviceType string `cbor:"3,keyasint"`
	// Capabilities lists what the device supports, e.g. "wasm", "tls", "wifi".
	Capabilities []string `cbor:"4,keyasint,omitempty"`
	// CSR is a PKCS#10 certificate signing request (DER) for PublicKey,
	// signed by it: the proof that the device holds the key it enrolls.
	// Required; at most MaxCSRSize bytes. Its subject is ignored: the
	// platform assigns the device id.
	CSR []byte `cbor:"5,keyasint"`
	// FirmwareVersion is the firmware's version string, if known.
	FirmwareVersion string `cbor:"6,keyasint,omitempty"`
	// PairingToken is the one-time token of the pairing window, when the
	// window requires one.
	PairingToken []byte `cbor:"7,keyasint,omitempty"`
	// SealingKey is the device's X25519 public key (32 bytes) for payloads
	// sealed to it (confidential modules, configuration secrets). The device
	// generates it apart from its identity key; without it the platform
	// cannot send it anything confidential.
	SealingKey []byte `cbor:"8,keyasint,omitempty"`
	// SealingKeyProof binds SealingKey to PublicKey and to this enrollment
	// connection: the identity key's signature over the sealing key and a
	// TLS exporter value of the connection (pki.SignSealingKeyProof). Sent
	// exactly when SealingKey is; at most MaxProofSize bytes.
	SealingKeyProof []byte `cbor:"9,keyasint,omitempty"`
}

// EnrollResponse gives an enrolled device its identity.
type EnrollResponse struct {
	// DeviceID is the id the device is known by from now on.
	DeviceID string `cbor:"1,keyasint"`
	// CertChain is the device certificate followed by the intermediate CAs,
	// each DER encoded, leaf first.
	CertChain [][]byte `cbor:"2,keyasint"`
	// SigningKey is the platform's Ed25519 public key (32 bytes) that signs
	// deploy artifacts. The device pins it.
	SigningKey []byte `cbor:"3,keyasint"`
	// SealingKey is the platform's X25519 public key (32 bytes) the device
	// agrees sealing keys with, when sealing is in use.
	SealingKey []byte `cbor:"4,keyasint,omitempty"`
}

// EnrollAck confirms that a device stored the identity it was given.
type EnrollAck struct {
	// DeviceID echoes EnrollResponse.DeviceID.
	DeviceID string `cbor:"1,keyasint"`
}

// Link describes the quality of a device's network link. It is encoded as
// the two-element array [rssi, loss-permille].
type Link struct {
	_ struct{} `cbor:",toarray"` //nolint:revive // the CBOR library reads struct options from the tag of a field named _
	// RSSI is the received signal strength in dBm (typically -100..0).
	RSSI int16
	// LossPermille is the share of lost packets, in thousandths.
	LossPermille uint16
}

// Heartbeat keeps a device's session alive and carries a short status.
type Heartbeat struct {
	// UptimeSeconds is the time since the device booted.
	UptimeSeconds uint32 `cbor:"1,keyasint"`
	// FreeMemory is the free heap, in bytes.
	FreeMemory uint32 `cbor:"2,keyasint"`
	// RunningApps is the number of applications running.
	RunningApps uint16 `cbor:"3,keyasint"`
	// Link is the current link quality.
	Link Link `cbor:"4,keyasint"`
}

// HeartbeatAck answers a Heartbeat.
type HeartbeatAck struct {
	// ServerTime is the gateway's clock, in milliseconds since the Unix epoch.
	ServerTime uint64 `cbor:"1,keyasint"`
	// IntervalSeconds, when non-zero, sets the device's heartbeat interval.
	IntervalSeconds uint32 `cbor:"2,keyasint,omitempty"`
}

// Time returns ServerTime as a time.Time.
func (m *HeartbeatAck) Time() time.Time { return time.UnixMilli(int64(m.ServerTime)) } //nolint:gosec // wraps only after year 292277026

// Deploy installs an application on a device.
type Deploy struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Sequence is the artifact's sequence number, repeated here so that the
	// gateway and device can route and report without parsing the artifact.
	// The artifact's signed sequence is authoritative.
	Sequence uint64 `cbor:"2,keyasint"`
	// Artifact is the signed deploy artifact, opaque to this package.
	Artifact []byte `cbor:"3,keyasint"`
	// Sealed is reserved (body key 4) and must be empty: a confidential
	// module travels sealed inside the artifact, and a device refuses a
	// Deploy that carries a separate sealed payload. The field is decoded
	// so that the refusal is explicit rather than a silently ignored key.
	Sealed []byte `cbor:"4,keyasint,omitempty"`
	// Start asks the device to start the application once installed.
	Start bool `cbor:"5,keyasint,omitempty"`
}

// Update replaces an installed application with a newer artifact. Its fields
// mean what Deploy's do.
type Update struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Sequence is the new artifact's sequence number.
	Sequence uint64 `cbor:"2,keyasint"`
	// Artifact is the signed deploy artifact, opaque to this package.
	Artifact []byte `cbor:"3,keyasint"`
	// Sealed is reserved and must be empty, as in Deploy.
	Sealed []byte `cbor:"4,keyasint,omitempty"`
	// Start asks the device to start the new version once installed.
	Start bool `cbor:"5,keyasint,omitempty"`
}

// Start starts an installed application.
type Start struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Sequence, when non-zero, is the artifact sequence the command applies
	// to; the device refuses it if a different version is installed.
	Sequence uint64 `cbor:"2,keyasint,omitempty"`
}

// Stop stops a running application.
type Stop struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Sequence, when non-zero, is the artifact sequence the command applies to.
	Sequence uint64 `cbor:"2,keyasint,omitempty"`
}

// Remove uninstalls an application.
type Remove struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Sequence, when non-zero, is the artifact sequence the command applies to.
	Sequence uint64 `cbor:"2,keyasint,omitempty"`
}

// AppStatus reports the state of one application on a device.
type AppStatus struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Sequence is the installed artifact's sequence number, if any.
	Sequence uint64 `cbor:"2,keyasint,omitempty"`
	// State is the application's state.
	State AppState `cbor:"3,keyasint"`
	// Reason details StateFailed and StateRefused.
	Reason Reason `cbor:"4,keyasint,omitempty"`
	// Resource names the limit hit, with StateLimitExceeded.
	Resource Resource `cbor:"5,keyasint,omitempty"`
	// Message is a human-readable detail, e.g. the trap description.
	Message string `cbor:"6,keyasint,omitempty"`
}

// AppMetrics holds the counters of one application.
type AppMetrics struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// MemoryBytes is the application's current linear memory size.
	MemoryBytes uint64 `cbor:"2,keyasint"`
	// Fuel is the CPU budget consumed since the application started.
	Fuel uint64 `cbor:"3,keyasint"`
	// CPUMicros is the CPU time used since the application started, in
	// microseconds.
	CPUMicros uint64 `cbor:"4,keyasint"`
	// Executions counts completed invocations.
	Executions uint64 `cbor:"5,keyasint"`
	// Traps counts traps.
	Traps uint64 `cbor:"6,keyasint"`
}

// MetricsReport carries device and per-application metrics.
type MetricsReport struct {
	// UptimeSeconds is the time since the device booted.
	UptimeSeconds uint32 `cbor:"1,keyasint"`
	// FreeMemory is the free heap, in bytes.
	FreeMemory uint32 `cbor:"2,keyasint"`
	// Link is the current link quality.
	Link Link `cbor:"3,keyasint"`
	// Apps holds one entry per installed application.
	Apps []AppMetrics `cbor:"4,keyasint,omitempty"`
}

// ConfigPush delivers configuration to an application.
type ConfigPush struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Generation increases with every configuration change, so a device can
	// ignore a stale push.
	Generation uint64 `cbor:"2,keyasint,omitempty"`
	// Values holds the configuration keys and values.
	Values map[string]string `cbor:"3,keyasint,omitempty"`
	// Sealed is an optional sealed blob of secret values, opaque to this
	// package.
	Sealed []byte `cbor:"4,keyasint,omitempty"`
}

// ConfigAck confirms that a ConfigPush was applied.
type ConfigAck struct {
	// App is the application's name.
	App string `cbor:"1,keyasint"`
	// Generation echoes ConfigPush.Generation.
	Generation uint64 `cbor:"2,keyasint,omitempty"`
}

// Size bounds of the certificate material carried by EnrollRequest,
// RenewRequest and RenewResponse, checked by the decoder on top of the frame
// size limit.
const (
	// MaxCSRSize bounds EnrollRequest.CSR and RenewRequest.CSR, in bytes.
	MaxCSRSize = 8 << 10
	// MaxProofSize bounds EnrollRequest.SealingKeyProof, in bytes (an
	// Ed25519 signature is 64 bytes, an ECDSA P-256 one at most 72).
	MaxProofSize = 256
	// MaxCertSize bounds each certificate of RenewResponse.CertChain, in
	// bytes.
	MaxCertSize = 8 << 10
	// MaxChainLength bounds the number of certificates in
	// RenewResponse.CertChain.
	MaxChainLength = 8
)

// RenewRequest asks the gateway for a new device certificate over an
// established session, before the current certificate expires.
type RenewRequest struct {
	// CSR is a PKCS#10 certificate signing request (DER) for the device's
	// current identity key, signed by it. The gateway checks the signature,
	// refuses any other key and keeps the device id of the session.
	CSR []byte `cbor:"1,keyasint"`
}

// RenewResponse carries the renewed certificate chain.
type RenewResponse struct {
	// CertChain is the new device certificate followed by the intermediate
	// CAs, each DER encoded, leaf first.
	CertChain [][]byte `cbor:"1,keyasint"`
}

// Type implementations.

// Type returns TypeAck.
func (*Ack) Type() Type { return TypeAck }

// Type returns TypeError.
func (*Error) Type() Type { return TypeError }

// Type returns TypeDisconnect.
func (*Disconnect) Type() Type { return TypeDisconnect }

// Type returns TypeEnrollRequest.
func (*EnrollRequest) Type() Type { return TypeEnrollRequest }

// Type returns TypeEnrollResponse.
func (*EnrollResponse) Type() Type { return TypeEnrollResponse }

// Type returns TypeEnrollAck.
func (*EnrollAck) Type() Type { return TypeEnrollAck }

// Type returns TypeHeartbeat.
func (*Heartbeat) Type() Type { return TypeHeartbeat }

// Type returns TypeHeartbeatAck.
func (*HeartbeatAck) Type() Type { return TypeHeartbeatAck }

// Type returns TypeDeploy.
func (*Deploy) Type() Type { return TypeDeploy }

// Type returns TypeUpdate.
func (*Update) Type() Type { return TypeUpdate }

// Type returns TypeStart.
func (*Start) Type() Type { return TypeStart }

// Type returns TypeStop.
func (*Stop) Type() Type { return TypeStop }

// Type returns TypeRemove.
func (*Remove) Type() Type { return TypeRemove }

// Type returns TypeAppStatus.
func (*AppStatus) Type() Type { return TypeAppStatus }

// Type returns TypeMetricsReport.
func (*MetricsReport) Type() Type { return TypeMetricsReport }

// Type returns TypeConfigPush.
func (*ConfigPush) Type() Type { return TypeConfigPush }

// Type returns TypeConfigAck.
func (*ConfigAck) Type() Type { return TypeConfigAck }

// Type returns TypeRenewRequest.
func (*RenewRequest) Type() Type { return TypeRenewRequest }

// Type returns TypeRenewResponse.
func (*RenewResponse) Type() Type { return TypeRenewResponse }

// newMessage returns a zero message of type t, or nil if t is unknown.
func newMessage(t Type) Message {
	switch t {
	case TypeAck:
		return new(Ack)
	case TypeError:
		return new(Error)
	case TypeDisconnect:
		return new(Disconnect)
	case TypeEnrollRequest:
		return new(EnrollRequest)
	case TypeEnrollResponse:
		return new(EnrollResponse)
	case TypeEnrollAck:
		return new(EnrollAck)
	case TypeHeartbeat:
		return new(Heartbeat)
	case TypeHeartbeatAck:
		return new(HeartbeatAck)
	case TypeDeploy:
		return new(Deploy)
	case TypeUpdate:
		return new(Update)
	case TypeStart:
		return new(Start)
	case TypeStop:
		return new(Stop)
	case TypeRemove:
		return new(Remove)
	case TypeAppStatus:
		return new(AppStatus)
	case TypeMetricsReport:
		return new(MetricsReport)
	case TypeConfigPush:
		return new(ConfigPush)
	case TypeConfigAck:
		return new(ConfigAck)
	case TypeRenewRequest:
		return new(RenewRequest)
	case TypeRenewResponse:
		return new(RenewResponse)
	}
	return nil
}

// Validation of required fields.

var errMissing = errors.New("missing required field")

func missing(field string) error { return fmt.Errorf("%w %s", errMissing, field) }

func checkName(field, name string) error {
	if name == "" {
		return missing(field)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s is %d bytes long, longer than %d", field, len(name), MaxNameLen)
	}
	return nil
}

func (*Ack) validate() error { return nil }

func (m *Error) validate() error {
	if m.Code == 0 {
		return missing("code")
	}
	return nil
}

func (*Disconnect) validate() error { return nil }

func (m *EnrollRequest) validate() error {
	switch {
	case len(m.PublicKey) == 0:
		return missing("public key")
	case m.KeyAlgorithm == 0:
		return missing("key algorithm")
	case m.DeviceType == "":
		return missing("device type")
	case len(m.CSR) == 0:
		return missing("csr")
	case len(m.CSR) > MaxCSRSize:
		return fmt.Errorf("csr is %d bytes, more than %d", len(m.CSR), MaxCSRSize)
	case len(m.SealingKey) != 0 && len(m.SealingKey) != 32:
		return fmt.Errorf("sealing key is %d bytes, want 32", len(m.SealingKey))
	case len(m.SealingKey) != 0 && len(m.SealingKeyProof) == 0:
		return missing("sealing key proof")
	case len(m.SealingKey) == 0 && len(m.SealingKeyProof) != 0:
		return errors.New("sealing key proof without a sealing key")
	case len(m.SealingKeyProof) > MaxProofSize:
		return fmt.Errorf("sealing key proof is %d bytes, more than %d", len(m.SealingKeyProof), MaxProofSize)
	}
	return nil
}

func (m *EnrollResponse) validate() error {
	if err := checkName("device id", m.DeviceID); err != nil {
		return err
	}
	if len(m.CertChain) == 0 {
		return missing("certificate chain")
	}
	for i, c := range m.CertChain {
		if len(c) == 0 {
			return fmt.Errorf("certificate %d is empty", i)
		}
	}
	if len(m.SigningKey) == 0 {
		return missing("signing key")
	}
	return nil
}

func (m *EnrollAck) validate() error { return checkName("device id", m.DeviceID) }

func (*Heartbeat) validate() error    { return nil }
func (*HeartbeatAck) validate() error { return nil }

func (m *Deploy) validate() error { return checkArtifact(m.App, m.Artifact) }
func (m *Update) validate() error { return checkArtifact(m.App, m.Artifact) }

func checkArtifact(app string, artifact []byte) error {
	if err := checkName("app", app); err != nil {
		return err
	}
	if len(artifact) == 0 {
		return missing("artifact")
	}
	return nil
}

func (m *Start) validate() error  { return checkName("app", m.App) }
func (m *Stop) validate() error   { return checkName("app", m.App) }
func (m *Remove) validate() error { return checkName("app", m.App) }

func (m *AppStatus) validate() error {
	if err := checkName("app", m.App); err != nil {
		return err
	}
	if m.State == 0 {
		return missing("state")
	}
	return nil
}

func (m *MetricsReport) validate() error {
	for i := range m.Apps {
		if err := checkName("app", m.Apps[i].App); err != nil {
			return fmt.Errorf("apps[%d]: %w", i, err)
		}
	}
	return nil
}

func (m *ConfigPush) validate() error { return checkName("app", m.App) }
func (m *ConfigAck) validate() error  { return checkName("app", m.App) }

func (m *RenewRequest) validate() error {
	switch {
	case len(m.CSR) == 0:
		return missing("csr")
	case len(m.CSR) > MaxCSRSize:
		return fmt.Errorf("csr is %d bytes, more than %d", len(m.CSR), MaxCSRSize)
	}
	return nil
}

func (m *RenewResponse) validate() error {
	switch {
	case len(m.CertChain) == 0:
		return missing("certificate chain")
	case len(m.CertChain) > MaxChainLength:
		return fmt.Errorf("certificate chain has %d certificates, more than %d", len(m.CertChain), MaxChainLength)
	}
	for i, c := range m.CertChain {
		switch {
		case len(c) == 0:
			return fmt.Errorf("certificate %d is empty", i)
		case len(c) > MaxCertSize:
			return fmt.Errorf("certificate %d is %d bytes, more than %d", i, len(c), MaxCertSize)
		}
	}
	return nil
}
