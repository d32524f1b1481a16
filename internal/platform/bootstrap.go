package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/config/rbac"
	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/trust"
)

// Service accounts of the platform's components, in the system namespace.
const (
	controllerAccount = "wasmbed-controller"
	gatewayAccount    = "wasmbed-gateway"
	adminAccount      = "wasmbed-admin"
	fieldOwner        = "wasmbed-up"
)

// serviceAccountUser is the user name Kubernetes gives a service account.
func serviceAccountUser(name string) string {
	return "system:serviceaccount:" + wasmbedv1.DefaultSystemNamespace + ":" + name
}

// bootstrap prepares the cluster: the system namespace, the roles shipped in
// config/rbac with their service accounts, the CAs and the trust bundle,
// and the admin account of the HTTP API. It is idempotent: on a second start
// it changes nothing that is already right, and never replaces a CA.
func (p *Platform) bootstrap(ctx context.Context, c client.Client) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wasmbedv1.DefaultSystemNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("system namespace: %w", err)
	}
	if err := applyManifests(ctx, c, rbac.Files); err != nil {
		return fmt.Errorf("roles: %w", err)
	}
	for _, name := range []string{controllerAccount, gatewayAccount, adminAccount} {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: wasmbedv1.DefaultSystemNamespace, Name: name}}
		if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service account %s: %w", name, err)
		}
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "wasmbed-up-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "wasmbed-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: wasmbedv1.DefaultSystemNamespace, Name: adminAccount}},
	}
	if err := c.Create(ctx, binding); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("admin role binding: %w", err)
	}
	return p.ensureCAs(ctx, c)
}

// ensureCAs creates the root, gateway CA and device CA on first start: the
// root's key stays in the data directory (platform-pki), the intermediates
// go into the Secrets the controller signs with, and the public
// certificates into the trust ConfigMap.
func (p *Platform) ensureCAs(ctx context.Context, c client.Client) error {
	sysNS := wasmbedv1.DefaultSystemNamespace
	existing := &corev1.Secret{}
	err := c.Get(ctx, types.NamespacedName{Namespace: sysNS, Name: wasmbedv1.DeviceCASecret}, existing)
	switch {
	case err == nil:
		a, err := certsign.LoadCA(certsign.DeviceCA, existing.Data)
		if err != nil {
			return fmt.Errorf("device CA: %w", err)
		}
		gwSecret := &corev1.Secret{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: sysNS, Name: wasmbedv1.GatewayCASecret}, gwSecret); err != nil {
			return fmt.Errorf("gateway CA: %w", err)
		}
		g, err := certsign.LoadCA(certsign.GatewayCA, gwSecret.Data)
		if err != nil {
			return fmt.Errorf("gateway CA: %w", err)
		}
		a.GatewayCA = g.GatewayCA
		return p.publishTrust(ctx, c, a)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("device CA: %w", err)
	}
	dir := filepath.Join(p.opts.DataDir, "platform-pki")
	a, err := pki.LoadCA(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if a, err = pki.NewAuthority(pki.AuthorityOptions{}); err != nil {
			return err
		}
		if err := pki.SaveCA(dir, a, false); err != nil {
			return fmt.Errorf("save the platform CA: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("platform CA in %s: %w", dir, err)
	}
	for _, s := range []struct {
		name string
		kind certsign.Kind
	}{{wasmbedv1.DeviceCASecret, certsign.DeviceCA}, {wasmbedv1.GatewayCASecret, certsign.GatewayCA}} {
		data, err := certsign.SecretData(s.kind, a)
		if err != nil {
			return err
		}
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: s.name}, Type: corev1.SecretTypeTLS, Data: data}
		if err := c.Create(ctx, sec); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return p.publishTrust(ctx, c, a)
}

// publishTrust writes the trust ConfigMap from the authority's certificates
// and keeps the pins simulated devices use.
func (p *Platform) publishTrust(ctx context.Context, c client.Client, a *pki.Authority) error {
	b, err := trust.FromAuthority(a)
	if err != nil {
		return err
	}
	p.bundle = trustPins{root: b.Root, gatewayCA: b.GatewayCA, deviceCA: b.DeviceCA}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: wasmbedv1.DefaultSystemNamespace, Name: wasmbedv1.TrustConfigMap}}
	err = c.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	switch {
	case apierrors.IsNotFound(err):
		cm.Data = b.Data()
		return c.Create(ctx, cm)
	case err != nil:
		return err
	}
	if equalData(cm.Data, b.Data()) {
		return nil
	}
	cm.Data = b.Data()
	return c.Update(ctx, cm)
}

func equalData(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// adminToken issues a bearer token of the admin account, valid a day, for
// the HTTP API and the dashboard.
func adminToken(ctx context.Context, cfg *rest.Config) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(wasmbedv1.DefaultSystemNamespace).CreateToken(ctx, adminAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tr.Status.Token, nil
}

// applyManifests server-side applies every object of the YAML files in
// fsys, in file order.
func applyManifests(ctx context.Context, c client.Client, fsys fs.FS) error {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return err
	}
	more, err := fs.Glob(fsys, "*/*.yaml")
	if err != nil {
		return err
	}
	for _, name := range append(names, more...) {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		if filepath.Base(name) == "kustomization.yaml" {
			continue // kustomize's own file, not an object
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj unstructured.Unstructured
			if err := dec.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", name, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := c.Patch(ctx, &obj, client.Apply, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil { //nolint:staticcheck // unstructured apply
				return fmt.Errorf("%s: %s %s: %w", name, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}

// writeFileAtomic writes data to path through a temporary file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
