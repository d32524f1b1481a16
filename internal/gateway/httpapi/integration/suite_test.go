package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
	"github.com/wasmbed/wasmbed/internal/gateway/httpapi"
)

var env *controlplanetest.Env

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run is controlplanetest.Run with one step more: the suite's cache and
// server stop before the control plane, whose shutdown otherwise waits for
// their watches.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wasmbed-httpapi-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("WASMBED_TEST_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	env, err = controlplanetest.Start(ctx, dir, logger)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start control plane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "control plane ready in %s\n", env.ControlPlane.StartupDuration().Round(time.Millisecond))
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	if err := env.ControlPlane.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stop control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// systemNamespace holds the pairing window in these tests.
const systemNamespace = "wasmbed-system"

// Service accounts, in usersNamespace, bound to the roles.
const (
	usersNamespace = "wasmbed-users"
	saViewer       = "viewer"
	saOperator     = "operator"
	saAdmin        = "admin"
	saNobody       = "nobody"
	// saLabViewer is a viewer in the namespace "lab" only (a RoleBinding).
	saLabViewer  = "lab-viewer"
	labNamespace = "lab"
)

// suite is what every test shares: one cache, one clientset, the tokens of
// the service accounts and one running API.
type suite struct {
	clientset kubernetes.Interface
	cache     cache.Cache
	tokens    map[string]string
	fleet     *fakeFleet
	server    *httptest.Server
	stop      func()
}

var (
	setupOnce sync.Once
	shared    *suite
	setupErr  error
)

// setup starts what the tests share, once.
func setup(t *testing.T) *suite {
	t.Helper()
	setupOnce.Do(func() { shared, setupErr = newSuite() })
	if setupErr != nil {
		t.Fatalf("setup: %v", setupErr)
	}
	return shared
}

func newSuite() (_ *suite, retErr error) {
	// The suite lives until run stops it.
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		if retErr != nil {
			cancel()
		}
	}()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	s := &suite{clientset: cs, tokens: map[string]string{}, fleet: &fakeFleet{}, stop: cancel}
	for _, ns := range []string{systemNamespace, usersNamespace, labNamespace} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	if err := applyRoles(ctx); err != nil {
		return nil, err
	}
	bindings := map[string]string{saViewer: "wasmbed-viewer", saOperator: "wasmbed-operator", saAdmin: "wasmbed-admin"}
	for _, sa := range []string{saViewer, saOperator, saAdmin, saNobody, saLabViewer} {
		if err := env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa, Namespace: usersNamespace}}); err != nil {
			return nil, err
		}
		subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: usersNamespace}}
		if role, ok := bindings[sa]; ok {
			crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-" + sa}, Subjects: subject,
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}}
			if err := env.Client.Create(ctx, crb); err != nil {
				return nil, err
			}
		}
		tok, err := issueToken(ctx, cs, sa, nil)
		if err != nil {
			return nil, err
		}
		s.tokens[sa] = tok
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "test-lab-viewer", Namespace: labNamespace},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: saLabViewer, Namespace: usersNamespace}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "wasmbed-viewer"}}
	if err := env.Client.Create(ctx, rb); err != nil {
		return nil, err
	}

	// The gateway's cache: the fleet everywhere, ConfigMaps of the system
	// namespace only.
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, ByObject: map[client.Object]cache.ByObject{
		&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{systemNamespace: {}}},
	}})
	if err != nil {
		return nil, err
	}
	cacheDone := make(chan struct{})
	go func() {
		defer close(cacheDone)
		_ = c.Start(ctx)
	}()
	s.stop = func() {
		if s.server != nil {
			s.server.CloseClientConnections()
			s.server.Close()
		}
		cancel()
		<-cacheDone
	}
	for _, obj := range []client.Object{&wasmbedv1.Device{}, &wasmbedv1.Application{}, &wasmbedv1.DeviceApplication{}, &corev1.ConfigMap{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			return nil, err
		}
	}
	syncCtx, cancelSync := context.WithTimeout(ctx, time.Minute)
	defer cancelSync()
	if !c.WaitForCacheSync(syncCtx) {
		return nil, errors.New("cache did not sync")
	}
	s.cache = c
	h, err := newHandler(s, httpapi.DelegatingAuthOptions{Client: cs})
	if err != nil {
		return nil, err
	}
	s.server = httptest.NewServer(h)
	return s, nil
}

func newHandler(s *suite, auth httpapi.DelegatingAuthOptions) (http.Handler, error) {
	authn, authz, err := httpapi.NewDelegatingAuth(auth)
	if err != nil {
		return nil, err
	}
	return httpapi.New(httpapi.Options{
		Reader: s.cache, Writer: env.Client, Informers: s.cache, Fleet: s.fleet, Events: env.Client,
		Authenticator: authn, Authorizer: authz,
		SystemNamespace: systemNamespace, DefaultNamespace: "default",
		Registerer: prometheus.NewRegistry(),
	})
}

// applyRoles creates the ClusterRoles shipped in config/rbac.
func applyRoles(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "config", "rbac", "http-api-roles.yaml"))
	if err != nil {
		return err
	}
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
			return err
		}
		if role.Name == "" {
			continue // the leading comment
		}
		if err := env.Client.Create(ctx, &role); err != nil {
			return err
		}
	}
	return nil
}

func issueToken(ctx context.Context, cs kubernetes.Interface, sa string, audiences []string) (string, error) {
	seconds := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(usersNamespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &seconds, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

type fakeFleet struct {
	mu    sync.Mutex
	ready error
}

func (f *fakeFleet) DeviceMetrics(string, string) (httpapi.DeviceMetrics, bool) {
	return httpapi.DeviceMetrics{}, false
}

func (f *fakeFleet) Ready() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeFleet) setReady(err error) {
	f.mu.Lock()
	f.ready = err
	f.mu.Unlock()
}

type result struct {
	status int
	header http.Header
	body   []byte
}

// call sends a request to the API over HTTP.
func (s *suite) call(t *testing.T, method, path, token string, body []byte, contentType string) result {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.server.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r result) problem(t *testing.T) httpapi.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d, Content-Type %q, want a problem: %s", r.status, ct, r.body)
	}
	var p httpapi.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r result) decode(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatal(err)
	}
}

func jsonBody(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond every 20ms for at most 20s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 20*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// cached waits until the cache holds obj's current version.
func (s *suite) cached(t *testing.T, obj client.Object) {
	t.Helper()
	want := obj.GetResourceVersion()
	eventually(t, "cache sees "+obj.GetName(), func() bool {
		got := obj.DeepCopyObject().(client.Object)
		err := s.cache.Get(t.Context(), client.ObjectKeyFromObject(obj), got)
		return err == nil && got.GetResourceVersion() == want
	})
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
