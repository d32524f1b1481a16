package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/platform"
	"github.com/wasmbed/wasmbed/internal/trust"
)

// Knobs of the long versions, read from the environment.
var (
	// fleetSize is the number of devices of the fault tests
	// (WASMBED_E2E_DEVICES; default 4).
	fleetSize = envInt("WASMBED_E2E_DEVICES", 4)
	// long makes the fault tests inject more faults over longer rollouts
	// (WASMBED_E2E_LONG=1).
	long = os.Getenv("WASMBED_E2E_LONG") != ""
)

// heartbeat is the heartbeat interval of gateways and devices: short, so
// that a dead peer is noticed within a few seconds.
const heartbeat = time.Second

// fleetLabel marks the Devices of one test's fleet; each test's
// Applications select its own fleet by it, so tests sharing the platform
// never touch each other's devices.
const fleetLabel = "e2e.wasmbed.github.io/fleet"

func envInt(name string, def int) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil || v <= 0 {
		return def
	}
	return v
}

func TestMain(m *testing.M) {
	// The in-process controller checks modules in a child process: this
	// test binary.
	if modcheck.IsChild() {
		os.Exit(modcheck.RunChild(context.Background()))
	}
	ctrllog.SetLogger(logr.Discard())
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// env is the platform the tests share: started once, with one in-process
// gateway and the in-process controller, and no devices of its own (each
// test brings its fleet).
type env struct {
	p       *platform.Platform
	dir     string
	apiPort int
	log     *slog.Logger
	admin   client.Client
	token   string
	bundle  trust.Bundle
	gw      platform.Endpoint

	mu sync.Mutex
	// cp is the running control plane when a test restarted it; nil while
	// the platform's own runs.
	cp *controlplane.ControlPlane
}

var (
	shared    *env
	sharedErr error
	sharedMu  sync.Mutex
)

// platformEnv returns the shared platform, starting it on first use.
func platformEnv(t *testing.T) *env {
	t.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = startEnv()
	}
	if sharedErr != nil {
		t.Fatalf("start the platform: %v", sharedErr)
	}
	shared.waitHealthy(t)
	return shared
}

// testLogger logs the components to stderr at WASMBED_E2E_LOG's level
// (debug, info, warn, error), at warn with WASMBED_TEST_VERBOSE set, or not
// at all.
func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	switch v := os.Getenv("WASMBED_E2E_LOG"); {
	case v != "":
		if err := lvl.UnmarshalText([]byte(v)); err != nil {
			lvl = slog.LevelInfo
		}
	case os.Getenv("WASMBED_TEST_VERBOSE") == "":
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func startEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "wasmbed-e2e-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, apiPort: port, log: testLogger()}
	// The API server keeps its port so that it can be restarted under the
	// same address the components know.
	e.p, err = platform.Start(context.Background(), platform.Options{
		DataDir: dir, APIPort: port, Gateways: 1, HeartbeatInterval: heartbeat, Logger: e.log,
	})
	if err != nil {
		return nil, err
	}
	s, err := gateway.NewScheme()
	if err != nil {
		return nil, err
	}
	if e.admin, err = client.New(e.p.AdminConfig(), client.Options{Scheme: s}); err != nil {
		return nil, err
	}
	ep := e.p.Endpoints()
	e.token, e.gw = ep.AdminToken, ep.Gateways[0]
	cm := &corev1.ConfigMap{}
	if err := e.admin.Get(context.Background(), types.NamespacedName{Namespace: wasmbedv1.DefaultSystemNamespace, Name: wasmbedv1.TrustConfigMap}, cm); err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	if e.bundle, err = trust.Parse(cm.Data); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) stop() {
	_ = e.p.Stop()
	e.mu.Lock()
	cp := e.cp
	e.mu.Unlock()
	if cp != nil {
		_ = cp.Stop()
	}
	_ = os.RemoveAll(e.dir)
}

// waitHealthy waits until the API server answers and the in-process
// gateway is ready, as a test left it.
func (e *env) waitHealthy(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "the platform to be healthy", func() []string {
		var list wasmbedv1.ApplicationList
		if err := e.admin.List(t.Context(), &list, client.Limit(1)); err != nil {
			return []string{"API server: " + err.Error()}
		}
		if code, _ := httpGet(t.Context(), "http://"+e.gw.HTTP+"/readyz", ""); code != http.StatusOK {
			return []string{fmt.Sprintf("%s /readyz: %d", e.gw.Name, code)}
		}
		return nil
	})
}

// identity returns a REST configuration of a platform component's service
// account, as the platform gives its own components.
func (e *env) identity(t *testing.T, account string) *rest.Config {
	t.Helper()
	e.mu.Lock()
	cp := e.cp
	e.mu.Unlock()
	if cp == nil {
		cp = e.p.ControlPlane()
	}
	ns := wasmbedv1.DefaultSystemNamespace
	cfg, err := cp.ClientConfig("system:serviceaccount:"+ns+":"+account, "system:serviceaccounts", "system:serviceaccounts:"+ns)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitFor polls check until it reports no problem, failing the test with
// the last problems when timeout passes. The problems name what did not
// converge.
func waitFor(t testing.TB, timeout time.Duration, what string, check func() []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var problems []string
	for i := 0; ; i++ {
		problems = check()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(min(time.Duration(i+1)*50*time.Millisecond, 500*time.Millisecond)):
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
	const show = 12
	more := ""
	if len(problems) > show {
		more = fmt.Sprintf("\n  ... and %d more", len(problems)-show)
		problems = problems[:show]
	}
	msg := ""
	for _, p := range problems {
		msg += "\n  " + p
	}
	t.Fatalf("%s did not happen within %v:%s%s", what, timeout, msg, more)
}

// httpGet returns the status code and body of a GET, with a bearer token
// when one is given.
func httpGet(ctx context.Context, url, token string) (int, []byte) {
	return httpDo(ctx, http.MethodGet, url, token, nil)
}

func httpDo(ctx context.Context, method, url, token string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, []byte(err.Error())
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, []byte(err.Error())
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, data
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}
