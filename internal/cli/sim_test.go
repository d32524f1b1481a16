package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// writeRoot writes the device trust bundle of srv: the root, then the
// gateway CA and device CA a device pins.
func writeRoot(t *testing.T, srv *clienttest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trust.pem")
	if err := os.WriteFile(path, pki.EncodeCertificatesPEM(srv.Root(), srv.GatewayCA(), srv.DeviceCA()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSimCommandRunsFleet(t *testing.T) {
	srv, err := clienttest.Start(clienttest.Options{Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ca := writeRoot(t, srv)
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--log-level", "error", "sim", "--devices", "4", "--profile-mix", "esp32=1,hifive1=1",
		"--gateway", srv.SessionAddr(), "--enroll-gateway", srv.EnrollAddr(), "--ca", ca,
		"--duration", "4s", "--summary-interval", "500ms", "--wasm-mode", "interpreter", "--seed", "7"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("sim: %v\n%s", err, out.String())
	}
	text := out.String()
	if !strings.Contains(text, "final elapsed=") {
		t.Fatalf("no final summary in output:\n%s", text)
	}
	final := text[strings.LastIndex(text, "final "):]
	if !strings.Contains(final, "online=4") || !strings.Contains(final, "enrolled=4") {
		t.Errorf("final summary: got %q, want 4 devices online and enrolled", final)
	}
	// The fleet's log line is below --log-level error; the command's
	// warning is not a log line and shows regardless.
	if !strings.Contains(text, "warning: --seed 7 makes every device key predictable") {
		t.Errorf("--seed: output lacks the warning:\n%s", text)
	}
	if srv.Enrolled() != 4 {
		t.Errorf("gateway enrollments: got %d, want 4", srv.Enrolled())
	}
}

func TestDeviceRunCommand(t *testing.T) {
	srv, err := clienttest.Start(clienttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ca := writeRoot(t, srv)
	state := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		root := NewRootCommand()
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		root.SetArgs([]string{"--log-level", "error", "device", "run", "--state-dir", state, "--profile", "hifive1",
			"--gateway", srv.SessionAddr(), "--enroll-gateway", srv.EnrollAddr(), "--ca", ca, "--wasm-mode", "interpreter"})
		errc <- root.ExecuteContext(ctx)
	}()
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	peer, err := srv.AnyPeer(wctx)
	if err != nil {
		t.Fatalf("device never connected: %v", err)
	}
	if !strings.HasPrefix(peer.DeviceID, "hifive1-") {
		t.Errorf("device id: got %q, want a hifive1 device", peer.DeviceID)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("device run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "flash.bin")); err != nil {
		t.Errorf("flash file: %v", err)
	}
}

func TestDeviceRunRequiresFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no gateway", []string{"device", "run", "--state-dir", "x", "--ca", "y"}, "gateway"},
		{"no ca", []string{"sim", "--gateway", "127.0.0.1:1"}, "ca"},
		{"bad mix", []string{"sim", "--gateway", "127.0.0.1:1", "--ca", "/nonexistent", "--profile-mix", "esp32"}, "ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := NewRootCommand()
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			root.SetArgs(tt.args)
			err := root.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestSimScripts runs testdata/script/sim_*.txtar.
func TestSimScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "sim_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no sim scripts found")
	}
	testscript.Run(t, testscript.Params{Files: files, RequireExplicitExec: true})
}
