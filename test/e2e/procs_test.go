package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/wasmbed/wasmbed/internal/controlplane"
)

// The wasmbed binary, built once for the tests that run components as
// processes (so that they can be killed with SIGKILL).
var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// wasmbedBinary builds cmd/wasmbed into a temporary directory, once.
func wasmbedBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "wasmbed-e2e-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "wasmbed")
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", binPath, "github.com/wasmbed/wasmbed/cmd/wasmbed")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out.String())
		}
	})
	if binErr != nil {
		t.Fatalf("build the wasmbed binary: %v", binErr)
	}
	return binPath
}

// writeKubeconfig writes cfg (client certificate credentials) as a
// kubeconfig file in dir.
func writeKubeconfig(t *testing.T, dir, name string, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["e2e"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e", Namespace: "default"}
	kc.CurrentContext = "e2e"
	path := filepath.Join(dir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is a wasmbed component run as a process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs the binary with args, its output in a log file that the test
// prints when it fails.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.CommandContext(context.WithoutCancel(t.Context()), wasmbedBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.Env = append(os.Environ(), "KUBECONFIG=")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			if len(data) > 8<<10 {
				data = data[len(data)-8<<10:]
			}
			t.Logf("%s output (end):\n%s", name, data)
		}
	})
	return p
}

// kill kills the process with SIGKILL, as the kernel or a node failure
// would, and waits for it.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Logf("kill %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not exit after SIGKILL", p.name)
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// gatewayProc is a `wasmbed gateway` replica run as a process.
type gatewayProc struct {
	*proc
	session, enroll, http string
}

// startGatewayProc runs a gateway replica as a process, with the gateway's
// service-account identity, and waits until it is ready. With prev, it
// starts the replica again under the same name and addresses.
func (e *env) startGatewayProc(t *testing.T, name string, prev *gatewayProc) *gatewayProc {
	t.Helper()
	kc := writeKubeconfig(t, t.TempDir(), name, e.identity(t, "wasmbed-gateway"))
	g := &gatewayProc{}
	if prev != nil {
		g.session, g.enroll, g.http = prev.session, prev.enroll, prev.http
	} else {
		g.session, g.enroll, g.http = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	g.proc = startProc(t, name, "gateway", "--kubeconfig", kc, "--name", name,
		"--session-addr", g.session, "--enroll-addr", g.enroll, "--http-addr", g.http,
		"--ip", "127.0.0.1", "--heartbeat-interval", heartbeat.String(), "--lease-duration", "5s")
	waitFor(t, 2*time.Minute, name+" to be ready", func() []string {
		if g.exited() {
			t.Fatalf("%s exited: %v", name, g.err)
		}
		if code, body := httpGet(t.Context(), "http://"+g.http+"/readyz", ""); code != http.StatusOK {
			return []string{fmt.Sprintf("/readyz: %d %s", code, body)}
		}
		return nil
	})
	return g
}

// startControllerProc runs `wasmbed controller` as a process with the
// controller's service-account identity. Without leader election: the test
// stops the in-process controller first, and kills this one without
// letting it release a Lease.
func (e *env) startControllerProc(t *testing.T, name string) *proc {
	t.Helper()
	kc := writeKubeconfig(t, t.TempDir(), name, e.identity(t, "wasmbed-controller"))
	return startProc(t, name, "controller", "--kubeconfig", kc, "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--gateway-ip", "127.0.0.1")
}

// restartAPIServer stops kube-apiserver and etcd, keeps them down for
// down, and starts them again on the same data directory and port, while
// the controller, the gateways and the devices keep running.
func (e *env) restartAPIServer(t *testing.T, down time.Duration) {
	t.Helper()
	e.mu.Lock()
	cp := e.cp
	e.mu.Unlock()
	if cp == nil {
		cp = e.p.ControlPlane()
	}
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop the control plane: %v", err)
	}
	time.Sleep(down)
	next, err := controlplane.Start(context.WithoutCancel(t.Context()), controlplane.Options{
		DataDir: e.dir, APIPort: e.apiPort, Logger: e.log, SkipCRDs: true,
	})
	if err != nil {
		t.Fatalf("start the control plane again: %v", err)
	}
	e.mu.Lock()
	e.cp = next
	e.mu.Unlock()
}
