// Package controlplanetest starts one real embedded control plane per test
// binary, from TestMain, and hands tests a client for it:
//
//	var env *controlplanetest.Env
//
//	func TestMain(m *testing.M) { os.Exit(controlplanetest.Run(m, &env)) }
//
//	func TestSomething(t *testing.T) {
//		ns := env.Namespace(t)
//		err := env.Client.Create(t.Context(), obj)
//	}
package controlplanetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane"
)

// Env is a running control plane shared by the tests of one package.
type Env struct {
	// ControlPlane is the running etcd and kube-apiserver.
	ControlPlane *controlplane.ControlPlane
	// Config is an admin REST configuration.
	Config *rest.Config
	// Scheme knows the core Kubernetes types and the Wasmbed API.
	Scheme *runtime.Scheme
	// Client is an uncached admin client: every call reaches the API server.
	Client client.Client
}

// NewScheme returns a scheme with the Kubernetes core types and the Wasmbed API.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add client-go types: %w", err)
	}
	if err := wasmbedv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("add wasmbed types: %w", err)
	}
	return scheme, nil
}

// Start starts a control plane in dataDir and builds an Env around it.
// controller-runtime's logs go to logger too.
func Start(ctx context.Context, dataDir string, logger *slog.Logger) (*Env, error) {
	ctrllog.SetLogger(logr.FromSlogHandler(logger.Handler()))
	cp, err := controlplane.Start(ctx, controlplane.Options{DataDir: dataDir, Logger: logger})
	if err != nil {
		return nil, err
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, errors.Join(err, cp.Stop())
	}
	cfg := cp.RESTConfig()
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("new client: %w", err), cp.Stop())
	}
	return &Env{ControlPlane: cp, Config: cfg, Scheme: scheme, Client: c}, nil
}

// Run starts a control plane in a temporary directory, stores it in *env,
// runs the tests and stops it. It returns the exit code for os.Exit.
// Set WASMBED_TEST_VERBOSE=1 to see the components' warnings.
func Run(m *testing.M, env **Env) int {
	dir, err := os.MkdirTemp("", "wasmbed-controlplane-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplanetest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("WASMBED_TEST_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	// Called from TestMain, before any test: the root of the package's tests.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	e, err := Start(ctx, dir, logger)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplanetest: start control plane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "controlplanetest: control plane ready in %s\n", e.ControlPlane.StartupDuration().Round(time.Millisecond))
	*env = e
	code := m.Run()
	if err := e.ControlPlane.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "controlplanetest: stop control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Namespace creates a namespace named after the test and deletes it when the
// test ends, so that tests sharing the control plane do not see each other.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	ctx := t.Context()
	if err := e.Client.Create(ctx, ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		// The test's context has ended by the time cleanups run.
		if err := e.Client.Delete(context.WithoutCancel(ctx), ns); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}
