package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/rogpeppe/go-internal/testscript"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/pairing"
	"github.com/wasmbed/wasmbed/internal/platform"
)

// result is what one run of the command tree gave.
type result struct {
	stdout, stderr string
	code           int
}

// wasmbed runs the command tree in this process with args.
func wasmbed(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// ok fails the test unless r exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// fails fails the test unless r exited with code and stderr holds want.
func (r result) fails(t *testing.T, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d stderr %q; want exit %d and %q", r.code, r.stderr, code, want)
	}
}

func writeModule(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFleetCommands runs the app, device and pairing commands against one
// whole platform (control plane, controller, gateway, two simulated
// devices), checking what they print and what they change in the cluster.
func TestFleetCommands(t *testing.T) {
	ctrllog.SetLogger(logr.Discard())
	waitInterval = 100 * time.Millisecond
	dir := t.TempDir()
	p, err := platform.Start(t.Context(), platform.Options{DataDir: dir, Devices: 2, HeartbeatInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	t.Setenv("KUBECONFIG", "")
	t.Setenv(dataDirEnv, "")
	kc := p.Endpoints().Kubeconfig
	wb := func(t *testing.T, args ...string) result {
		t.Helper()
		return wasmbed(t, append(args, "--kubeconfig", kc)...)
	}
	s, err := gateway.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(p.AdminConfig(), client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	getApp := func(t *testing.T, name string) *wasmbedv1.Application {
		t.Helper()
		app := &wasmbedv1.Application{}
		if err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: name}, app); err != nil {
			t.Fatal(err)
		}
		return app
	}
	dapps := func(t *testing.T, name string) map[string]wasmbedv1.DeviceApplicationStatus {
		t.Helper()
		var list wasmbedv1.DeviceApplicationList
		if err := c.List(t.Context(), &list, client.InNamespace("default"), client.MatchingLabels{wasmbedv1.LabelApplication: name}); err != nil {
			t.Fatal(err)
		}
		out := map[string]wasmbedv1.DeviceApplicationStatus{}
		for _, d := range list.Items {
			out[d.Spec.Device] = d.Status
		}
		return out
	}
	var devices wasmbedv1.DeviceList
	if err := c.List(t.Context(), &devices, client.InNamespace("default")); err != nil || len(devices.Items) != 2 {
		t.Fatalf("devices: %d, %v; want 2", len(devices.Items), err)
	}
	blinky := writeModule(t, "blinky.wasm", apps.MustLoad(apps.Blinky))
	sensor := writeModule(t, "sensor.wasm", apps.MustLoad(apps.Sensor))

	t.Run("device list", func(t *testing.T) {
		r := wb(t, "device", "list").ok(t)
		for _, d := range devices.Items {
			if !strings.Contains(r.stdout, d.Name) {
				t.Errorf("device list lacks %s:\n%s", d.Name, r.stdout)
			}
		}
		if !strings.HasPrefix(r.stdout, "NAME") || strings.Count(r.stdout, "Connected") != 2 {
			t.Errorf("device list:\n%s", r.stdout)
		}
		var list wasmbedv1.DeviceList
		if err := json.Unmarshal([]byte(wb(t, "device", "list", "-o", "json").ok(t).stdout), &list); err != nil || len(list.Items) != 2 || list.Kind != "DeviceList" {
			t.Errorf("device list -o json: %d items, kind %q, %v", len(list.Items), list.Kind, err)
		}
		r = wb(t, "device", "list", "-l", wasmbedv1.LabelDeviceType+"=esp32").ok(t)
		if strings.Count(r.stdout, "\n") != 2 || !strings.Contains(r.stdout, "esp32") {
			t.Errorf("device list -l device-type=esp32:\n%s", r.stdout)
		}
	})

	t.Run("deploy and wait", func(t *testing.T) {
		r := wb(t, "app", "deploy", blinky, "--name", "blinky", "--version", "1.0",
			"--selector", wasmbedv1.LabelDeviceType, "--memory-limit", "64Ki", "--timeout", "100ms", "--wait").ok(t)
		if !strings.Contains(r.stdout, "application default/blinky created") || !strings.Contains(r.stdout, "2/2 devices running") {
			t.Errorf("deploy --wait:\n%s", r.stdout)
		}
		app := getApp(t, "blinky")
		if app.Status.Phase != wasmbedv1.ApplicationPhaseRunning || app.Spec.Config.MemoryLimit != 64<<10 ||
			app.Spec.Config.ExecutionTimeout != "100ms" || app.Annotations[fleetctl.AnnotationCreatedBy] == "" {
			t.Errorf("application: phase %s, config %+v, annotations %v", app.Status.Phase, app.Spec.Config, app.Annotations)
		}
		for d, st := range dapps(t, "blinky") {
			if st.Phase != wasmbedv1.DeviceApplicationPhaseRunning || st.Version != "1.0" {
				t.Errorf("%s: %s version %q, want Running 1.0", d, st.Phase, st.Version)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		r := wb(t, "app", "status", "blinky").ok(t)
		if !strings.Contains(r.stdout, "DEVICE") || strings.Count(r.stdout, "Running  1.0") != 2 {
			t.Errorf("status:\n%s", r.stdout)
		}
		var st AppStatus
		if err := json.Unmarshal([]byte(wb(t, "app", "status", "blinky", "-o", "json").ok(t).stdout), &st); err != nil {
			t.Fatal(err)
		}
		if st.Phase != wasmbedv1.ApplicationPhaseRunning || st.Running != 2 || len(st.Devices) != 2 || st.Devices[0].Phase != wasmbedv1.DeviceApplicationPhaseRunning {
			t.Errorf("status -o json: %+v", st)
		}
		var list wasmbedv1.ApplicationList
		if err := yaml.Unmarshal([]byte(wb(t, "app", "list", "-o", "yaml").ok(t).stdout), &list); err != nil || len(list.Items) != 1 || list.Items[0].Name != "blinky" {
			t.Errorf("app list -o yaml: %+v, %v", list.Items, err)
		}
		if r := wb(t, "app", "list").ok(t); !strings.Contains(r.stdout, "blinky  1.0      running  Running  2/2") {
			t.Errorf("app list:\n%s", r.stdout)
		}
	})

	t.Run("stop and start", func(t *testing.T) {
		r := wb(t, "app", "stop", "blinky", "--wait").ok(t)
		if !strings.Contains(r.stdout, "2/2 devices stopped") {
			t.Errorf("stop --wait:\n%s", r.stdout)
		}
		for d, st := range dapps(t, "blinky") {
			if st.Phase != wasmbedv1.DeviceApplicationPhaseStopped {
				t.Errorf("after stop, %s: %s", d, st.Phase)
			}
		}
		r = wb(t, "app", "start", "blinky", "--wait", "-o", "json").ok(t)
		var app wasmbedv1.Application
		if err := json.Unmarshal([]byte(r.stdout), &app); err != nil || app.Status.Phase != wasmbedv1.ApplicationPhaseRunning || app.Kind != "Application" {
			t.Errorf("start --wait -o json: phase %s kind %q, %v\n%s", app.Status.Phase, app.Kind, err, r.stdout)
		}
		if !strings.Contains(r.stderr, "2/2 devices running") {
			t.Errorf("start --wait -o json: progress not on stderr: %q", r.stderr)
		}
	})

	t.Run("new version and undo", func(t *testing.T) {
		r := wb(t, "app", "deploy", sensor, "--name", "blinky", "--version", "2.0", "--selector", wasmbedv1.LabelDeviceType, "--wait").ok(t)
		if !strings.Contains(r.stdout, "updated") {
			t.Errorf("second deploy:\n%s", r.stdout)
		}
		if st := wb(t, "app", "status", "blinky").ok(t).stdout; !strings.Contains(st, "Previous:     1.0") {
			t.Errorf("status after the second deploy:\n%s", st)
		}
		wb(t, "app", "rollout", "resume", "blinky").fails(t, ExitFailure, "the rollout is not paused")
		r = wb(t, "app", "rollout", "undo", "blinky", "--wait").ok(t)
		if !strings.Contains(r.stdout, "rolling back to version 1.0") {
			t.Errorf("undo:\n%s", r.stdout)
		}
		app := getApp(t, "blinky")
		if app.Spec.Version != "1.0" || !bytes.Equal(app.Spec.WasmBinary, apps.MustLoad(apps.Blinky)) || app.Status.Phase != wasmbedv1.ApplicationPhaseRunning {
			t.Errorf("after undo: version %q, phase %s", app.Spec.Version, app.Status.Phase)
		}
		for d, st := range dapps(t, "blinky") {
			if st.Phase != wasmbedv1.DeviceApplicationPhaseRunning || st.Version != "1.0" {
				t.Errorf("after undo, %s: %s version %q", d, st.Phase, st.Version)
			}
		}
	})

	t.Run("failing rollout", func(t *testing.T) {
		bad := writeModule(t, "forbidden.wasm", apps.MustLoad(apps.Forbidden))
		r := wb(t, "app", "deploy", bad, "--name", "bad", "--device", devices.Items[0].Name, "--wait", "--wait-timeout", "2m")
		r.fails(t, ExitFailure, "rollout failed")
		if !strings.Contains(r.stdout, "application default/bad created") {
			t.Errorf("failing deploy:\n%s", r.stdout)
		}
		r = wb(t, "app", "deploy", blinky, "--name", "nowhere", "--device", "nosuch", "--wait", "--wait-timeout", "1s")
		r.fails(t, ExitFailure, "timed out after 1s waiting for application default/nowhere to roll out (0/0 devices running, 0 updated, phase Pending)")
		wb(t, "app", "delete", "nowhere").ok(t)
		r = wb(t, "app", "delete", "bad", "--wait").ok(t)
		if !strings.Contains(r.stdout, "removed") {
			t.Errorf("delete --wait:\n%s", r.stdout)
		}
		err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: "bad"}, &wasmbedv1.Application{})
		if !apierrors.IsNotFound(err) {
			t.Errorf("after delete --wait: %v, want not found", err)
		}
	})

	t.Run("kubeconfig from the environment and the data directory", func(t *testing.T) {
		t.Setenv("KUBECONFIG", kc)
		if r := wasmbed(t, "app", "list").ok(t); !strings.Contains(r.stdout, "blinky") {
			t.Errorf("app list with KUBECONFIG:\n%s", r.stdout)
		}
		t.Setenv("KUBECONFIG", "")
		if r := wasmbed(t, "app", "list", "--data-dir", dir).ok(t); !strings.Contains(r.stdout, "blinky") {
			t.Errorf("app list --data-dir:\n%s", r.stdout)
		}
		wasmbed(t, "app", "list", "--data-dir", t.TempDir()).fails(t, ExitFailure, "no kubeconfig at")
		if r := wb(t, "app", "list", "-n", "other").ok(t); !strings.Contains(r.stdout, "No applications in namespace other") {
			t.Errorf("app list -n other:\n%s", r.stdout)
		}
	})

	t.Run("pairing", func(t *testing.T) {
		var s PairingStatus
		r := wb(t, "pairing", "open", "--duration", "10m", "--token", "-o", "json").ok(t)
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || !s.Open || !s.TokenRequired || len(s.Token) != 32 {
			t.Fatalf("pairing open -o json: %+v, %v", s, err)
		}
		cm := &corev1.ConfigMap{}
		if err := c.Get(t.Context(), fleetctl.PairingKey(wasmbedv1.DefaultSystemNamespace), cm); err != nil {
			t.Fatal(err)
		}
		w, err := pairing.Parse(cm.Data)
		if err != nil || !w.OpenAt(time.Now()) || !w.TokenMatches([]byte(s.Token)) || strings.Contains(strings.Join(mapValues(cm.Data), " "), s.Token) {
			t.Errorf("stored window %+v, %v: want open, matching the token, without it in clear", w, err)
		}
		if r := wb(t, "pairing", "status").ok(t); !strings.Contains(r.stdout, "open until") || !strings.Contains(r.stdout, "required") {
			t.Errorf("pairing status:\n%s", r.stdout)
		}
		wb(t, "pairing", "close").ok(t)
		if r := wb(t, "pairing", "status").ok(t); !strings.Contains(r.stdout, "closed") {
			t.Errorf("pairing status after close:\n%s", r.stdout)
		}
	})

	t.Run("describe and revoke", func(t *testing.T) {
		name := devices.Items[1].Name
		r := wb(t, "device", "describe", name).ok(t)
		for _, want := range []string{"Device ID:", "Connected", "blinky"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("describe lacks %q:\n%s", want, r.stdout)
			}
		}
		wb(t, "device", "describe", "nosuch").fails(t, ExitFailure, "device default/nosuch not found")
		if r := wb(t, "device", "revoke", name).ok(t); !strings.Contains(r.stdout, "revoked") {
			t.Errorf("revoke:\n%s", r.stdout)
		}
		d := &wasmbedv1.Device{}
		if err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: name}, d); err != nil || !d.Spec.Revoked {
			t.Errorf("after revoke: revoked %v, %v", d.Spec.Revoked, err)
		}
		if r := wb(t, "device", "list").ok(t); !strings.Contains(r.stdout, ",Revoked") {
			t.Errorf("device list after revoke:\n%s", r.stdout)
		}
	})

	t.Run("delete", func(t *testing.T) {
		wb(t, "app", "delete", "blinky", "--wait").ok(t)
		if n := len(dapps(t, "blinky")); n != 0 {
			t.Errorf("%d device applications left after delete --wait", n)
		}
		wb(t, "app", "status", "blinky").fails(t, ExitFailure, "application default/blinky not found")
	})
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestUsageErrors checks that wrong command lines exit with ExitUsage and
// one clear line, before any cluster is asked.
func TestUsageErrors(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv(dataDirEnv, t.TempDir())
	module := writeModule(t, "m.wasm", []byte("\x00asm\x01\x00\x00\x00"))
	notWasm := writeModule(t, "m.txt", []byte("hello"))
	huge := writeModule(t, "huge.wasm", make([]byte, fleetctl.MaxModuleSize+1))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no module", []string{"app", "deploy", "--name", "x", "--device", "d"}, "want one argument, the module file"},
		{"no name", []string{"app", "deploy", module, "--device", "d"}, `required flag(s) "name"`},
		{"bad name", []string{"app", "deploy", module, "--name", "Bad_Name", "--device", "d"}, "--name: a lowercase RFC 1123 label"},
		{"no targets", []string{"app", "deploy", module, "--name", "x"}, "--device: one of targetDevices or selector is required"},
		{"bad selector", []string{"app", "deploy", module, "--name", "x", "--selector", "a in ("}, `--selector "a in ("`},
		{"memory too large", []string{"app", "deploy", module, "--name", "x", "--device", "d", "--memory-limit", "1Gi"}, "--memory-limit: must be from 0 to 268435456 bytes"},
		{"memory not a size", []string{"app", "deploy", module, "--name", "x", "--device", "d", "--memory-limit", "lots"}, "want bytes or a quantity"},
		{"timeout too long", []string{"app", "deploy", module, "--name", "x", "--device", "d", "--timeout", "2h"}, "--timeout: must be more than 0s and at most 1h"},
		{"timeout not a duration", []string{"app", "deploy", module, "--name", "x", "--device", "d", "--timeout", "soon"}, `--timeout: "soon" is not a duration`},
		{"not wasm", []string{"app", "deploy", notWasm, "--name", "x", "--device", "d"}, "not a WebAssembly module"},
		{"module too large", []string{"app", "deploy", huge, "--name", "x", "--device", "d"}, "786433 bytes, more than the 786432"},
		{"wait timeout", []string{"app", "deploy", module, "--name", "x", "--device", "d", "--wait-timeout", "0s"}, "--wait-timeout"},
		{"bad output", []string{"app", "list", "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{"bad namespace", []string{"app", "list", "-n", "No_Such"}, `--namespace "No_Such"`},
		{"status without name", []string{"app", "status"}, "want one argument, the application name"},
		{"status bad name", []string{"app", "status", "A/B"}, `application name "A/B"`},
		{"unknown command", []string{"app", "frob"}, `unknown command "frob" for "wasmbed app"`},
		{"unknown flag", []string{"app", "list", "--frob"}, "unknown flag: --frob"},
		{"pairing too long", []string{"pairing", "open", "--duration", "48h"}, "--duration 48h0m0s: want more than 0s and at most 24h0m0s"},
		{"device selector", []string{"device", "list", "-l", "a in ("}, `--selector "a in ("`},
		{"revoke two", []string{"device", "revoke", "a", "b"}, "want one argument, the device name; got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := wasmbed(t, tt.args...)
			r.fails(t, ExitUsage, tt.want)
			if n := strings.Count(r.stderr, "\n"); n != 2 || !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("stderr %q: want the error and a usage hint", r.stderr)
			}
		})
	}
}

// TestUsageScripts runs testdata/script/usage_*.txtar.
func TestUsageScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "usage_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no usage scripts found")
	}
	testscript.Run(t, testscript.Params{Files: files, RequireExplicitExec: true})
}
