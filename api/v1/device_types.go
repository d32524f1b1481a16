package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeviceType names a supported board family.
// +kubebuilder:validation:Enum=hifive1;esp32
type DeviceType string

// Supported device types.
const (
	// DeviceTypeHiFive1 is the SiFive HiFive1 RISC-V board (16 KiB RAM, no WiFi).
	DeviceTypeHiFive1 DeviceType = "hifive1"
	// DeviceTypeESP32 is the Espressif ESP32 Xtensa board (520 KiB RAM, WiFi).
	DeviceTypeESP32 DeviceType = "esp32"
)

// Capability is a feature a device offers to applications and the platform.
// +kubebuilder:validation:Enum=wasm;tls;wifi;bluetooth;ethernet;serial;gpio;uart;spi;i2c;sensors;crypto-accel
type Capability string

// Capabilities lists every Capability the API accepts, in the order of the
// schema's enumeration. A gateway enrolling a device keeps the capabilities
// it reports that are in this list and drops the others.
var Capabilities = []Capability{"wasm", "tls", "wifi", "bluetooth", "ethernet", "serial", "gpio", "uart", "spi", "i2c", "sensors", "crypto-accel"}

// DevicePhase is the lifecycle phase of a device as observed by the platform.
// +kubebuilder:validation:Enum=Pending;Enrolling;Enrolled;Connected;Disconnected;Unreachable;Error
type DevicePhase string

// Device phases.
const (
	// DevicePhasePending means the device is declared but has never enrolled or connected.
	DevicePhasePending DevicePhase = "Pending"
	// DevicePhaseEnrolling means an enrollment is in progress and not yet acknowledged.
	DevicePhaseEnrolling DevicePhase = "Enrolling"
	// DevicePhaseEnrolled means the device holds a certificate but has no session yet.
	DevicePhaseEnrolled DevicePhase = "Enrolled"
	// DevicePhaseConnected means a gateway holds a live session with the device.
	DevicePhaseConnected DevicePhase = "Connected"
	// DevicePhaseDisconnected means the device said goodbye and closed its session.
	DevicePhaseDisconnected DevicePhase = "Disconnected"
	// DevicePhaseUnreachable means the device missed its heartbeat deadline.
	DevicePhaseUnreachable DevicePhase = "Unreachable"
	// DevicePhaseError means the device or its session is in a state that needs attention.
	DevicePhaseError DevicePhase = "Error"
)

// DeviceSpec is the desired state of a Device.
type DeviceSpec struct {
	// DeviceID is the device's stable identifier, unique in the fleet.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][A-Za-z0-9._-]*$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="deviceId is immutable"
	DeviceID string `json:"deviceId"`

	// PublicKey is the device's identity key: the unpadded base64url encoding
	// of its PKIX SubjectPublicKeyInfo (Ed25519 or ECDSA P-256). Gateways find
	// a device by this key after the TLS handshake, so it is a selectable field.
	// +kubebuilder:validation:MinLength=16
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	PublicKey string `json:"publicKey"`

	// SealingKey is the device's X25519 public key for sealed payloads
	// (confidential modules, configuration secrets): the unpadded base64url of
	// its 32 raw bytes. The device generates it at enrollment, apart from its
	// identity key. Without it nothing confidential can be sent to the device.
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]{43}$`
	// +optional
	SealingKey string `json:"sealingKey,omitempty"`

	// DeviceType is the board family, which fixes the device's resource profile.
	DeviceType DeviceType `json:"deviceType"`

	// Capabilities lists what the device offers.
	// +kubebuilder:default={wasm,tls}
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	Capabilities []Capability `json:"capabilities,omitempty"`

	// Revoked refuses the device's sessions and certificates when true.
	// +kubebuilder:default=false
	// +optional
	Revoked bool `json:"revoked,omitempty"`
}

// FirmwareInfo describes the firmware a device reported.
type FirmwareInfo struct {
	// Version is the firmware version string.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Version string `json:"version,omitempty"`
	// Runtime names the WebAssembly runtime and its mode.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// ProtocolVersion is the device protocol version the firmware speaks.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ProtocolVersion int32 `json:"protocolVersion,omitempty"`
}

// DeviceStatus is the observed state of a Device.
type DeviceStatus struct {
	// Phase is the device's lifecycle phase.
	// +optional
	Phase DevicePhase `json:"phase,omitempty"`
	// Gateway names the gateway replica that holds the device's session.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// ConnectedSince is when the current session started, to the
	// microsecond: when a device reconnects to another gateway replica the
	// newer session wins, and the replica holding the older one closes it.
	// +optional
	ConnectedSince *metav1.MicroTime `json:"connectedSince,omitempty"`
	// LastSeen is when the device was last heard from, refreshed at a coarse period.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
	// Firmware describes the firmware the device reported.
	// +optional
	Firmware *FirmwareInfo `json:"firmware,omitempty"`
	// CertificateNotAfter is when the device's current certificate expires.
	// +optional
	CertificateNotAfter *metav1.Time `json:"certificateNotAfter,omitempty"`
	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are the standard Kubernetes conditions: Enrolled, Connected, Ready.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Device is a microcontroller managed by Wasmbed.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dev;devs,categories=wasmbed
// +kubebuilder:selectablefield:JSONPath=`.spec.publicKey`
// +kubebuilder:selectablefield:JSONPath=`.spec.deviceId`
// +kubebuilder:printcolumn:name="Device ID",type=string,JSONPath=`.spec.deviceId`
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.deviceType`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.status.gateway`
// +kubebuilder:printcolumn:name="Last Seen",type=date,JSONPath=`.status.lastSeen`
// +kubebuilder:printcolumn:name="Revoked",type=boolean,JSONPath=`.spec.revoked`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Device struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state.
	Spec DeviceSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status DeviceStatus `json:"status,omitempty"`
}

// DeviceList is a list of Devices.
//
// +kubebuilder:object:root=true
type DeviceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the devices.
	Items []Device `json:"items"`
}
