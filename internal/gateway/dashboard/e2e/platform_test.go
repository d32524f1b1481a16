package e2e

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/controller"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/sim"
)

var env *controlplanetest.Env

func TestMain(m *testing.M) {
	if modcheck.IsChild() {
		os.Exit(modcheck.RunChild(context.Background()))
	}
	os.Exit(controlplanetest.Run(m, &env))
}

// platform is what the dashboard runs against: a controller, one gateway
// and a simulated fleet, with service accounts bound to the API's roles.
type platform struct {
	ns, sys string
	// url is the gateway's HTTP listener.
	url string
	// tokens of the service accounts viewer, operator, admin and nobody.
	tokens map[string]string
	fleet  *sim.Fleet
}

// startPlatform starts everything on the test's control plane and waits
// until devices devices are Connected. Everything stops when the test ends.
func startPlatform(t *testing.T, devices int) *platform {
	t.Helper()
	ctx := t.Context()
	p := &platform{ns: env.Namespace(t), tokens: map[string]string{}}
	p.sys = p.ns + "-sys"
	mustCreate(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.sys}})

	// The platform's keys: the CAs the controller signs with, and the
	// artifact-signing key, created here so the gateway can be given its
	// public half.
	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, kind := range map[string]certsign.Kind{wasmbedv1.DeviceCASecret: certsign.DeviceCA, wasmbedv1.GatewayCASecret: certsign.GatewayCA} {
		data, err := certsign.SecretData(kind, ca)
		if err != nil {
			t.Fatal(err)
		}
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: p.sys, Name: name}, Type: corev1.SecretTypeTLS, Data: data})
	}
	signKey, err := issuer.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := issuer.EncodeSigningKey(signKey)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: p.sys, Name: wasmbedv1.SigningKeySecret},
		Data: map[string][]byte{wasmbedv1.SigningKeySecretKey: keyPEM}})
	win, err := pairing.Open(time.Now(), time.Hour, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: p.sys, Name: wasmbedv1.PairingConfigMap}, Data: win.Data()})

	p.issueTokens(t)

	// The controller. The gateway below uses the admin's credentials, whose
	// group is system:masters: its certificate requests are considered.
	mgr, err := controller.New(controller.Options{
		RESTConfig: env.Config, SystemNamespace: p.sys, Namespaces: []string{p.ns, p.sys},
		MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true,
		GatewayGroups: []string{"system:masters"}, StatusInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "controller", mgr.Start)

	// The gateway, serving the API and the dashboard on a loopback port.
	gwCert, err := ca.IssueGateway(pki.GatewayOptions{Name: "gw-0", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	tlsCert, err := gwCert.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	opts := gateway.Options{
		Name: "gw-0", Config: env.Config, SystemNamespace: p.sys, DeviceNamespace: p.ns,
		Trust: gateway.Trust{Root: ca.Root.Cert, DeviceCA: ca.DeviceCA.Cert, Certificate: tlsCert,
			SigningKeys: []ed25519.PublicKey{signKey.Public().(ed25519.PublicKey)}},
		SessionListener: listen(), EnrollListener: listen(), HTTPListener: listen(),
		HeartbeatInterval: time.Second, LastSeenPeriod: 5 * time.Second,
		Logger: logger(t, "gateway"),
	}
	sessAddr, enrollAddr := opts.SessionListener.Addr().String(), opts.EnrollListener.Addr().String()
	p.url = "http://" + opts.HTTPListener.Addr().String()
	gw, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	run(t, "gateway", gw.Run)
	waitFor(t, time.Minute, "the gateway is ready", func() (bool, string) {
		err := gw.Ready()
		return err == nil, fmt.Sprint(err)
	})

	// The fleet enrolls through the open pairing window.
	mix, err := sim.ParseMix("esp32=2,hifive1=1")
	if err != nil {
		t.Fatal(err)
	}
	p.fleet, err = sim.New(ctx, sim.Options{
		Devices: devices, Gateways: []string{sessAddr}, EnrollGateways: []string{enrollAddr},
		Root: ca.Root.Cert, GatewayCA: ca.GatewayCA.Cert, DeviceCA: ca.DeviceCA.Cert, Mix: mix,
		HeartbeatInterval: time.Second, MetricsInterval: time.Second,
		Backoff:         link.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		SummaryInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "fleet", func(ctx context.Context) error { p.fleet.Run(ctx); return nil })
	waitFor(t, 2*time.Minute, fmt.Sprintf("%d devices connected", devices), func() (bool, string) {
		var list wasmbedv1.DeviceList
		if err := env.Client.List(ctx, &list, client.InNamespace(p.ns)); err != nil {
			return false, err.Error()
		}
		n := 0
		var phases []string
		for _, d := range list.Items {
			if d.Status.Phase == wasmbedv1.DevicePhaseConnected {
				n++
			}
			phases = append(phases, d.Name+"="+string(d.Status.Phase))
		}
		return n == devices, strings.Join(phases, " ")
	})
	return p
}

// issueTokens creates a service account per role, binds it to the role's
// ClusterRole from config/rbac, and issues its token.
func (p *platform) issueTokens(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "config", "rbac", "http-api-roles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		if role.Name == "" {
			continue
		}
		if err := env.Client.Create(ctx, &role); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"viewer", "operator", "admin", "nobody"} {
		mustCreate(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: r, Namespace: p.ns}})
		if r != "nobody" {
			mustCreate(t, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: p.ns + "-" + r},
				Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: r, Namespace: p.ns}},
				RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "wasmbed-" + r}})
		}
		seconds := int64(3600)
		tr, err := cs.CoreV1().ServiceAccounts(p.ns).CreateToken(ctx, r, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.tokens[r] = tr.Status.Token
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(t.Context(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// run runs a component until the test ends, then stops it and waits.
func run(t *testing.T, name string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s stopped with %v", name, err)
		}
	})
}

// waitFor polls cond until it holds or timeout passes; the timeout bounds
// the test, it measures nothing.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last state: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func logger(_ *testing.T, name string) *slog.Logger {
	if os.Getenv("WASMBED_TEST_VERBOSE") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", name)
}
