package controlplane_test

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
	"github.com/wasmbed/wasmbed/internal/fixture"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestRestartKeepsResources stops the control plane and starts it again on
// the same data directory: objects, credentials and the kubeconfig survive.
func TestRestartKeepsResources(t *testing.T) {
	dir := t.TempDir()
	env, err := controlplanetest.Start(t.Context(), dir, quietLogger())
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	t.Logf("first start: %s", env.ControlPlane.StartupDuration())
	dev := fixture.Device("persistent", fixture.WithType(wasmbedv1.DeviceTypeHiFive1))
	app := fixture.Application("kept", fixture.Targeting("persistent"))
	for _, obj := range []client.Object{dev, app} {
		if err := env.Client.Create(t.Context(), obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
	}
	caBefore, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.ControlPlane.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	env, err = controlplanetest.Start(t.Context(), dir, quietLogger())
	if err != nil {
		t.Fatalf("second start on the same data directory: %v", err)
	}
	defer env.ControlPlane.Stop()
	t.Logf("restart: %s", env.ControlPlane.StartupDuration())

	got := &wasmbedv1.Device{}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(dev), got); err != nil {
		t.Fatalf("device after restart: %v", err)
	}
	if got.Spec.DeviceType != wasmbedv1.DeviceTypeHiFive1 || got.Spec.PublicKey != dev.Spec.PublicKey {
		t.Errorf("device after restart: got %+v, want the spec that was created", got.Spec)
	}
	if err := env.Client.Get(t.Context(), client.ObjectKeyFromObject(app), &wasmbedv1.Application{}); err != nil {
		t.Fatalf("application after restart: %v", err)
	}
	caAfter, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(caBefore) != string(caAfter) {
		t.Error("CA certificate changed across restart: kubeconfigs handed out before would stop working")
	}

	// The kubeconfig written in the data directory reaches the new server.
	cfg, err := clientcmd.BuildConfigFromFlags("", env.ControlPlane.KubeconfigPath())
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatalf("client from kubeconfig: %v", err)
	}
	err = c.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: "missing"}, &wasmbedv1.Device{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("get through kubeconfig: got %v, want NotFound", err)
	}
}

func TestSecondControlPlaneOnSameDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	cp, err := controlplane.Start(t.Context(), controlplane.Options{DataDir: dir, Logger: quietLogger(), SkipCRDs: true})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer cp.Stop()
	_, err = controlplane.Start(t.Context(), controlplane.Options{DataDir: dir, Logger: quietLogger()})
	if !errors.Is(err, controlplane.ErrDataDirLocked) {
		t.Fatalf("second start: got %v, want ErrDataDirLocked", err)
	}
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = controlplane.Start(t.Context(), controlplane.Options{DataDir: t.TempDir(), APIPort: port, Logger: quietLogger()})
	var inUse *controlplane.PortInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("start on a taken port: got %v, want *PortInUseError", err)
	}
	if inUse.Address != l.Addr().String() {
		t.Errorf("PortInUseError.Address: got %q, want %q", inUse.Address, l.Addr().String())
	}
}

func TestStartRequiresDataDir(t *testing.T) {
	if _, err := controlplane.Start(t.Context(), controlplane.Options{}); err == nil {
		t.Fatal("start without a data directory: got nil error")
	}
}

func TestLoadCRDs(t *testing.T) {
	crds, err := controlplane.LoadCRDs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range crds {
		got[c.Name] = true
	}
	for _, want := range []string{"devices.wasmbed.github.io", "applications.wasmbed.github.io"} {
		if !got[want] {
			t.Errorf("embedded CRDs: %s missing (have %v)", want, got)
		}
	}
}

// BenchmarkStart measures a cold start on an empty data directory: etcd,
// kube-apiserver, credentials, readiness and CRDs established.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		cp, err := controlplane.Start(b.Context(), controlplane.Options{DataDir: b.TempDir(), Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(cp.StartupDuration().Seconds(), "startup-s")
		if err := cp.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestClientConfigIdentity checks that a client configuration from
// ClientConfig authenticates as the user it names, and has only the
// permissions RBAC gives that user: none here.
func TestClientConfigIdentity(t *testing.T) {
	env, err := controlplanetest.Start(t.Context(), t.TempDir(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.ControlPlane.Stop() })
	cfg, err := env.ControlPlane.ClientConfig("system:serviceaccount:wasmbed-system:someone", "wasmbed:test")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := review.Status.UserInfo; u.Username != "system:serviceaccount:wasmbed-system:someone" || !slices.Contains(u.Groups, "wasmbed:test") {
		t.Errorf("authenticated as %+v, want the user and group asked for", u)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.List(t.Context(), &wasmbedv1.DeviceList{}); !apierrors.IsForbidden(err) {
		t.Errorf("list devices without RBAC: got %v, want Forbidden", err)
	}
}

// TestStopWithOpenWatch stops the control plane while a client watches, as
// the controller and the gateways always do, and starts it again on the
// same data directory and port: Stop succeeds, the watch ends, and the port
// is free for the restart.
func TestStopWithOpenWatch(t *testing.T) {
	dir := t.TempDir()
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := controlplane.Options{DataDir: dir, APIPort: port, Logger: quietLogger(), SkipCRDs: true}
	cp, err := controlplane.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("default").Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop with a watch open: %v", err)
	}
	for range w.ResultChan() { // drains until the server ends the watch
	}
	cp, err = controlplane.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start again on port %d: %v", port, err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
}
