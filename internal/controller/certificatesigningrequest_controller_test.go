package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/fixture"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
)

const (
	gatewayUser  = "system:serviceaccount:wasmbed-system:wasmbed-gateway"
	intruderUser = "mallory"
)

// impersonating returns a client that acts as user.
func impersonating(t *testing.T, user string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// allowCSRs lets the test users create and read certificate requests, as
// the gateways' role does.
func allowCSRs(t *testing.T, name string) {
	t.Helper()
	ctx := t.Context()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get"},
	}}}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects: []rbacv1.Subject{
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: gatewayUser},
			{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: intruderUser},
		},
	}
	for _, o := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), binding)
		_ = env.Client.Delete(context.Background(), role)
	})
}

// caSecrets writes the device CA and the gateway CA of a new authority into
// the system namespace.
func (tb *testbed) caSecrets() *pki.Authority {
	tb.t.Helper()
	a, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		tb.t.Fatal(err)
	}
	for name, kind := range map[string]certsign.Kind{wasmbedv1.DeviceCASecret: certsign.DeviceCA, wasmbedv1.GatewayCASecret: certsign.GatewayCA} {
		data, err := certsign.SecretData(kind, a)
		if err != nil {
			tb.t.Fatal(err)
		}
		tb.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tb.sys, Name: name}, Type: corev1.SecretTypeTLS, Data: data})
	}
	return a
}

// setPairing opens (or closes) the pairing window.
func (tb *testbed) setPairing(open bool) {
	tb.t.Helper()
	w := pairing.Window{}
	if open {
		var err error
		if w, err = pairing.Open(time.Now(), time.Hour, "test", nil); err != nil {
			tb.t.Fatal(err)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: tb.sys, Name: wasmbedv1.PairingConfigMap}}
	err := env.Client.Get(tb.t.Context(), client.ObjectKeyFromObject(cm), cm)
	cm.Data = w.Data()
	switch {
	case apierrors.IsNotFound(err):
		err = env.Client.Create(tb.t.Context(), cm)
	case err == nil:
		err = env.Client.Update(tb.t.Context(), cm)
	}
	if err != nil {
		tb.t.Fatal(err)
	}
}

func csrPEM(t *testing.T, key ed25519.PrivateKey, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCSRPEM(der)
}

func deviceCSRFor(t *testing.T, key ed25519.PrivateKey, id string) []byte {
	return csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}, URIs: []*url.URL{pki.DeviceURI(id)}})
}

var csrSeq int

// request creates a certificate request as user and returns its name.
func (tb *testbed) request(c client.Client, signer string, pem []byte, usages []certificatesv1.KeyUsage, annotations map[string]string) string {
	tb.t.Helper()
	csrSeq++
	csr := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", tb.ns, csrSeq), Annotations: annotations},
		Spec:       certificatesv1.CertificateSigningRequestSpec{SignerName: signer, Request: pem, Usages: usages},
	}
	if err := c.Create(tb.t.Context(), csr); err != nil {
		tb.t.Fatalf("create certificate request: %v", err)
	}
	return csr.Name
}

// outcome waits for a request to be decided and returns it.
func (tb *testbed) outcome(name string) *certificatesv1.CertificateSigningRequest {
	tb.t.Helper()
	var csr *certificatesv1.CertificateSigningRequest
	g := &gateway{tb: tb}
	g.until(wait, func(ctx context.Context) (bool, string) {
		csr = &certificatesv1.CertificateSigningRequest{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, csr); err != nil {
			return false, err.Error()
		}
		approved, denied, failed := decided(csr)
		return denied || failed || approved && len(csr.Status.Certificate) > 0, fmt.Sprintf("request %s undecided: %+v", name, csr.Status)
	})
	return csr
}

func denialReason(csr *certificatesv1.CertificateSigningRequest) string {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateDenied {
			return c.Reason
		}
	}
	return ""
}

// TestCertificateSigning: the controller signs a gateway's device request
// that matches its Device inside the pairing window, and the gateways' own
// server certificate requests; it denies, with the check that refused, a
// closed window, a key that is not the Device's, a revoked Device and a
// requester that is not a gateway; it deletes requests after the grace
// period.
func TestCertificateSigning(t *testing.T) {
	tb := newTestbed(t, func(o *Options) {
		o.GatewayUsers = []string{gatewayUser}
		o.GatewayDNSNames = []string{"gw-0.local", "gw.wasmbed.svc"}
	})
	allowCSRs(t, tb.ns+"-csr")
	authority := tb.caSecrets()
	ctx := t.Context()
	gw, intruder := impersonating(t, gatewayUser), impersonating(t, intruderUser)

	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	enc, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	tb.create(fixture.Device("dev-1", fixture.InNamespace(tb.ns), fixture.WithPublicKey(enc)))
	revoked := fixture.Device("dev-2", fixture.InNamespace(tb.ns), fixture.WithPublicKey(enc))
	revoked.Spec.Revoked = true
	tb.create(revoked)
	clientUsages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}
	annotations := func(dev, purpose string) map[string]string {
		return map[string]string{wasmbedv1.AnnotationDevice: tb.ns + "/" + dev, wasmbedv1.AnnotationPurpose: purpose}
	}

	// Inside the window: signed, and the chain verifies as dev-1's. An
	// enrollment request names nothing (the device has no id yet); a
	// renewal names the device.
	tb.setPairing(true)
	v, err := authority.DeviceVerifier(nil)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for _, tc := range []struct {
		pem     []byte
		purpose string
	}{
		{csrPEM(t, key, &x509.CertificateRequest{}), wasmbedv1.PurposeEnroll},
		{deviceCSRFor(t, key, "dev-1"), wasmbedv1.PurposeRenew},
	} {
		name = tb.request(gw, wasmbedv1.DeviceSignerName, tc.pem, clientUsages, annotations("dev-1", tc.purpose))
		csr := tb.outcome(name)
		chain, err := pki.ParseCertificatesPEM(csr.Status.Certificate)
		if err != nil {
			t.Fatalf("%s: certificate of %s: %v (%+v)", tc.purpose, name, err, csr.Status.Conditions)
		}
		id, err := v.VerifyDevice(ctx, chain)
		if err != nil || id.DeviceID != "dev-1" || id.EncodedKey != enc {
			t.Fatalf("%s: device certificate: identity %+v, %v; want dev-1 with its key", tc.purpose, id, err)
		}
	}

	other := ed25519.NewKeyFromSeed(append([]byte{1}, make([]byte, 31)...))
	for _, tc := range []struct {
		name   string
		window bool
		c      client.Client
		pem    []byte
		ann    map[string]string
		want   string
	}{
		{"window closed", false, gw, deviceCSRFor(t, key, "dev-1"), annotations("dev-1", wasmbedv1.PurposeEnroll), certsign.ReasonPairingClosed},
		{"key mismatch", true, gw, deviceCSRFor(t, other, "dev-1"), annotations("dev-1", wasmbedv1.PurposeEnroll), certsign.ReasonKeyMismatch},
		{"revoked device", true, gw, deviceCSRFor(t, key, "dev-1"), annotations("dev-2", wasmbedv1.PurposeRenew), certsign.ReasonDeviceRevoked},
		{"not a gateway", true, intruder, deviceCSRFor(t, key, "dev-1"), annotations("dev-1", wasmbedv1.PurposeRenew), certsign.ReasonNotGateway},
		{"no such device", true, gw, deviceCSRFor(t, key, "dev-1"), annotations("dev-9", wasmbedv1.PurposeRenew), certsign.ReasonDeviceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb.setPairing(tc.window)
			csr := tb.outcome(tb.request(tc.c, wasmbedv1.DeviceSignerName, tc.pem, clientUsages, tc.ann))
			if got := denialReason(csr); got != tc.want {
				t.Errorf("got denial %q (conditions %+v), want %s", got, csr.Status.Conditions, tc.want)
			}
			if len(csr.Status.Certificate) != 0 {
				t.Error("a denied request got a certificate")
			}
		})
	}
	(&gateway{tb: tb}).until(wait, tb.hasEvent("dev-1", "CertificateDenied"))

	// A gateway's server certificate, from the gateway CA.
	gwKey := ed25519.NewKeyFromSeed(append([]byte{2}, make([]byte, 31)...))
	gwName := tb.request(gw, wasmbedv1.GatewaySignerName, csrPEM(t, gwKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gw-0"}, DNSNames: []string{"gw-0.local"}}),
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}, nil)
	gcsr := tb.outcome(gwName)
	gchain, err := pki.ParseCertificatesPEM(gcsr.Status.Certificate)
	if err != nil {
		t.Fatalf("gateway certificate: %v (%+v)", err, gcsr.Status.Conditions)
	}
	gv, err := authority.GatewayVerifier()
	if err != nil {
		t.Fatal(err)
	}
	if err := gv.VerifyGateway(ctx, gchain, "gw-0.local"); err != nil {
		t.Errorf("gateway certificate: %v", err)
	}
	if life := gchain[0].NotAfter.Sub(gchain[0].NotBefore); life > certsign.DefaultGatewayLifetime+pki.ClockSkew {
		t.Errorf("gateway certificate lives %s, want at most %s", life, certsign.DefaultGatewayLifetime)
	}

	// Decided requests go after the grace period.
	(&gateway{tb: tb}).until(wait, func(ctx context.Context) (bool, string) {
		err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &certificatesv1.CertificateSigningRequest{})
		return apierrors.IsNotFound(err), fmt.Sprintf("request %s: %v", name, err)
	})
}

// cacheWithoutDevices is a client whose reads of Devices find nothing, as
// a cache that has not seen a new Device yet.
type cacheWithoutDevices struct{ client.Client }

func (c cacheWithoutDevices) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*wasmbedv1.Device); ok {
		return apierrors.NewNotFound(wasmbedv1.GroupVersion.WithResource("devices").GroupResource(), key.Name)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestSigningReadsDevicesTheCacheMisses: the request of a device whose
// Device the cache has not seen yet (created by the gateway a moment
// before) is signed after a read of the stored Device, not denied as
// DeviceNotFound; a Device stored nowhere is still denied.
func TestSigningReadsDevicesTheCacheMisses(t *testing.T) {
	ns := env.Namespace(t)
	key := ed25519.NewKeyFromSeed(append([]byte{7}, make([]byte, 31)...))
	enc, err := pki.EncodePublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(t.Context(), fixture.Device("new-1", fixture.InNamespace(ns), fixture.WithPublicKey(enc))); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := &CertificateSigningRequestReconciler{Client: cacheWithoutDevices{env.Client}, APIReader: env.Client,
		Policy: certsign.Policy{GatewayUsers: []string{gatewayUser}}}
	for _, tc := range []struct {
		device string
		denial string
	}{
		{"new-1", ""},
		{"nowhere", certsign.ReasonDeviceNotFound},
	} {
		csr := &certificatesv1.CertificateSigningRequest{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				wasmbedv1.AnnotationDevice: ns + "/" + tc.device, wasmbedv1.AnnotationPurpose: wasmbedv1.PurposeRenew}},
			Spec: certificatesv1.CertificateSigningRequestSpec{
				SignerName: wasmbedv1.DeviceSignerName, Request: deviceCSRFor(t, key, tc.device), Username: gatewayUser,
				Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
			},
		}
		pemChain, denial, err := r.decide(t.Context(), ca, csr, true, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", tc.device, err)
		}
		switch {
		case tc.denial == "" && (denial != nil || len(pemChain) == 0):
			t.Errorf("%s, stored but not cached: denied %+v, want a certificate (APIReader fallback)", tc.device, denial)
		case tc.denial != "" && (denial == nil || denial.Reason != tc.denial):
			t.Errorf("%s: denial %+v, want %s", tc.device, denial, tc.denial)
		}
	}
}
