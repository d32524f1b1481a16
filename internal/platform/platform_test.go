package platform_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controller"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/platform"
)

func TestMain(m *testing.M) {
	// The controller checks modules in a child process: this test binary.
	if modcheck.IsChild() {
		os.Exit(modcheck.RunChild(context.Background()))
	}
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// TestStartAndResume starts the whole platform with two simulated devices
// and the sample application, stops it, and starts it again on the same
// data directory: the devices come back with their identities, and the
// application still runs without being delivered again.
func TestStartAndResume(t *testing.T) {
	dir := t.TempDir()
	opts := platform.Options{DataDir: dir, Devices: 2, Sample: true, HeartbeatInterval: time.Second}
	var stages []string
	opts.Progress = func(s platform.Stage) { stages = append(stages, s.Name) }

	p, err := platform.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"control plane", "certificates and roles", "controller", "gateways", "devices", "sample application"}
	if len(stages) != len(want) {
		t.Errorf("stages %v, want %v", stages, want)
	}
	var e platform.Endpoints
	data, err := os.ReadFile(filepath.Join(dir, "endpoints.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &e); err != nil || len(e.Gateways) != 1 || e.AdminToken == "" || e.Kubeconfig == "" {
		t.Fatalf("endpoints.json: %s (%v)", data, err)
	}
	c := adminClient(t, p)
	devicesBefore := devices(t, c)
	dasBefore := deviceApps(t, c)
	if len(devicesBefore) != 2 || len(dasBefore) != 2 {
		t.Fatalf("after the first start: %d devices, %d device applications; want 2 and 2", len(devicesBefore), len(dasBefore))
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	stages = nil
	p, err = platform.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	c = adminClient(t, p)
	devicesAfter := devices(t, c)
	for name, id := range devicesBefore {
		if devicesAfter[name] != id {
			t.Errorf("device %s: id %q after the restart, want %q", name, devicesAfter[name], id)
		}
	}
	if len(devicesAfter) != len(devicesBefore) {
		t.Errorf("%d devices after the restart, want %d: a device enrolled again", len(devicesAfter), len(devicesBefore))
	}
	for name, seq := range deviceApps(t, c) {
		if dasBefore[name] != seq {
			t.Errorf("%s: installed sequence %d after the restart, want %d (no new delivery)", name, seq, dasBefore[name])
		}
	}
}

func adminClient(t *testing.T, p *platform.Platform) client.Client {
	t.Helper()
	s, err := gateway.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(p.AdminConfig(), client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// devices returns the Devices by name with their device ids.
func devices(t *testing.T, c client.Client) map[string]string {
	t.Helper()
	var list wasmbedv1.DeviceList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range list.Items {
		out[d.Name] = d.Spec.DeviceID
	}
	return out
}

// deviceApps returns the Running DeviceApplications with their installed
// sequences.
func deviceApps(t *testing.T, c client.Client) map[string]int64 {
	t.Helper()
	var list wasmbedv1.DeviceApplicationList
	if err := c.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, d := range list.Items {
		if d.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning {
			out[d.Name] = d.Status.Sequence
		}
	}
	return out
}

// TestUnreachableAfterExceedsLastSeen: the controller marks a Connected
// device Unreachable when its lastSeen is older than UnreachableAfter, and
// gateways refresh lastSeen once per period plus jitter: with the defaults,
// a connected device must never look stale between two refreshes.
func TestUnreachableAfterExceedsLastSeen(t *testing.T) {
	longest := time.Duration(float64(gateway.DefaultLastSeenPeriod) * (1 + gateway.LastSeenJitter))
	if controller.DefaultUnreachableAfter <= longest {
		t.Errorf("controller.DefaultUnreachableAfter %v <= the gateways' longest lastSeen period %v: connected devices would flap to Unreachable",
			controller.DefaultUnreachableAfter, longest)
	}
}
