package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels and finalizers shared by the controller, the gateways and tools.
const (
	// LabelApplication is set on every DeviceApplication to the name of its
	// Application, so `kubectl get dapp -l wasmbed.github.io/application=blinky`
	// lists a rollout. Names longer than a label value allows are shortened by
	// LabelValue.
	LabelApplication = "wasmbed.github.io/application"
	// LabelDevice is set on every DeviceApplication to the name of its Device.
	LabelDevice = "wasmbed.github.io/device"
	// FinalizerDeviceRemoval holds a DeviceApplication until the device has
	// confirmed that the application is removed (or the Device is gone).
	// The gateway that holds the device's session removes it.
	FinalizerDeviceRemoval = "wasmbed.github.io/device-removal"
	// FinalizerApplicationRemoval holds an Application until its
	// application is removed from every device it was deployed to (or
	// those Devices are gone or revoked). The controller removes it.
	FinalizerApplicationRemoval = "wasmbed.github.io/application-removal"
	// AnnotationResume resumes a paused rollout: an RFC 3339 time later than
	// status.rollout.pausedAt. `wasmbed app rollout resume` sets it.
	AnnotationResume = "wasmbed.github.io/resume"
	// AnnotationRevision, on a DeviceApplication, names the application
	// revision its artifact carries (status.rollout.current.revision of the
	// Application when it was issued).
	AnnotationRevision = "wasmbed.github.io/revision"
)

// DeviceApplicationPhase is the state of an application on one device, as the
// gateway holding the device's session last observed it.
// +kubebuilder:validation:Enum=Pending;Delivering;Installed;Running;Stopped;Trapped;LimitExceeded;Failed;Refused;Removing;Removed
type DeviceApplicationPhase string

// DeviceApplication phases.
const (
	// DeviceApplicationPhasePending means nothing has been delivered yet: the
	// rollout holds the device back, or the device is not connected.
	DeviceApplicationPhasePending DeviceApplicationPhase = "Pending"
	// DeviceApplicationPhaseDelivering means a command is on its way to the
	// device and its answer has not arrived.
	DeviceApplicationPhaseDelivering DeviceApplicationPhase = "Delivering"
	// DeviceApplicationPhaseInstalled means the artifact is installed and not
	// running.
	DeviceApplicationPhaseInstalled DeviceApplicationPhase = "Installed"
	// DeviceApplicationPhaseRunning means the application runs.
	DeviceApplicationPhaseRunning DeviceApplicationPhase = "Running"
	// DeviceApplicationPhaseStopped means the application is installed and
	// stopped on request.
	DeviceApplicationPhaseStopped DeviceApplicationPhase = "Stopped"
	// DeviceApplicationPhaseTrapped means the application trapped.
	DeviceApplicationPhaseTrapped DeviceApplicationPhase = "Trapped"
	// DeviceApplicationPhaseLimitExceeded means the runtime stopped the
	// application at a resource limit.
	DeviceApplicationPhaseLimitExceeded DeviceApplicationPhase = "LimitExceeded"
	// DeviceApplicationPhaseFailed means a command failed on the device.
	DeviceApplicationPhaseFailed DeviceApplicationPhase = "Failed"
	// DeviceApplicationPhaseRefused means the device refused the artifact or
	// the command (bad signature, replay, does not fit, ...).
	DeviceApplicationPhaseRefused DeviceApplicationPhase = "Refused"
	// DeviceApplicationPhaseRemoving means the removal is on its way to the
	// device.
	DeviceApplicationPhaseRemoving DeviceApplicationPhase = "Removing"
	// DeviceApplicationPhaseRemoved means the device confirmed the removal.
	DeviceApplicationPhaseRemoved DeviceApplicationPhase = "Removed"
)

// Failed reports whether the phase counts as a failure of the rollout.
func (p DeviceApplicationPhase) Failed() bool {
	switch p {
	case DeviceApplicationPhaseTrapped, DeviceApplicationPhaseLimitExceeded,
		DeviceApplicationPhaseFailed, DeviceApplicationPhaseRefused:
		return true
	}
	return false
}

// PayloadReference names the bytes an artifact's manifest covers: the
// WebAssembly module, or for a confidential application its ciphertext. The
// controller stores them once per application version in an immutable
// ConfigMap, so no module is copied per device.
type PayloadReference struct {
	// ConfigMap is the name of the immutable ConfigMap, in the
	// DeviceApplication's namespace, whose binaryData key "payload" holds the
	// bytes.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ConfigMap string `json:"configMap"`
	// SHA256 is the lower-case hex SHA-256 of the bytes. Gateways check it
	// before they deliver anything.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	SHA256 string `json:"sha256"`
	// Size is the length of the bytes.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	Size int64 `json:"size"`
}

// DeviceArtifact is the small per-device part of a signed deploy artifact:
// everything but the payload, which is shared by every device of a version.
// A gateway joins the two into the artifact it sends; it cannot change any of
// it without the device refusing the result.
type DeviceArtifact struct {
	// Manifest is the canonical CBOR manifest, signed for one device. At
	// most 4 KiB (5464 characters of base64).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=5464
	Manifest []byte `json:"manifest"`
	// Signature is the platform signing key's Ed25519 signature (64 bytes,
	// 88 characters of base64).
	// +kubebuilder:validation:MinLength=88
	// +kubebuilder:validation:MaxLength=88
	Signature []byte `json:"signature"`
	// KeyMaterial is the per-device key material of a confidential
	// application: the content key sealed to the device's sealing key. Empty
	// for plaintext modules. At most 1 KiB (1368 characters of base64).
	// +kubebuilder:validation:MaxLength=1368
	// +optional
	KeyMaterial []byte `json:"keyMaterial,omitempty"`
	// Sequence repeats the manifest's sequence, for people and for routing;
	// the signed manifest is authoritative.
	// +kubebuilder:validation:Minimum=1
	Sequence int64 `json:"sequence"`
	// ModuleHash repeats the manifest's SHA-256 of the plaintext module, in
	// lower-case hex.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	ModuleHash string `json:"moduleHash"`
	// Payload names the module bytes (or ciphertext) the manifest covers.
	Payload PayloadReference `json:"payload"`
}

// DeviceApplicationSpec is the desired state of one application on one
// device. Only the controller writes it.
type DeviceApplicationSpec struct {
	// Device is the Device resource's name, in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="device is immutable"
	Device string `json:"device"`
	// Application is the Application resource's name, in the same namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="application is immutable"
	Application string `json:"application"`
	// AppName is the name the device knows the application by (the
	// Application's spec.name).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	AppName string `json:"appName"`
	// Version is the application version the artifact carries.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Version string `json:"version,omitempty"`
	// ApplicationGeneration is the Application generation this spec was
	// written for.
	// +optional
	ApplicationGeneration int64 `json:"applicationGeneration,omitempty"`
	// State is the desired run state.
	// +kubebuilder:default=running
	// +optional
	State RunState `json:"state,omitempty"`
	// Artifact is the artifact the device should have installed. It is
	// absent while the rollout holds the device back; the device then keeps
	// what it runs.
	// +optional
	Artifact *DeviceArtifact `json:"artifact,omitempty"`
}

// DeviceApplicationStatus is the observed state of one application on one
// device. Only the gateway that holds the device's session writes it.
type DeviceApplicationStatus struct {
	// Phase is the application's state on the device.
	// +optional
	Phase DeviceApplicationPhase `json:"phase,omitempty"`
	// Reason is a CamelCase reason for the phase, for example BadSignature,
	// DoesNotFit, StackExhausted or FellBack.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message is a human-readable detail for Reason.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// AttemptedSequence is the sequence of the last artifact the gateway
	// delivered to the device: Phase and Reason report the outcome of
	// delivering it. A rollout counts the device as updated or failed only
	// when this equals spec.artifact.sequence.
	// +optional
	AttemptedSequence int64 `json:"attemptedSequence,omitempty"`
	// Sequence is the artifact sequence installed on the device; zero when
	// nothing is installed. After a failed update the device falls back to
	// its previous version: Sequence is then lower than AttemptedSequence.
	// +optional
	Sequence int64 `json:"sequence,omitempty"`
	// Version is the application version installed on the device.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Version string `json:"version,omitempty"`
	// ModuleHash is the SHA-256 (lower-case hex) of the module installed on
	// the device, when the gateway knows it.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	ModuleHash string `json:"moduleHash,omitempty"`
	// Gateway names the gateway replica that wrote this status.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Gateway string `json:"gateway,omitempty"`
	// LastTransitionTime is when Phase last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// DeviceApplication is one application on one device: the unit of rollout, as
// a Pod is for a DaemonSet. The controller creates one per (Application,
// Device) pair, owned by the Application and labelled with both names; its
// spec carries the per-device signed artifact and the desired run state, its
// status what the device reports.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dapp;dapps,categories=wasmbed
// +kubebuilder:selectablefield:JSONPath=`.spec.device`
// +kubebuilder:selectablefield:JSONPath=`.spec.application`
// +kubebuilder:printcolumn:name="Device",type=string,JSONPath=`.spec.device`
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.application`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Sequence",type=integer,JSONPath=`.spec.artifact.sequence`,priority=1
// +kubebuilder:printcolumn:name="Gateway",type=string,JSONPath=`.status.gateway`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeviceApplication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state, written by the controller.
	Spec DeviceApplicationSpec `json:"spec"`
	// Status is the observed state, written by the gateway.
	// +optional
	Status DeviceApplicationStatus `json:"status,omitempty"`
}

// DeviceApplicationList is a list of DeviceApplications.
//
// +kubebuilder:object:root=true
type DeviceApplicationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the device applications.
	Items []DeviceApplication `json:"items"`
}
