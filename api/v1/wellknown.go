package v1

// Names the platform's components agree on beyond the three resources: where
// shared state lives, the Kubernetes signers that issue certificates, and the
// annotations that carry context on CertificateSigningRequests.
const (
	// DefaultSystemNamespace holds the platform's own state: the signing key
	// and CA Secrets (readable by the controller only), the session-ticket key
	// Secret shared by gateway replicas, the gateways' Leases and the pairing
	// window.
	DefaultSystemNamespace = "wasmbed-system"

	// LabelDeviceType is set on the Devices that enrollment creates to
	// their board type, so that Applications can select them by it.
	LabelDeviceType = "wasmbed.github.io/device-type"

	// LabelComponent marks objects by the component that owns them, with the
	// values ComponentGateway and ComponentController.
	LabelComponent = "wasmbed.github.io/component"
	// ComponentGateway is the LabelComponent value of gateway objects: each
	// gateway replica renews a Lease named after the replica, labelled so.
	ComponentGateway = "gateway"
	// ComponentController is the LabelComponent value of controller objects.
	ComponentController = "controller"

	// DeviceSignerName is the CertificateSigningRequest signer of device
	// client certificates. Gateways request them at enrollment and renewal;
	// the controller approves and signs them with the device CA.
	DeviceSignerName = "wasmbed.github.io/device"
	// GatewaySignerName is the CertificateSigningRequest signer of the
	// short-lived gateway server certificates, signed by the controller with
	// the gateway CA.
	GatewaySignerName = "wasmbed.github.io/gateway"

	// AnnotationDevice names, on a device CertificateSigningRequest, the
	// Device ("namespace/name") the certificate is for.
	AnnotationDevice = "wasmbed.github.io/device"
	// AnnotationPurpose says why a device certificate is requested: the
	// values PurposeEnroll and PurposeRenew.
	AnnotationPurpose = "wasmbed.github.io/purpose"
	// PurposeEnroll marks a certificate request made while enrolling a new
	// device; the signer checks that the pairing window is open.
	PurposeEnroll = "enroll"
	// PurposeRenew marks a certificate request made over a device's live
	// session; the signer checks the key against the Device.
	PurposeRenew = "renew"

	// TicketKeysSecret is the Secret, in the system namespace, holding the
	// session-ticket keys the gateway replicas share so that a device
	// resumes its TLS session on any replica. A ticket key lets its holder
	// resume a session as any device: only gateways may read it.
	TicketKeysSecret = "wasmbed-session-tickets"

	// TrustConfigMap is the ConfigMap, in the system namespace, holding the
	// platform's public certificates (package trust): the root, the gateway
	// CA and the device CA. Gateways verify devices with it; devices and
	// tools pin it.
	TrustConfigMap = "wasmbed-trust"

	// PairingConfigMap is the name of the ConfigMap, in the system namespace,
	// that holds the pairing window every gateway replica obeys.
	PairingConfigMap = "wasmbed-pairing"

	// SigningKeySecret is the Secret, in the system namespace, that holds
	// the platform signing key (data key SigningKeySecretKey, a PKCS #8
	// Ed25519 private key in PEM). The controller creates it on first start
	// when absent; only the controller's service account may read it.
	SigningKeySecret = "wasmbed-signing-key"
	// SigningKeySecretKey is the data key of the signing key in
	// SigningKeySecret.
	SigningKeySecretKey = "signing.key"
	// IssuerKeySecret is the Secret, in the system namespace, that holds
	// the controller's X25519 issuer key (data key IssuerKeySecretKey, 32
	// raw bytes): clients wrap the content keys of confidential modules to
	// its public half. Created with SigningKeySecret, readable only by the
	// controller.
	IssuerKeySecret = "wasmbed-issuer-key" //nolint:gosec // the name of a Secret, not a credential
	// IssuerKeySecretKey is the data key of the issuer key in
	// IssuerKeySecret.
	IssuerKeySecretKey = "issuer.key"
	// IssuerConfigMap is the ConfigMap, in the system namespace, where the
	// controller publishes the public halves of its keys: the platform
	// signing key that gateways hand to enrolling devices, and the issuer
	// key that clients seal confidential modules to. Its data keys are
	// IssuerSigningKey, IssuerSigningKeyID, IssuerSealingKey and
	// IssuerSealingKeyID.
	IssuerConfigMap = "wasmbed-issuer"
	// IssuerSigningKey is the unpadded base64url Ed25519 public signing key.
	IssuerSigningKey = "signingKey"
	// IssuerSigningKeyID is the signing key's id, 16 hex digits.
	IssuerSigningKeyID = "signingKeyID"
	// IssuerSealingKey is the unpadded base64url X25519 public issuer key.
	IssuerSealingKey = "sealingKey"
	// IssuerSealingKeyID is the issuer key's id, 16 hex digits.
	IssuerSealingKeyID = "sealingKeyID"

	// DeviceCASecret is the Secret, in the system namespace, of the device
	// CA that signs device certificates (type kubernetes.io/tls: tls.crt is
	// the CA certificate, tls.key its key, ca.crt the root). Only the
	// controller may read it.
	DeviceCASecret = "wasmbed-device-ca" //nolint:gosec // the name of a Secret, not a credential
	// GatewayCASecret is the Secret, in the system namespace, of the
	// gateway CA that signs the gateways' short-lived server certificates,
	// laid out as DeviceCASecret. Only the controller may read it.
	GatewayCASecret = "wasmbed-gateway-ca"
)
