package controller

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fixture"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// controllerUser is the identity config/rbac binds the roles to.
const controllerUser = "system:serviceaccount:wasmbed-system:wasmbed-controller"

// applyGeneratedRBAC creates config/rbac/role.yaml's roles bound to the
// controller's service account.
func applyGeneratedRBAC(t *testing.T) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "wasmbed-controller", Namespace: wasmbedv1.DefaultSystemNamespace}}
	ref := func(kind string) rbacv1.RoleRef {
		return rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: kind, Name: "wasmbed-controller"}
	}
	var objs []client.Object
	for doc := range bytes.SplitSeq(raw, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ClusterRole":
			r := &rbacv1.ClusterRole{}
			if err := yaml.Unmarshal(doc, r); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, r, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: r.Name}, RoleRef: ref("ClusterRole"), Subjects: subject})
		case "Role":
			r := &rbacv1.Role{}
			if err := yaml.Unmarshal(doc, r); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, r, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: r.Namespace}, RoleRef: ref("Role"), Subjects: subject})
		}
	}
	if len(objs) != 4 {
		t.Fatalf("role.yaml: got %d objects to bind, want a ClusterRole and a Role", len(objs)/2)
	}
	for _, o := range objs {
		if err := env.Client.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %T: %v", o, err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}
}

// TestGeneratedRBACSuffices runs the controller as its service account,
// with only the generated roles, through a rollout and a certificate
// signing: the markers grant what the controller uses.
func TestGeneratedRBACSuffices(t *testing.T) {
	sys := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wasmbedv1.DefaultSystemNamespace}}
	if err := env.Client.Create(t.Context(), sys); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	applyGeneratedRBAC(t)
	allowCSRs(t, "rbac-test-csr")
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: controllerUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + wasmbedv1.DefaultSystemNamespace, "system:authenticated"}}
	tb := newTestbedIn(t, env.Namespace(t), wasmbedv1.DefaultSystemNamespace, func(o *Options) {
		o.RESTConfig = cfg
		o.GatewayUsers = []string{gatewayUser}
		o.LeaderElection = true
		o.LeaderElectionID = "wasmbed-controller-rbac-test"
	})
	g := newGateway(tb)
	g.addDevice("d1")
	tb.create(tb.newApp("blinky", blinky, "d1"))
	g.until(wait, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))

	tb.caSecrets()
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	enc, _ := pki.EncodePublicKey(key.Public())
	tb.create(fixture.Device("dev-1", fixture.InNamespace(tb.ns), fixture.WithPublicKey(enc)))
	csr := tb.outcome(tb.request(impersonating(t, gatewayUser), wasmbedv1.DeviceSignerName, deviceCSRFor(t, key, "dev-1"),
		[]certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		map[string]string{wasmbedv1.AnnotationDevice: tb.ns + "/dev-1", wasmbedv1.AnnotationPurpose: wasmbedv1.PurposeRenew}))
	if len(csr.Status.Certificate) == 0 {
		t.Fatalf("not signed: %+v", csr.Status.Conditions)
	}

	if err := env.Client.Delete(t.Context(), tb.application(t.Context(), "blinky")); err != nil {
		t.Fatal(err)
	}
	g.until(wait, func(ctx context.Context) (bool, string) {
		return tb.application(ctx, "blinky") == nil, "the Application is still there"
	})
}
