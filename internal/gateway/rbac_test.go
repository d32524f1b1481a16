package gateway_test

import (
	"net"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/trust"
)

// gatewayServiceAccount is the identity config/rbac gives the gateways.
const gatewayServiceAccount = "wasmbed-gateway"

// installRBAC creates what `kubectl apply -k config/rbac` creates: the
// roles, the service accounts, their bindings and the empty session-ticket
// Secret.
func installRBAC(t *testing.T) {
	t.Helper()
	sys := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wasmbedv1.DefaultSystemNamespace}}
	if err := env.Client.Create(t.Context(), sys); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "../../config/rbac")
	if err != nil {
		t.Fatalf("kustomize build config/rbac: %v", err)
	}
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(t.Context(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %s: %v", r.CurId(), err)
		}
	}
}

// TestGeneratedRBACSuffices runs a gateway as its service account, with only
// the roles config/rbac binds to it (the generated config/rbac/gateway and
// the HTTP API's), as it runs in a cluster: it reads the trust bundle and the
// signing key from their ConfigMaps, has its serving certificate signed
// through a certificate request, and takes devices through enrollment,
// connection, delivery and removal. The session-ticket Secret is the
// installation's, created without keys: the gateway fills it without any
// right to create Secrets.
func TestGeneratedRBACSuffices(t *testing.T) {
	installRBAC(t)
	p := newPlatform(t)
	p.sys = wasmbedv1.DefaultSystemNamespace
	bundle, err := trust.FromAuthority(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	ik, err := issuer.GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := &issuer.Public{SigningKey: p.signer.PublicKey(), IssuerKey: ik.PublicKey()}
	for name, data := range map[string]map[string]string{wasmbedv1.TrustConfigMap: bundle.Data(), wasmbedv1.IssuerConfigMap: pub.Data()} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.sys, Name: name}}
		if _, err := controllerutilCreateOrUpdate(t.Context(), cm, func() { cm.Data = data }); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + wasmbedv1.DefaultSystemNamespace + ":" + gatewayServiceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + wasmbedv1.DefaultSystemNamespace, "system:authenticated"},
	}
	name := p.ns + "-gw" // the harness signs the serving certificates of this platform's gateways
	gw := p.startGateway(name, func(o *gateway.Options) {
		o.Config = cfg
		o.Trust = gateway.Trust{}
		o.ServingIPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	})
	p.openPairing(10*time.Minute, nil)
	p.runFleet(2, "esp32=1,hifive1=1", gw)
	devs := p.waitDevices("two devices enrolled and connected", 2, func(d *wasmbedv1.Device) bool {
		return d.Status.Phase == wasmbedv1.DevicePhaseConnected && d.Status.Gateway == name
	})

	module := apps.MustLoad(apps.Blinky)
	d := &devs[0]
	da := p.issue(d, "blinky", "1.0", module, 1, wasmbedv1.RunStateRunning)
	p.waitDA(da.Name, "blinky running on "+d.Name, func(da *wasmbedv1.DeviceApplication) bool {
		return da.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning && da.Status.Gateway == name
	})
	if err := env.Client.Delete(t.Context(), da); err != nil {
		t.Fatal(err)
	}
	p.waitDA(da.Name, "the DeviceApplication removed", func(da *wasmbedv1.DeviceApplication) bool { return da == nil })

	ctx := t.Context()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: p.sys, Name: wasmbedv1.TicketKeysSecret}, sec); err != nil {
		t.Fatal(err)
	}
	if len(sec.Data[gateway.TicketKeysSecretKey]) == 0 {
		t.Error("the gateway left the installation's session-ticket Secret without keys")
	}
	lease := &coordinationv1.Lease{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: p.sys, Name: name}, lease); err != nil {
		t.Errorf("the gateway's Lease: %v", err)
	}
}
