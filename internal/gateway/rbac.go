package gateway

// What a gateway's service account needs for its device sessions.
// `make generate` turns these markers into config/rbac/gateway/role.yaml: a
// ClusterRole wasmbed-gateway and a Role of the same name in the system
// namespace. The HTTP API's own needs (reading applications, writing what
// callers are allowed, the pairing window) are in
// config/rbac/http-api-gateway.yaml. TestGeneratedRBACSuffices runs a gateway
// with these roles only through enrollment, connection and delivery.
//
// What the roles leave out, on purpose: Secrets. The session-ticket Secret
// (wasmbedv1.TicketKeysSecret) is created by the installation, without data,
// and the gateway may only read and update that one Secret. A role that let
// gateways create Secrets in the system namespace could not be limited to
// one name (RBAC cannot restrict create by name), and a gateway creating the
// platform signing key's Secret before the controller's first start would
// hold the key every device trusts.

// Devices: found by key in the cache, created at enrollment, their sealing
// key recorded (patch), their status written.
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=devices,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=devices/status,verbs=update;patch

// DeviceApplications: delivered, their removal finalizer released, their
// status written. Applications are read by the HTTP API only.
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=deviceapplications,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=deviceapplications/status,verbs=patch

// Certificates for devices (enrollment, renewal) and for the gateway itself,
// signed by the controller; the gateway watches its requests and deletes them
// once answered.
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch;create;delete

// Module payloads: immutable ConfigMaps in the Applications' namespaces,
// fetched once per version by name. The pairing window and the published
// platform keys are ConfigMaps of the system namespace, read the same way.
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// Events on Devices (enrollment refused, repeated traps).
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// The HTTP API authenticates and authorises callers through Kubernetes.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// System namespace: each replica's Lease, renewed by name, and the shared
// session-ticket keys.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=wasmbed-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",namespace=wasmbed-system,resources=secrets,resourceNames=wasmbed-session-tickets,verbs=get;update
