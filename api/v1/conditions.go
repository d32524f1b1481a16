package v1

// Condition types and reasons shared by the controller and the gateways.
const (
	// ConditionReady is true when the resource is fully in its desired state.
	ConditionReady = "Ready"
	// ConditionConnected is true while a gateway holds the device's session.
	ConditionConnected = "Connected"
	// ConditionEnrolled is true once the device holds a valid certificate.
	ConditionEnrolled = "Enrolled"
	// ConditionProgressing is true while a rollout is under way.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is true when some targets failed.
	ConditionDegraded = "Degraded"
)

// Reasons of the Application conditions, also used as Event reasons.
const (
	// ReasonRolloutInProgress: devices are receiving the current version.
	ReasonRolloutInProgress = "RolloutInProgress"
	// ReasonRolloutComplete: every target has the current version.
	ReasonRolloutComplete = "RolloutComplete"
	// ReasonRolloutPaused: the failure threshold paused the rollout.
	ReasonRolloutPaused = "RolloutPaused"
	// ReasonRolloutResumed: an operator resumed a paused rollout.
	ReasonRolloutResumed = "RolloutResumed"
	// ReasonNoTargets: no device is targeted.
	ReasonNoTargets = "NoTargets"
	// ReasonInvalidModule: the module does not parse, compile or export the
	// entry points of the app model; it is never sent.
	ReasonInvalidModule = "InvalidModule"
	// ReasonSealedModuleRefused: the sealed module cannot be opened (unknown
	// issuer key, damaged ciphertext or key).
	ReasonSealedModuleRefused = "SealedModuleRefused"
	// ReasonDevicesFailing: some targets report a failure.
	ReasonDevicesFailing = "DevicesFailing"
	// ReasonAllRunning: the application runs on every target.
	ReasonAllRunning = "AllRunning"
	// ReasonAllStopped: the application is stopped on every target, as
	// requested.
	ReasonAllStopped = "AllStopped"
	// ReasonWaitingForDevices: some targets have not reached the desired
	// state yet.
	ReasonWaitingForDevices = "WaitingForDevices"
	// ReasonAsExpected: nothing is degraded.
	ReasonAsExpected = "AsExpected"
	// ReasonRemoving: the application is being removed from its devices.
	ReasonRemoving = "Removing"
)

// Reasons of the Device conditions set by the controller.
const (
	// ReasonCertificateIssued: the device holds a certificate.
	ReasonCertificateIssued = "CertificateIssued"
	// ReasonNotEnrolled: the device has not enrolled yet.
	ReasonNotEnrolled = "NotEnrolled"
	// ReasonSessionOpen: a gateway holds the device's session.
	ReasonSessionOpen = "SessionOpen"
	// ReasonGatewayLost: the gateway that held the session stopped renewing
	// its Lease.
	ReasonGatewayLost = "GatewayLost"
	// ReasonHeartbeatMissed: the device was not heard from within the
	// deadline.
	ReasonHeartbeatMissed = "HeartbeatMissed"
	// ReasonDisconnected: the device closed its session.
	ReasonDisconnected = "Disconnected"
	// ReasonRevoked: the device is revoked.
	ReasonRevoked = "Revoked"
)
