package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
)

// The first two versions the tests roll out (nextRelease makes more): a
// new version is a new module.
var (
	v1 = release{version: "1.0", module: apps.MustLoad(apps.Blinky)}
	v2 = release{version: "2.0", module: apps.MustLoad(apps.Sensor)}
)

// TestStory walks the whole story on a device of each board type, as an
// administrator and a user do it: the pairing window opened through the
// HTTP API, the devices enroll and connect, an Application is created and
// the controller rolls it out, the devices report metrics that the gateway
// exposes, a new version replaces the old one, the application is stopped,
// started, and deleted from every device.
func TestStory(t *testing.T) {
	e := platformEnv(t)
	fl := e.startFleet(t, fleetOptions{devices: 2, mix: "esp32=1,hifive1=1"})

	// Enrollment created a Device per board, labelled with its type.
	var types []string
	for _, name := range fl.names {
		dev := &wasmbedv1.Device{}
		if err := e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: name}, dev); err != nil {
			t.Fatal(err)
		}
		if dev.Labels[wasmbedv1.LabelDeviceType] != string(dev.Spec.DeviceType) || dev.Status.Gateway != e.gw.Name {
			t.Errorf("device %s: type label %q, type %q, gateway %q; want the type as label, gateway %s",
				name, dev.Labels[wasmbedv1.LabelDeviceType], dev.Spec.DeviceType, dev.Status.Gateway, e.gw.Name)
		}
		types = append(types, string(dev.Spec.DeviceType))
	}
	slices.Sort(types)
	if want := []string{"esp32", "hifive1"}; !slices.Equal(types, want) {
		t.Fatalf("board types %v, want %v", types, want)
	}

	const app = "story"
	fl.deploy(t, fl.application(app, v1, 2))
	fl.waitConverged(t, 2*time.Minute, desired{app: app, release: v1, installs: 1})

	// The DeviceApplications carry both names as labels and hold the
	// device-removal finalizer; the Application holds its own.
	var das wasmbedv1.DeviceApplicationList
	if err := e.admin.List(t.Context(), &das, client.MatchingLabels{wasmbedv1.LabelApplication: app}); err != nil {
		t.Fatal(err)
	}
	for _, da := range das.Items {
		if da.Labels[wasmbedv1.LabelDevice] != da.Spec.Device || !slices.Contains(da.Finalizers, wasmbedv1.FinalizerDeviceRemoval) {
			t.Errorf("DeviceApplication %s: labels %v, finalizers %v", da.Name, da.Labels, da.Finalizers)
		}
	}
	got := &wasmbedv1.Application{}
	if err := e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: app}, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got.Finalizers, wasmbedv1.FinalizerApplicationRemoval) {
		t.Errorf("application finalizers %v, want %s", got.Finalizers, wasmbedv1.FinalizerApplicationRemoval)
	}

	// Metrics: each device's last report through the HTTP API, and the
	// fleet's counters on the gateway's /metrics.
	waitFor(t, time.Minute, "device metrics of "+app, func() []string {
		var out []string
		for _, name := range fl.names {
			code, body := httpGet(t.Context(), fmt.Sprintf("http://%s/api/v1/namespaces/default/devices/%s/metrics", e.gw.HTTP, name), e.token)
			if code != http.StatusOK {
				out = append(out, fmt.Sprintf("%s: metrics %d %s", name, code, body))
				continue
			}
			var m struct {
				Applications []appMetrics `json:"applications"`
			}
			if err := json.Unmarshal(body, &m); err != nil {
				out = append(out, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			if i := slices.IndexFunc(m.Applications, func(a appMetrics) bool { return a.Name == app }); i < 0 || m.Applications[i].Executions == 0 {
				out = append(out, fmt.Sprintf("%s: no executions of %s in %s", name, app, body))
			}
		}
		code, body := httpGet(t.Context(), "http://"+e.gw.HTTP+"/metrics", "")
		if code != http.StatusOK {
			return append(out, fmt.Sprintf("/metrics: %d", code))
		}
		if n := metricValue(body, `wasmbed_app_executions_total{app="`+app+`"}`); n <= 0 {
			out = append(out, fmt.Sprintf("/metrics: wasmbed_app_executions_total of %s is %v", app, n))
		}
		return out
	})

	// A new version: a new module.
	fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.Version, s.WasmBinary = v2.version, v2.module })
	fl.waitConverged(t, 2*time.Minute, desired{app: app, release: v2, installs: 2})
	for i, d := range fl.sim.Devices() {
		if st, _ := d.Firmware().Applications.Status(app); int(st.ModuleBytes) != len(v2.module) {
			t.Errorf("device %s: module of %d bytes installed, want the new module's %d", fl.names[i], st.ModuleBytes, len(v2.module))
		}
	}

	fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.State = wasmbedv1.RunStateStopped })
	fl.waitConverged(t, time.Minute, desired{app: app, release: v2, state: wasmbedv1.RunStateStopped, installs: 2})
	fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.State = wasmbedv1.RunStateRunning })
	fl.waitConverged(t, time.Minute, desired{app: app, release: v2, installs: 2})

	if err := e.admin.Delete(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	fl.waitRemoved(t, app)
}

// appMetrics is an application's part of a device's metrics report, as the
// HTTP API returns it.
type appMetrics struct {
	Name       string `json:"name"`
	Executions uint64 `json:"executions"`
}

// metricValue returns the value of the sample named exactly series in a
// Prometheus text exposition, or -1.
func metricValue(body []byte, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return -1
	}
	return v
}
