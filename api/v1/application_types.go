package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// RunState is the run state an operator wants for an application.
// +kubebuilder:validation:Enum=running;stopped
type RunState string

// Desired run states.
const (
	// RunStateRunning keeps the application running on every target device.
	RunStateRunning RunState = "running"
	// RunStateStopped keeps the application installed but stopped.
	RunStateStopped RunState = "stopped"
)

// ApplicationPhase summarises an application's rollout across its targets.
// +kubebuilder:validation:Enum=Pending;Deploying;Running;PartiallyRunning;Stopped;Failed
type ApplicationPhase string

// Application phases.
const (
	// ApplicationPhasePending means no target has been resolved or reached yet.
	ApplicationPhasePending ApplicationPhase = "Pending"
	// ApplicationPhaseDeploying means the module is on its way to the targets.
	ApplicationPhaseDeploying ApplicationPhase = "Deploying"
	// ApplicationPhaseRunning means the application runs on every target.
	ApplicationPhaseRunning ApplicationPhase = "Running"
	// ApplicationPhasePartiallyRunning means it runs on some targets but not all.
	ApplicationPhasePartiallyRunning ApplicationPhase = "PartiallyRunning"
	// ApplicationPhaseStopped means it is installed and stopped, as requested.
	ApplicationPhaseStopped ApplicationPhase = "Stopped"
	// ApplicationPhaseFailed means it runs on no target because of errors.
	ApplicationPhaseFailed ApplicationPhase = "Failed"
)

// ApplicationConfig holds the sandbox limits applied to every instance.
//
// It is the Kubernetes form of sandbox.Limits, the one type the device
// side (signed artifact, application manager, board profile, runtime)
// carries them in. It stays a type of its own because it is a wire
// format with its own rules — JSON field names, a duration string,
// defaults and validation in the CRD schema — and because device packages
// must not import the Kubernetes API; the controller converts it when it
// signs an artifact.
type ApplicationConfig struct {
	// MemoryLimit is the maximum linear memory in bytes, enforced in 64 KiB pages.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=268435456
	// +kubebuilder:default=65536
	// +optional
	MemoryLimit int64 `json:"memoryLimit,omitempty"`

	// ExecutionTimeout bounds one execution of the application, as a Go
	// duration string such as "500ms" or "30s".
	// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+$') || (duration(self) > duration('0s') && duration(self) <= duration('1h'))",message="executionTimeout must be more than 0s and at most 1h"
	// +kubebuilder:default="30s"
	// +optional
	ExecutionTimeout string `json:"executionTimeout,omitempty"`

	// MaxStackSize is the maximum WebAssembly call stack in bytes. The default
	// of 4 KiB fits the smallest supported board (HiFive1, 8 KiB of RAM for
	// applications); raise it for deeply recursive code on larger boards.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=16777216
	// +kubebuilder:default=4096
	// +optional
	MaxStackSize int64 `json:"maxStackSize,omitempty"`
}

// SealedModule is a confidential module as the client sends it: encrypted
// once with a random content key, the content key wrapped to the
// controller's issuer key. The plaintext module is in no Kubernetes object;
// the controller unwraps the content key in memory, checks the module, and
// wraps the content key again for each target device.
type SealedModule struct {
	// IssuerKeyID is the id (16 hex digits) of the issuer key the content
	// key is wrapped to, as published in the wasmbed-issuer ConfigMap.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{16}$`
	IssuerKeyID string `json:"issuerKeyID"`
	// WrappedKey is the content key wrapped to the issuer key (82 bytes,
	// 112 characters of base64).
	// +kubebuilder:validation:MinLength=112
	// +kubebuilder:validation:MaxLength=112
	WrappedKey []byte `json:"wrappedKey"`
	// Ciphertext is the module encrypted with the content key: the payload
	// every device receives, unchanged.
	// +kubebuilder:validation:MinLength=12
	// +kubebuilder:validation:MaxLength=1048576
	Ciphertext []byte `json:"ciphertext"`
}

// RolloutStrategy bounds how fast a new version reaches the fleet and when a
// rollout stops on its own.
type RolloutStrategy struct {
	// MaxUpdating is how many targets may be updating at once: a count, or a
	// percentage of the targets ("25%") rounded up. At least one device
	// always updates.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^[1-9][0-9]?%$|^100%$')",message="maxUpdating must be a count of at least 1 or a percentage from 1% to 100%"
	// +kubebuilder:default="25%"
	// +optional
	MaxUpdating *intstr.IntOrString `json:"maxUpdating,omitempty"`
	// FailureThreshold is the percentage of the devices the current version
	// was delivered to that may fail before the rollout pauses: 0 pauses at
	// the first failure, 100 never pauses.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=25
	// +optional
	FailureThreshold *int32 `json:"failureThreshold,omitempty"`
}

// Rollout strategy defaults, for objects stored before the CRD defaulted
// them.
const (
	// DefaultMaxUpdating is RolloutStrategy.MaxUpdating's default.
	DefaultMaxUpdating = "25%"
	// DefaultFailureThreshold is RolloutStrategy.FailureThreshold's default.
	DefaultFailureThreshold int32 = 25
)

// ApplicationSpec is the desired state of an Application. It carries exactly
// one of WasmBinary and SealedModule; the controller refuses an Application
// with both or neither (no validation rule can say so: the API server's rule
// engine fails on byte fields whose base64 holds '+' or '/', which most
// modules' does).
//
// +kubebuilder:validation:XValidation:rule="(has(self.targetDevices) && size(self.targetDevices) > 0) || has(self.selector)",message="one of targetDevices or selector is required"
// +kubebuilder:validation:XValidation:rule="has(self.sealedModule) == (has(self.confidential) && self.confidential)",message="confidential applications carry a sealedModule and no wasmBinary"
type ApplicationSpec struct {
	// Name is the application's name as devices report it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Version labels the module; devices report it back. Changing the module
	// without changing the version is allowed: the module hash decides.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Version string `json:"version,omitempty"`

	// WasmBinary is the WebAssembly module, base64-encoded in YAML. It must
	// start with the WebAssembly magic bytes and binary version 1. A
	// confidential application has SealedModule instead.
	// +kubebuilder:validation:MinLength=12
	// +kubebuilder:validation:MaxLength=1048576
	// +kubebuilder:validation:Pattern=`^AGFzbQEAAAA`
	// +optional
	WasmBinary []byte `json:"wasmBinary,omitempty"`

	// SealedModule is the encrypted module of a confidential application.
	// +optional
	SealedModule *SealedModule `json:"sealedModule,omitempty"`

	// TargetDevices names the Devices, in the Application's namespace, to run on.
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=253
	// +listType=set
	// +optional
	TargetDevices []string `json:"targetDevices,omitempty"`

	// Selector selects Devices by label, for fleets; it adds to TargetDevices.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// DeviceTypes restricts the targets to these board families; empty
	// means any.
	// +kubebuilder:validation:MaxItems=8
	// +listType=set
	// +optional
	DeviceTypes []DeviceType `json:"deviceTypes,omitempty"`

	// RequiredCapabilities lists what a target must offer besides wasm,
	// which every target needs.
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	// +optional
	RequiredCapabilities []Capability `json:"requiredCapabilities,omitempty"`

	// Config holds the sandbox limits.
	// +kubebuilder:default={}
	// +optional
	Config ApplicationConfig `json:"config,omitempty"`

	// State is the desired run state.
	// +kubebuilder:default=running
	// +optional
	State RunState `json:"state,omitempty"`

	// Confidential marks an application whose module travels encrypted from
	// the client to the devices (SealedModule); gateways relay ciphertext.
	// +optional
	Confidential bool `json:"confidential,omitempty"`

	// Strategy bounds the rollout of a new version.
	// +kubebuilder:default={}
	// +optional
	Strategy RolloutStrategy `json:"strategy,omitempty"`
}

// FailingDevice names one target on which the application fails, and why.
type FailingDevice struct {
	// Device is the Device resource's name.
	// +kubebuilder:validation:MaxLength=253
	Device string `json:"device"`
	// Phase is the application's phase on the device.
	Phase DeviceApplicationPhase `json:"phase"`
	// Reason is a CamelCase reason, for example DeviceRefused or StackExhausted.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message is a human-readable detail for Reason.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// MaxFailingDevices bounds ApplicationStatus.FailingDevices: the status of an
// Application never grows with the fleet.
const MaxFailingDevices = 10

// MaxUntargetedDevices bounds ApplicationStatus.UntargetedDevices.
const MaxUntargetedDevices = 10

// Reasons a named or selected device is not targeted, in
// UntargetedDevice.Reason, ReasonCount.Reason and the Events of the
// Application.
const (
	// ReasonDeviceMissing: a device named in targetDevices does not exist.
	ReasonDeviceMissing = "DeviceMissing"
	// ReasonDeviceRevoked: the device is revoked.
	ReasonDeviceRevoked = "DeviceRevoked"
	// ReasonWrongDeviceType: the device's type is not among spec.deviceTypes.
	ReasonWrongDeviceType = "WrongDeviceType"
	// ReasonMissingCapability: the device lacks wasm or a required capability.
	ReasonMissingCapability = "MissingCapability"
	// ReasonDoesNotFit: the module with its limits does not fit the board's
	// profile (RAM, stack, module size).
	ReasonDoesNotFit = "DoesNotFit"
	// ReasonNoSealingKey: a confidential application cannot be addressed to
	// a device that has no sealing key.
	ReasonNoSealingKey = "NoSealingKey"
)

// UntargetedDevice names a device that is named or selected but not
// targeted, and why.
type UntargetedDevice struct {
	// Device is the Device resource's name.
	// +kubebuilder:validation:MaxLength=253
	Device string `json:"device"`
	// Reason is one of the untargeted reasons (DeviceMissing, DeviceRevoked,
	// WrongDeviceType, MissingCapability, DoesNotFit, NoSealingKey).
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason"`
	// Message is a human-readable detail for Reason.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// ReasonCount is how many devices share a reason.
type ReasonCount struct {
	// Reason is a CamelCase reason.
	// +kubebuilder:validation:MaxLength=128
	Reason string `json:"reason"`
	// Count is the number of devices.
	Count int32 `json:"count"`
}

// RevisionRecord describes one version of an application as it was rolled
// out: enough to roll back to it.
type RevisionRecord struct {
	// Revision identifies the version: a hash of the module (or ciphertext),
	// the version label, the limits and the application name.
	// +kubebuilder:validation:MaxLength=64
	Revision string `json:"revision"`
	// Version is the version label.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Version string `json:"version,omitempty"`
	// Payload names the immutable ConfigMap that holds the module (or its
	// ciphertext).
	// +kubebuilder:validation:MaxLength=253
	Payload string `json:"payload"`
	// Config holds the sandbox limits of the version.
	// +optional
	Config ApplicationConfig `json:"config,omitempty"`
	// Confidential reports a sealed module.
	// +optional
	Confidential bool `json:"confidential,omitempty"`
}

// RolloutStatus is where the rollout of the current version stands.
type RolloutStatus struct {
	// Current is the version being rolled out.
	// +optional
	Current *RevisionRecord `json:"current,omitempty"`
	// Previous is the version rolled out before Current, kept for undo.
	// +optional
	Previous *RevisionRecord `json:"previous,omitempty"`
	// Paused reports a rollout stopped by the failure threshold: no more
	// devices receive the current version until an operator resumes it
	// (annotation wasmbed.github.io/resume) or rolls back.
	// +optional
	Paused bool `json:"paused,omitempty"`
	// PausedAt is when the rollout paused.
	// +optional
	PausedAt *metav1.Time `json:"pausedAt,omitempty"`
	// ResumedAt is the last resume request the controller honoured.
	// +optional
	ResumedAt *metav1.Time `json:"resumedAt,omitempty"`
	// FailedBaseline is how many targets had failed on the current version
	// when the rollout was last resumed; the failure threshold applies to
	// the failures after it.
	// +optional
	FailedBaseline int32 `json:"failedBaseline,omitempty"`
	// DeliveredBaseline is how many targets the current version had been
	// delivered to when the rollout was last resumed.
	// +optional
	DeliveredBaseline int32 `json:"deliveredBaseline,omitempty"`
}

// ApplicationStatus is the observed state of an Application. It holds counts
// and a bounded list only: the state of the application on each device is in
// that device's DeviceApplication.
type ApplicationStatus struct {
	// Phase summarises the rollout.
	// +optional
	Phase ApplicationPhase `json:"phase,omitempty"`
	// TargetCount is the number of resolved target devices.
	// +optional
	TargetCount int32 `json:"targetCount,omitempty"`
	// UpdatedCount is the number of targets that have the current version
	// installed (the seed's deployedDevices, as a count).
	// +optional
	UpdatedCount int32 `json:"updatedCount,omitempty"`
	// RunningCount is the number of targets that run the application.
	// +optional
	RunningCount int32 `json:"runningCount,omitempty"`
	// FailedCount is the number of targets on which the application failed.
	// +optional
	FailedCount int32 `json:"failedCount,omitempty"`
	// FailingDevices lists some of the failing targets with their reasons,
	// at most MaxFailingDevices.
	// +kubebuilder:validation:MaxItems=10
	// +listType=map
	// +listMapKey=device
	// +optional
	FailingDevices []FailingDevice `json:"failingDevices,omitempty"`
	// UntargetedCount is the number of named or selected devices the
	// application is not deployed to.
	// +optional
	UntargetedCount int32 `json:"untargetedCount,omitempty"`
	// UntargetedReasons counts the untargeted devices by reason.
	// +kubebuilder:validation:MaxItems=8
	// +listType=map
	// +listMapKey=reason
	// +optional
	UntargetedReasons []ReasonCount `json:"untargetedReasons,omitempty"`
	// UntargetedDevices lists some untargeted devices with their reasons, at
	// most MaxUntargetedDevices.
	// +kubebuilder:validation:MaxItems=10
	// +listType=map
	// +listMapKey=device
	// +optional
	UntargetedDevices []UntargetedDevice `json:"untargetedDevices,omitempty"`
	// Rollout is where the rollout of the current version stands.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// LastDeployed is when the current version was last delivered to a device.
	// +optional
	LastDeployed *metav1.Time `json:"lastDeployed,omitempty"`
	// ObservedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are the standard Kubernetes conditions: Ready, Progressing, Degraded.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}

// Application is a WebAssembly module to run, sandboxed, on a set of Devices.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wapp;wapps,categories=wasmbed
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.name`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`,priority=1
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.runningCount`
// +kubebuilder:printcolumn:name="Targets",type=integer,JSONPath=`.status.targetCount`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedCount`,priority=1
// +kubebuilder:printcolumn:name="Paused",type=boolean,JSONPath=`.status.rollout.paused`,priority=1
// +kubebuilder:printcolumn:name="Last Deployed",type=date,JSONPath=`.status.lastDeployed`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Application struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired state.
	Spec ApplicationSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status ApplicationStatus `json:"status,omitempty"`
}

// ApplicationList is a list of Applications.
//
// +kubebuilder:object:root=true
type ApplicationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the applications.
	Items []Application `json:"items"`
}
