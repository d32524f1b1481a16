package gateway

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// signTimeout bounds the wait for the controller to sign a certificate.
const signTimeout = 30 * time.Second

// enroller enrolls new devices while the pairing window is open.
type enroller struct{ g *Gateway }

// Enroll checks the pairing window and the request's proofs, creates the
// Device (or finds the one pre-registered with the request's key), has
// Kubernetes sign its certificate, and answers with the device's identity.
func (e *enroller) Enroll(ctx context.Context, en *session.Enrollment) (*protocol.EnrollResponse, error) {
	g := e.g
	req := en.Request
	pub, err := requestKey(req)
	if err != nil {
		return nil, err
	}
	encoded, err := pki.EncodePublicKey(pub)
	if err != nil {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadKey", Text: "unsupported public key", Err: err}
	}
	existing, err := g.deviceForEnrollment(ctx, encoded)
	if err != nil {
		return nil, err
	}
	if err := g.checkPairing(ctx, req.PairingToken); err != nil {
		g.enrollmentRefusedEvent(existing, err)
		return nil, err
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	if !sameKey(csr.PublicKey, pub) {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadCSR", Text: "certificate request is not for the enrolling key"}
	}
	if err := verifySealingKey(en, pub); err != nil {
		return nil, err
	}
	dev := existing
	if dev == nil {
		if dev, err = g.createDevice(ctx, req, encoded); err != nil {
			return nil, err
		}
	} else if err := g.markEnrolling(ctx, dev, req); err != nil {
		return nil, err
	}
	signCtx, cancel := context.WithTimeout(ctx, signTimeout)
	defer cancel()
	chain, err := g.requestCertificate(signCtx, dev, req.CSR, wasmbedv1.PurposeEnroll)
	if err != nil {
		if errors.Is(err, errCertificateDenied) {
			return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "CertificateDenied", Text: "certificate request denied", Err: err}
		}
		return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "SignerUnavailable", Text: "certificate not issued in time, retry later", Err: err}
	}
	en.Value = client.ObjectKeyFromObject(dev)
	resp := &protocol.EnrollResponse{DeviceID: dev.Spec.DeviceID, CertChain: chain, SigningKey: g.opts.Trust.SigningKeys[0]}
	if len(g.opts.Trust.SealingKey) > 0 {
		resp.SealingKey = g.opts.Trust.SealingKey
	}
	return resp, nil
}

// Enrolled marks the Device Enrolled once the device stored its identity.
func (e *enroller) Enrolled(ctx context.Context, en *session.Enrollment, _ *protocol.EnrollAck) error {
	g := e.g
	key, ok := en.Value.(types.NamespacedName)
	if !ok {
		return errors.New("enrollment without a device")
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dev := &wasmbedv1.Device{}
		if err := g.reader.Get(ctx, key, dev); err != nil {
			return err
		}
		st := dev.Status.DeepCopy()
		if st.Phase == wasmbedv1.DevicePhaseEnrolling || st.Phase == "" || st.Phase == wasmbedv1.DevicePhasePending {
			st.Phase = wasmbedv1.DevicePhaseEnrolled
		}
		return g.patchDeviceStatus(ctx, dev, st)
	})
}

// requestKey parses the identity key of an enrollment request.
func requestKey(req *protocol.EnrollRequest) (crypto.PublicKey, error) {
	var alg pki.KeyAlgorithm
	switch req.KeyAlgorithm {
	case protocol.KeyEd25519:
		alg = pki.Ed25519
	case protocol.KeyECDSAP256:
		alg = pki.ECDSAP256
	default:
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadKey", Text: "unsupported key algorithm"}
	}
	pub, err := pki.PublicKeyFromRaw(alg, req.PublicKey)
	if err != nil {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadKey", Text: "unsupported public key", Err: err}
	}
	return pub, nil
}

// deviceForEnrollment returns the Device already registered with a key, or
// nil. A revoked Device refuses the enrollment.
func (g *Gateway) deviceForEnrollment(ctx context.Context, encoded string) (*wasmbedv1.Device, error) {
	var list wasmbedv1.DeviceList
	if err := g.client.List(ctx, &list, client.MatchingFields{indexPublicKey: encoded}); err != nil {
		return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
	}
	switch len(list.Items) {
	case 0:
		return nil, nil
	case 1:
		dev := &list.Items[0]
		if dev.Spec.Revoked || dev.DeletionTimestamp != nil {
			r := &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "Revoked", Text: "device revoked"}
			g.enrollmentRefusedEvent(dev, r)
			return nil, r
		}
		return dev, nil
	}
	return nil, &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "AmbiguousKey", Text: "key already registered",
		Err: fmt.Errorf("%d Devices share the public key", len(list.Items))}
}

// checkPairing refuses unless an administrator opened the pairing window,
// with the right token if it asks for one.
func (g *Gateway) checkPairing(ctx context.Context, token []byte) error {
	cm := &corev1.ConfigMap{}
	err := g.reader.Get(ctx, types.NamespacedName{Namespace: g.opts.SystemNamespace, Name: wasmbedv1.PairingConfigMap}, cm)
	if apierrors.IsNotFound(err) {
		return &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "PairingClosed", Text: "no pairing window open"}
	}
	if err != nil {
		return &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
	}
	w, err := pairing.Parse(cm.Data)
	if err != nil {
		return &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "PairingClosed", Text: "no pairing window open", Err: err}
	}
	if !w.OpenAt(g.now()) {
		return &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "PairingClosed", Text: "no pairing window open"}
	}
	if !w.TokenMatches(token) {
		return &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "BadPairingToken", Text: "pairing token refused"}
	}
	return nil
}

// verifySealingKey checks the proof that binds the device's sealing key to
// its identity key and to this connection.
func verifySealingKey(en *session.Enrollment, pub crypto.PublicKey) error {
	req := en.Request
	if len(req.SealingKey) == 0 {
		return nil
	}
	binding, err := pki.EnrollmentBinding(en.State)
	if err != nil {
		return &session.Refusal{Code: protocol.CodeInternal, Reason: "Internal", Text: "internal error", Err: err}
	}
	if err := pki.VerifySealingKeyProof(pub, binding, req.SealingKey, req.SealingKeyProof); err != nil {
		return &session.Refusal{Code: protocol.CodeRefused, Reason: "BadSealingKeyProof", Text: "sealing key not bound to the identity key", Err: err}
	}
	return nil
}

// deviceID derives a new device's id from its key: the board type and the
// first 12 hex digits of the SHA-256 of the key's PKIX encoding. It is
// stable, so a device enrolling again keeps its id, and unique per key.
func deviceID(deviceType string, pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return deviceType + "-" + hex.EncodeToString(sum[:6]), nil
}

// createDevice creates the Device of a new device, phase Enrolling.
func (g *Gateway) createDevice(ctx context.Context, req *protocol.EnrollRequest, encoded string) (*wasmbedv1.Device, error) {
	pub, _ := requestKey(req)
	id, err := deviceID(req.DeviceType, pub)
	if err != nil {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadKey", Text: "unsupported public key", Err: err}
	}
	if err := pki.ValidateDeviceID(id); err != nil {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadRequest", Text: "invalid device type", Err: err}
	}
	dev := &wasmbedv1.Device{
		ObjectMeta: metav1.ObjectMeta{Name: wasmbedv1.DeviceObjectName(id), Namespace: g.opts.DeviceNamespace,
			Labels: map[string]string{wasmbedv1.LabelDeviceType: req.DeviceType}},
		Spec: wasmbedv1.DeviceSpec{
			DeviceID:   id,
			PublicKey:  encoded,
			SealingKey: encodeSealingKey(req.SealingKey),
			DeviceType: wasmbedv1.DeviceType(req.DeviceType),
		},
	}
	dev.Spec.Capabilities = knownCapabilities(req.Capabilities)
	if err := g.client.Create(ctx, dev); err != nil {
		if apierrors.IsInvalid(err) {
			return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "BadRequest", Text: "device description refused", Err: err}
		}
		if apierrors.IsAlreadyExists(err) {
			// Created meanwhile by a concurrent enrollment of the same key.
			existing := &wasmbedv1.Device{}
			if gerr := g.reader.Get(ctx, client.ObjectKeyFromObject(dev), existing); gerr == nil && existing.Spec.PublicKey == encoded {
				return existing, g.markEnrolling(ctx, existing, req)
			}
		}
		return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
	}
	g.log.Info("device created by enrollment", "device", id, "object", client.ObjectKeyFromObject(dev).String())
	return dev, g.markEnrolling(ctx, dev, req)
}

// markEnrolling records an enrollment in progress and the sealing key the
// device presented with a valid proof.
func (g *Gateway) markEnrolling(ctx context.Context, dev *wasmbedv1.Device, req *protocol.EnrollRequest) error {
	if sk := encodeSealingKey(req.SealingKey); sk != "" && dev.Spec.SealingKey != sk {
		patch := client.MergeFromWithOptions(dev.DeepCopy(), client.MergeFromWithOptimisticLock{})
		dev.Spec.SealingKey = sk
		if err := g.client.Patch(ctx, dev, patch); err != nil {
			return &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
		}
	}
	// The controller may write the status of a Device just created (its
	// conditions) between the creation and this write: on a conflict the
	// Device is read again and the write made on what it holds.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		st := dev.Status.DeepCopy()
		if st.Phase == "" || st.Phase == wasmbedv1.DevicePhasePending {
			st.Phase = wasmbedv1.DevicePhaseEnrolling
		}
		if req.FirmwareVersion != "" {
			st.Firmware = &wasmbedv1.FirmwareInfo{Version: truncate(req.FirmwareVersion, 64), ProtocolVersion: int32(protocol.Version)}
		}
		err := g.patchDeviceStatus(ctx, dev, st)
		if apierrors.IsConflict(err) {
			if gerr := g.reader.Get(ctx, client.ObjectKeyFromObject(dev), dev); gerr != nil {
				return gerr
			}
		}
		return err
	})
	if err != nil {
		return &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
	}
	return nil
}

// knownCapabilities keeps the reported capabilities the API knows, once
// each: a firmware newer than the API may report more.
func knownCapabilities(reported []string) []wasmbedv1.Capability {
	var out []wasmbedv1.Capability
	for _, c := range reported {
		cp := wasmbedv1.Capability(c)
		if slices.Contains(wasmbedv1.Capabilities, cp) && !slices.Contains(out, cp) {
			out = append(out, cp)
		}
	}
	return out
}

// encodeSealingKey returns a sealing key as Device.spec.sealingKey holds it.
func encodeSealingKey(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// enrollmentRefusedEvent records a refused enrollment on a known Device.
func (g *Gateway) enrollmentRefusedEvent(dev *wasmbedv1.Device, err error) {
	if dev == nil {
		return
	}
	var r *session.Refusal
	reason := "Refused"
	if errors.As(err, &r) {
		reason = r.Reason
	}
	g.events.Eventf(dev, nil, corev1.EventTypeWarning, "EnrollmentRefused", "Enroll", "enrollment refused by gateway %s: %s", g.opts.Name, reason)
}

// renewer renews device certificates over live sessions.
type renewer struct{ g *Gateway }

// Renew has Kubernetes sign a renewed certificate for the session's device.
// The request must be for the session's own key: keys are not rotated at
// renewal (docs/pki.md).
func (r *renewer) Renew(ctx context.Context, s *session.Session, der []byte) ([][]byte, error) {
	g := r.g
	csr, err := parseCSR(der)
	if err != nil {
		return nil, err
	}
	id := s.Identity()
	if !sameKey(csr.PublicKey, id.PublicKey) {
		return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "KeyChange", Text: "key change not allowed at renewal"}
	}
	ds, _ := s.Value().(*deviceSession)
	if ds == nil {
		return nil, errors.New("renewal on a session without a device")
	}
	dev := &wasmbedv1.Device{}
	if err := g.client.Get(ctx, ds.key, dev); err != nil {
		return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
	}
	if dev.Spec.Revoked || dev.Spec.PublicKey != id.EncodedKey || dev.Spec.DeviceID != id.DeviceID {
		return nil, &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "Revoked", Text: "renewal refused"}
	}
	signCtx, cancel := context.WithTimeout(ctx, signTimeout)
	defer cancel()
	chain, err := g.requestCertificate(signCtx, dev, der, wasmbedv1.PurposeRenew)
	if err != nil {
		if errors.Is(err, errCertificateDenied) {
			return nil, &session.Refusal{Code: protocol.CodeRefused, Reason: "CertificateDenied", Text: "certificate request denied", Err: err}
		}
		return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "SignerUnavailable", Text: "certificate not issued in time, retry later", Err: err}
	}
	return chain, nil
}
