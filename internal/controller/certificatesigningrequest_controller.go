package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// CA reload and cleanup defaults.
const (
	// caReloadInterval is how long a loaded CA is used before its Secret is
	// read again, so a rotated CA takes effect without a restart.
	caReloadInterval = time.Minute
)

// CertificateSigningRequestReconciler approves and signs, or denies, the
// CertificateSigningRequests of the Wasmbed signers: device certificates
// (wasmbed.github.io/device) gateways request at enrollment and renewal, and
// the gateways' own server certificates (wasmbed.github.io/gateway). It
// deletes requests once they are done, after a grace period in which the
// requester reads the result: nothing else cleans them up on the embedded
// control plane.
type CertificateSigningRequestReconciler struct {
	client.Client
	// APIReader reads the CA Secrets and the pairing window, which are not
	// cached, and Devices the cache does not have yet.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// SystemNamespace holds the CA Secrets and the pairing window.
	SystemNamespace string
	Policy          certsign.Policy
	// GracePeriod is how long a decided request stays for its requester.
	GracePeriod time.Duration
	// PendingTimeout is how long a request may stay undecided (for example
	// while no CA is configured) before it is deleted.
	PendingTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu  sync.Mutex
	cas map[string]loadedCA
}

type loadedCA struct {
	ca     *pki.Authority
	loaded time.Time
}

// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/approval,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/status,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=wasmbed.github.io/device;wasmbed.github.io/gateway,verbs=approve;sign
// +kubebuilder:rbac:groups="",namespace=wasmbed-system,resources=secrets,verbs=get;create
// +kubebuilder:rbac:groups="",namespace=wasmbed-system,resources=configmaps,verbs=get;create;update
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=devices,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *CertificateSigningRequestReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile implements reconcile.Reconciler.
func (r *CertificateSigningRequestReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ours(csr) {
		return ctrl.Result{}, nil
	}
	now := r.now()
	approved, denied, failed := decided(csr)
	switch {
	case denied || failed || approved && len(csr.Status.Certificate) > 0:
		return r.cleanup(ctx, csr, now)
	case !approved && now.Sub(csr.CreationTimestamp.Time) > r.PendingTimeout:
		log.FromContext(ctx).Info("deleting an undecided certificate request", "age", now.Sub(csr.CreationTimestamp.Time))
		return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, csr))
	}
	// Without the CA nothing is decided: the request waits for one.
	ca, err := r.ca(ctx, csr.Spec.SignerName)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The checks and the signing are one step (pki signs only what meets
	// the expectations), so the certificate exists before the request is
	// approved. A request approved by an earlier run that stopped before
	// writing the certificate is checked again, as a renewal.
	pem, denial, err := r.decide(ctx, ca, csr, approved, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case denial != nil && approved:
		return ctrl.Result{}, r.fail(ctx, csr, denial.Error())
	case denial != nil:
		return r.deny(ctx, csr, denial)
	case !approved:
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "WasmbedChecked",
			Message: "checked by the Wasmbed controller", LastUpdateTime: metav1.Now(),
		})
		if err := r.SubResource("approval").Update(ctx, csr); err != nil {
			return ctrl.Result{}, fmt.Errorf("approve %s: %w", csr.Name, err)
		}
		csrDecisions.WithLabelValues(csr.Spec.SignerName, "approved", "").Inc()
	}
	csr.Status.Certificate = pem
	if err := r.Status().Update(ctx, csr); err != nil {
		return ctrl.Result{}, fmt.Errorf("write certificate of %s: %w", csr.Name, err)
	}
	return ctrl.Result{RequeueAfter: r.GracePeriod + time.Second}, nil
}

func ours(csr *certificatesv1.CertificateSigningRequest) bool {
	return csr.Spec.SignerName == wasmbedv1.DeviceSignerName || csr.Spec.SignerName == wasmbedv1.GatewaySignerName
}

func decided(csr *certificatesv1.CertificateSigningRequest) (approved, denied, failed bool) {
	for _, c := range csr.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case certificatesv1.CertificateApproved:
			approved = true
		case certificatesv1.CertificateDenied:
			denied = true
		case certificatesv1.CertificateFailed:
			failed = true
		}
	}
	return approved, denied, failed
}

// decide runs the signer's checks on csr and signs it: the certificate, or
// why not. A request approved earlier is checked as a renewal (the pairing
// window applied when it was approved).
func (r *CertificateSigningRequestReconciler) decide(ctx context.Context, ca *pki.Authority, csr *certificatesv1.CertificateSigningRequest, approved bool, now time.Time) ([]byte, *certsign.Denial, error) {
	requester := certsign.Requester{Username: csr.Spec.Username, Groups: csr.Spec.Groups}
	usages := make([]string, len(csr.Spec.Usages))
	for i, u := range csr.Spec.Usages {
		usages[i] = string(u)
	}
	if csr.Spec.SignerName == wasmbedv1.GatewaySignerName {
		return r.Policy.SignGateway(ca, certsign.GatewayRequest{Requester: requester, CSR: csr.Spec.Request, Usages: usages, ExpirationSeconds: csr.Spec.ExpirationSeconds})
	}
	// The requester is checked before anything is read on its behalf.
	if d := r.Policy.CheckRequester(requester); d != nil {
		return nil, d, nil
	}
	ref := csr.Annotations[wasmbedv1.AnnotationDevice]
	ns, name, ok := strings.Cut(ref, "/")
	dev := certsign.Device{Name: ref}
	if ok && ns != "" && name != "" {
		d := &wasmbedv1.Device{}
		key := client.ObjectKey{Namespace: ns, Name: name}
		err := r.Get(ctx, key, d)
		if apierrors.IsNotFound(err) {
			// A gateway creates the Device of an enrolling device just
			// before its request: the cache may not have it yet, and a
			// denial must rest on what is stored.
			err = r.APIReader.Get(ctx, key, d)
		}
		switch {
		case err == nil:
			dev = certsign.Device{Found: true, Name: ref, DeviceID: d.Spec.DeviceID, PublicKey: d.Spec.PublicKey, Revoked: d.Spec.Revoked}
		case !apierrors.IsNotFound(err):
			return nil, nil, err
		}
	}
	purpose := csr.Annotations[wasmbedv1.AnnotationPurpose]
	var window pairing.Window
	switch {
	case approved:
		purpose = certsign.PurposeRenew
	case purpose == certsign.PurposeEnroll:
		cm := &corev1.ConfigMap{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.SystemNamespace, Name: wasmbedv1.PairingConfigMap}, cm)
		switch {
		case err == nil:
			if window, err = pairing.Parse(cm.Data); err != nil {
				log.FromContext(ctx).Error(err, "pairing window unreadable; treated as closed")
				window = pairing.Window{}
			}
		case !apierrors.IsNotFound(err):
			return nil, nil, err
		}
	}
	return r.Policy.SignDevice(ca, certsign.DeviceRequest{
		Requester: requester, CSR: csr.Spec.Request, Usages: usages, Purpose: purpose, ExpirationSeconds: csr.Spec.ExpirationSeconds,
	}, dev, window, now)
}

// deny records a denial on the request and, when it names one, the Device.
func (r *CertificateSigningRequestReconciler) deny(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, d *certsign.Denial) (ctrl.Result, error) {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: d.Reason,
		Message: truncate(d.Message, 1024), LastUpdateTime: metav1.Now(),
	})
	if err := r.SubResource("approval").Update(ctx, csr); err != nil {
		return ctrl.Result{}, fmt.Errorf("deny %s: %w", csr.Name, err)
	}
	csrDecisions.WithLabelValues(csr.Spec.SignerName, "denied", d.Reason).Inc()
	log.FromContext(ctx).Info("certificate request denied", "signer", csr.Spec.SignerName, "requester", csr.Spec.Username, "reason", d.Reason, "detail", d.Message)
	if ns, name, ok := strings.Cut(csr.Annotations[wasmbedv1.AnnotationDevice], "/"); ok && csr.Spec.SignerName == wasmbedv1.DeviceSignerName {
		dev := &wasmbedv1.Device{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, dev); err == nil {
			r.Recorder.Eventf(dev, nil, corev1.EventTypeWarning, "CertificateDenied", "Sign", "%s: %s", d.Reason, truncate(d.Message, 512))
		}
	}
	return ctrl.Result{RequeueAfter: r.GracePeriod + time.Second}, nil
}

// fail marks an approved request that cannot be signed as Failed.
func (r *CertificateSigningRequestReconciler) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, msg string) error {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SigningFailed", Message: truncate(msg, 1024), LastUpdateTime: metav1.Now(),
	})
	if err := r.Status().Update(ctx, csr); err != nil {
		return fmt.Errorf("mark %s failed: %w", csr.Name, err)
	}
	csrDecisions.WithLabelValues(csr.Spec.SignerName, "failed", "SigningFailed").Inc()
	return nil
}

// cleanup deletes a decided request once its grace period is over.
func (r *CertificateSigningRequestReconciler) cleanup(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, now time.Time) (ctrl.Result, error) {
	var at time.Time
	for _, c := range csr.Status.Conditions {
		if t := c.LastUpdateTime.Time; t.After(at) {
			at = t
		}
	}
	if at.IsZero() {
		at = csr.CreationTimestamp.Time
	}
	// Stored times are whole seconds: count the grace period from the end
	// of the second.
	if wait := at.Add(time.Second + r.GracePeriod).Sub(now); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, csr))
}

// errNoCA reports a signer whose CA Secret is missing or unusable.
var errNoCA = errors.New("CA not configured")

// ca returns the CA of a signer, from its Secret in the system namespace.
func (r *CertificateSigningRequestReconciler) ca(ctx context.Context, signer string) (*pki.Authority, error) {
	r.mu.Lock()
	l, ok := r.cas[signer]
	r.mu.Unlock()
	if ok && r.now().Sub(l.loaded) < caReloadInterval {
		return l.ca, nil
	}
	name, kind := wasmbedv1.DeviceCASecret, certsign.DeviceCA
	if signer == wasmbedv1.GatewaySignerName {
		name, kind = wasmbedv1.GatewayCASecret, certsign.GatewayCA
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.SystemNamespace, Name: name}, s); err != nil {
		if ok {
			return l.ca, nil // keep signing with the CA we have
		}
		return nil, fmt.Errorf("%w: signer %s: secret %s/%s: %w", errNoCA, signer, r.SystemNamespace, name, err)
	}
	ca, err := certsign.LoadCA(kind, s.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: signer %s: %w", errNoCA, signer, err)
	}
	r.mu.Lock()
	if r.cas == nil {
		r.cas = map[string]loadedCA{}
	}
	r.cas[signer] = loadedCA{ca: ca, loaded: r.now()}
	r.mu.Unlock()
	return ca, nil
}

// SetupWithManager registers the reconciler for the requests of the Wasmbed
// signers.
func (r *CertificateSigningRequestReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("certificatesigningrequest").
		WithOptions(opts).
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			csr, ok := o.(*certificatesv1.CertificateSigningRequest)
			return ok && ours(csr)
		}))).
		Complete(r)
}
