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
