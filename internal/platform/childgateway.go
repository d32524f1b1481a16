package platform

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wasmbed/wasmbed/internal/controlplane"
)

// childGateway is a gateway replica running as a child process.
type childGateway struct {
	cmd  *exec.Cmd
	http string // its HTTP listener, for /readyz and /metrics
}

// gatewaysDir holds the child gateways' kubeconfig and logs.
func (o *Options) gatewaysDir() string { return filepath.Join(o.DataDir, "gateways") }

// childStopGrace is how long a child gateway has to say goodbye to its
// devices and flush its status writes after SIGTERM.
const childStopGrace = 30 * time.Second

// startChildGateway runs replica i as `GatewayExec gateway` and waits until
// its /readyz answers.
func (p *Platform) startChildGateway(ctx context.Context, i int) error {
	o := p.opts
	name := fmt.Sprintf("gateway-%d", i)
	dir := o.gatewaysDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("platform: %w", err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg, err := p.identity(gatewayAccount)
	if err != nil {
		return err
	}
	if err := controlplane.WriteKubeconfig(kubeconfig, cfg); err != nil {
		return fmt.Errorf("platform: %s: %w", name, err)
	}
	var addrs [3]string
	for j, base := range []int{o.SessionPort, o.EnrollPort, o.HTTPPort} {
		if addrs[j], err = p.childAddr(ctx, base, i); err != nil {
			return fmt.Errorf("platform: %s: %w", name, err)
		}
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // a path under the platform's own state directory
	if err != nil {
		return fmt.Errorf("platform: %s: %w", name, err)
	}
	// The child outlives no context of ours: Stop ends it with SIGTERM.
	cmd := exec.Command(o.GatewayExec, "gateway", //nolint:gosec,noctx // the caller's own binary; stopped by Stop
		"--kubeconfig", kubeconfig, "--name", name, "--device-namespace", "default",
		"--session-addr", addrs[0], "--enroll-addr", addrs[1], "--http-addr", addrs[2],
		"--ip", o.Host, "--heartbeat-interval", o.HeartbeatInterval.String())
	cmd.Args = append(cmd.Args, o.GatewayArgs...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("platform: %s: %w", name, err)
	}
	child := &childGateway{cmd: cmd, http: addrs[2]}
	exited := make(chan error, 1)
	go func() {
		exited <- cmd.Wait()
		_ = logFile.Close()
	}()
	rg := &runningGateway{
		Endpoint: Endpoint{Name: name, Session: addrs[0], Enroll: addrs[1], HTTP: addrs[2], PID: cmd.Process.Pid},
		proc:     child, done: make(chan error, 1),
	}
	rg.cancel = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			rg.done <- exitError(name, err)
		case <-time.After(childStopGrace):
			_ = cmd.Process.Kill()
			err := <-exited
			rg.done <- fmt.Errorf("%s did not stop within %v after SIGTERM, killed: %w", name, childStopGrace, err)
		}
	}
	if err := poll(ctx, 2*time.Minute, func() (bool, error) {
		select {
		case err := <-exited:
			exited <- err
			return false, fmt.Errorf("%s exited (its log: %s): %w", name, logPath, err)
		default:
		}
		return child.ready(ctx), nil
	}, name+" to be ready"); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	p.mu.Lock()
	p.gateways = append(p.gateways, rg)
	p.mu.Unlock()
	return nil
}

// exitError is nil for a child stopped by SIGTERM in order.
func exitError(name string, err error) error {
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) && ee.ExitCode() == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// childAddr is replica i's address for base, choosing a free port when
// base is 0: a child process cannot report the port it picked.
func (p *Platform) childAddr(ctx context.Context, base, i int) (string, error) {
	if base != 0 {
		return p.opts.gatewayAddr(base, i), nil
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(p.opts.Host, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// ready reports whether the child's /readyz answers 200.
func (c *childGateway) ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.http+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// sessions reads the live sessions from the child's /metrics.
func (c *childGateway) sessions(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.http+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("gateway metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wasmbed_gateway_sessions "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("gateway metrics: %w", err)
	}
	return 0, errors.New("gateway metrics: no wasmbed_gateway_sessions")
}

// sessions returns the live sessions of the replica.
func (g *runningGateway) sessions(ctx context.Context) (int, error) {
	if g.proc != nil {
		return g.proc.sessions(ctx)
	}
	return g.gw.Sessions(), nil
}
