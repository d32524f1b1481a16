package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sim"
)

// fleetOptions describe one test's simulated fleet.
type fleetOptions struct {
	// devices is the fleet size.
	devices int
	// mix is the board mix (sim.ParseMix); default both boards alike.
	mix string
	// sessions are the session endpoints the devices dial, in failover
	// order; default the in-process gateway's.
	sessions []string
}

// fleet is a running simulated fleet whose devices are enrolled and
// labelled with the test's fleet label.
type fleet struct {
	e     *env
	label string
	sim   *sim.Fleet
	// names are the Device resources' names, in the fleet's device order.
	names  []string
	cancel context.CancelFunc
	done   chan struct{}
}

// startFleet opens the pairing window through the HTTP API, as an
// administrator does, starts the devices, waits until each one enrolled and
// connected, closes the window and labels the Devices for the test.
func (e *env) startFleet(t *testing.T, o fleetOptions) *fleet {
	t.Helper()
	if o.mix == "" {
		o.mix = "esp32=1,hifive1=1"
	}
	if len(o.sessions) == 0 {
		o.sessions = []string{e.gw.Session}
	}
	mix, err := sim.ParseMix(o.mix)
	if err != nil {
		t.Fatal(err)
	}
	api := "http://" + e.gw.HTTP + "/api/v1/pairing/"
	if code, body := httpDo(t.Context(), http.MethodPost, api+"open", e.token, map[string]string{"duration": "10m"}); code != http.StatusOK {
		t.Fatalf("open the pairing window: %d %s", code, body)
	}
	f, err := sim.New(t.Context(), sim.Options{
		Devices: o.devices, Gateways: o.sessions, EnrollGateways: []string{e.gw.Enroll},
		Root: e.bundle.Root, GatewayCA: e.bundle.GatewayCA, DeviceCA: e.bundle.DeviceCA, Mix: mix,
		HeartbeatInterval: heartbeat, MetricsInterval: time.Second,
		Backoff:         link.Backoff{Base: 100 * time.Millisecond, Max: time.Second},
		SummaryInterval: -1, Logger: e.log.With("component", "devices"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	fl := &fleet{e: e, label: strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), sim: f, cancel: cancel, done: make(chan struct{})}
	if len(fl.label) > 63 {
		fl.label = fl.label[:63]
	}
	go func() {
		defer close(fl.done)
		f.Run(ctx)
	}()
	t.Cleanup(fl.stop)

	waitFor(t, 2*time.Minute, "the devices to enroll", func() []string {
		var out []string
		for _, d := range f.Devices() {
			if st := d.Status(); st.DeviceID == "" || st.Phase != device.Online {
				out = append(out, fmt.Sprintf("%s (%s): phase %s, id %q", st.Name, st.Profile, st.Phase, st.DeviceID))
			}
		}
		return out
	})
	if code, body := httpDo(t.Context(), http.MethodPost, api+"close", e.token, struct{}{}); code != http.StatusOK {
		t.Fatalf("close the pairing window: %d %s", code, body)
	}
	for _, d := range f.Devices() {
		fl.names = append(fl.names, wasmbedv1.DeviceObjectName(d.Status().DeviceID))
	}
	for _, name := range fl.names {
		dev := &wasmbedv1.Device{}
		if err := e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: name}, dev); err != nil {
			t.Fatalf("device %s: %v", name, err)
		}
		patch := client.MergeFrom(dev.DeepCopy())
		if dev.Labels == nil {
			dev.Labels = map[string]string{}
		}
		dev.Labels[fleetLabel] = fl.label
		if err := e.admin.Patch(t.Context(), dev, patch); err != nil {
			t.Fatalf("label device %s: %v", name, err)
		}
	}
	fl.waitConnected(t)
	return fl
}

// waitConnected waits until every Device says Connected.
func (fl *fleet) waitConnected(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "every device to be Connected", func() []string {
		var out []string
		for i, d := range fl.sim.Devices() {
			dev := &wasmbedv1.Device{}
			if err := fl.e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: fl.names[i]}, dev); err != nil {
				out = append(out, fmt.Sprintf("%s: %v", fl.names[i], err))
				continue
			}
			if dev.Status.Phase != wasmbedv1.DevicePhaseConnected || d.Status().Phase != device.Online {
				out = append(out, fmt.Sprintf("%s: Device phase %s, device %s", fl.names[i], dev.Status.Phase, d.Status().Phase))
			}
		}
		return out
	})
}

func (fl *fleet) stop() {
	fl.cancel()
	<-fl.done
}

// selector selects the fleet's Devices.
func (fl *fleet) selector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{fleetLabel: fl.label}}
}

// release is one version of a test's application.
type release struct {
	version string
	module  []byte
}

// hash is the module's SHA-256 in lower-case hex.
func (r release) hash() string {
	s := sha256.Sum256(r.module)
	return hex.EncodeToString(s[:])
}

// application returns the Application a user would apply to run r on the
// fleet, one device updating at a time so that a fault lands mid-rollout.
func (fl *fleet) application(name string, r release, maxUpdating int) *wasmbedv1.Application {
	mu := intstr.FromInt32(int32(maxUpdating)) //nolint:gosec // small
	threshold := int32(100)                    // a fault is not the module's fault: never pause
	return &wasmbedv1.Application{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: wasmbedv1.ApplicationSpec{
			Name: name, Version: r.version, WasmBinary: r.module, Selector: fl.selector(),
			Strategy: wasmbedv1.RolloutStrategy{MaxUpdating: &mu, FailureThreshold: &threshold},
		},
	}
}

// deploy creates the Application.
func (fl *fleet) deploy(t *testing.T, app *wasmbedv1.Application) {
	t.Helper()
	if err := fl.e.admin.Create(t.Context(), app); err != nil {
		t.Fatalf("create application %s: %v", app.Name, err)
	}
}

// update changes the Application's spec with retries on conflicts, as
// `kubectl edit` would.
func (fl *fleet) update(t *testing.T, name string, change func(*wasmbedv1.ApplicationSpec)) {
	t.Helper()
	waitFor(t, 30*time.Second, "the application update to be accepted", func() []string {
		app := &wasmbedv1.Application{}
		if err := fl.e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: name}, app); err != nil {
			return []string{err.Error()}
		}
		change(&app.Spec)
		if err := fl.e.admin.Update(t.Context(), app); err != nil {
			return []string{err.Error()}
		}
		return nil
	})
}

// desired is what a converged fleet runs.
type desired struct {
	app     string
	release release
	state   wasmbedv1.RunState
	// installs, when set, is the exact number of versions each device
	// wrote to flash over the test (device.Status.Installs); maxInstalls
	// bounds it instead where a power cut may have forced one more.
	installs, maxInstalls uint64
}

// problems lists every way in which the fleet differs from d: the
// Application's status, the DeviceApplications (exactly one per device,
// none elsewhere) and what each device actually runs.
func (fl *fleet) problems(ctx context.Context, d desired) []string {
	var out []string
	c := fl.e.admin
	app := &wasmbedv1.Application{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: d.app}, app); err != nil {
		return []string{fmt.Sprintf("application %s: %v", d.app, err)}
	}
	n := int32(len(fl.names)) //nolint:gosec // small
	st := app.Status
	wantPhase, wantRunning := wasmbedv1.ApplicationPhaseRunning, n
	if d.state == wasmbedv1.RunStateStopped {
		wantPhase, wantRunning = wasmbedv1.ApplicationPhaseStopped, 0
	}
	if st.ObservedGeneration != app.Generation || st.Phase != wantPhase || st.TargetCount != n || st.UpdatedCount != n ||
		st.RunningCount != wantRunning || st.FailedCount != 0 {
		out = append(out, fmt.Sprintf("application %s: generation %d observed %d, phase %s, target %d, updated %d, running %d, failed %d; want phase %s, %d targets updated, %d running",
			d.app, app.Generation, st.ObservedGeneration, st.Phase, st.TargetCount, st.UpdatedCount, st.RunningCount, st.FailedCount, wantPhase, n, wantRunning))
	}
	if cond := meta.FindStatusCondition(st.Conditions, wasmbedv1.ConditionReady); cond == nil || cond.Status != metav1.ConditionTrue {
		out = append(out, fmt.Sprintf("application %s: condition Ready %v", d.app, cond))
	}
	for _, typ := range []string{wasmbedv1.ConditionProgressing, wasmbedv1.ConditionDegraded} {
		if cond := meta.FindStatusCondition(st.Conditions, typ); cond != nil && cond.Status == metav1.ConditionTrue {
			out = append(out, fmt.Sprintf("application %s: condition %s True (%s: %s)", d.app, typ, cond.Reason, cond.Message))
		}
	}

	var list wasmbedv1.DeviceApplicationList
	if err := c.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{wasmbedv1.LabelApplication: d.app}); err != nil {
		return append(out, fmt.Sprintf("device applications: %v", err))
	}
	byDevice := map[string]*wasmbedv1.DeviceApplication{}
	for i := range list.Items {
		da := &list.Items[i]
		if prev := byDevice[da.Spec.Device]; prev != nil {
			out = append(out, fmt.Sprintf("device %s: two DeviceApplications of %s: %s and %s", da.Spec.Device, d.app, prev.Name, da.Name))
		}
		byDevice[da.Spec.Device] = da
		if !slices.Contains(fl.names, da.Spec.Device) {
			out = append(out, fmt.Sprintf("DeviceApplication %s for device %s, not in the fleet", da.Name, da.Spec.Device))
		}
	}
	wantDA := wasmbedv1.DeviceApplicationPhaseRunning
	wantDev := protocol.StateRunning
	if d.state == wasmbedv1.RunStateStopped {
		wantDA, wantDev = wasmbedv1.DeviceApplicationPhaseStopped, protocol.StateStopped
	}
	for i, dev := range fl.sim.Devices() {
		name := fl.names[i]
		da := byDevice[name]
		if da == nil {
			out = append(out, fmt.Sprintf("device %s: no DeviceApplication of %s", name, d.app))
			continue
		}
		var seq int64
		if da.Spec.Artifact != nil {
			seq = da.Spec.Artifact.Sequence
		}
		ds := da.Status
		if da.Spec.Version != d.release.version || ds.Phase != wantDA || ds.Sequence != seq || ds.Version != d.release.version ||
			(ds.ModuleHash != "" && ds.ModuleHash != d.release.hash()) {
			out = append(out, fmt.Sprintf("device %s: DeviceApplication %s version %q, phase %s (%s), sequence %d of %d, status version %q; want %s %s at sequence %d",
				name, da.Name, da.Spec.Version, ds.Phase, ds.Reason, ds.Sequence, seq, ds.Version, d.release.version, wantDA, seq))
		}
		fw := dev.Firmware()
		if fw == nil {
			out = append(out, fmt.Sprintf("device %s: off", name))
			continue
		}
		got, ok := fw.Applications.Status(d.app)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("device %s: %s not installed", name, d.app))
		case got.Version != d.release.version || got.State != wantDev || int64(got.Sequence) != seq: //nolint:gosec // sequences are small
			out = append(out, fmt.Sprintf("device %s: runs %s %q at sequence %d, state %v; want %q at sequence %d, %v",
				name, d.app, got.Version, got.Sequence, got.State, d.release.version, seq, wantDev))
		}
		if apps := fw.Applications.Statuses(nil); len(apps) != 1 {
			out = append(out, fmt.Sprintf("device %s: %d applications installed, want 1", name, len(apps)))
		}
		if st := dev.Status(); d.installs != 0 && st.Installs != d.installs {
			out = append(out, fmt.Sprintf("device %s: %d versions written to flash, want %d", name, st.Installs, d.installs))
		} else if d.maxInstalls != 0 && st.Installs > d.maxInstalls {
			out = append(out, fmt.Sprintf("device %s: %d versions written to flash, want at most %d", name, st.Installs, d.maxInstalls))
		}
	}
	return out
}

// waitConverged waits until the fleet matches d.
func (fl *fleet) waitConverged(t *testing.T, timeout time.Duration, d desired) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s %s (%s) on every device", d.app, d.release.version, cmpState(d.state)), func() []string {
		return fl.problems(t.Context(), d)
	})
}

func cmpState(s wasmbedv1.RunState) wasmbedv1.RunState {
	if s == "" {
		return wasmbedv1.RunStateRunning
	}
	return s
}

// waitRemoved waits until the application is gone: the Application and
// its DeviceApplications deleted (their finalizers released), and no
// device holding it.
func (fl *fleet) waitRemoved(t *testing.T, app string) {
	t.Helper()
	waitFor(t, time.Minute, app+" to be removed everywhere", func() []string {
		var out []string
		err := fl.e.admin.Get(t.Context(), client.ObjectKey{Namespace: "default", Name: app}, &wasmbedv1.Application{})
		if !apierrors.IsNotFound(err) {
			out = append(out, fmt.Sprintf("application %s still there (%v)", app, err))
		}
		var list wasmbedv1.DeviceApplicationList
		if err := fl.e.admin.List(t.Context(), &list, client.MatchingLabels{wasmbedv1.LabelApplication: app}); err != nil {
			out = append(out, err.Error())
		}
		for _, da := range list.Items {
			out = append(out, fmt.Sprintf("DeviceApplication %s still there: phase %s, finalizers %v", da.Name, da.Status.Phase, da.Finalizers))
		}
		for i, d := range fl.sim.Devices() {
			if fw := d.Firmware(); fw == nil {
				out = append(out, fl.names[i]+": off")
			} else if st, ok := fw.Applications.Status(app); ok {
				out = append(out, fmt.Sprintf("device %s still holds %s %q (%v)", fl.names[i], app, st.Version, st.State))
			}
		}
		return out
	})
}

// sequenceWatch samples the DeviceApplications of an application while a
// fault runs and records any sequence that went down: the issued
// artifact's (spec) or the installed one (status), per DeviceApplication.
type sequenceWatch struct {
	stop func()
	mu   sync.Mutex
	max  map[string]int64
	bad  []string
	seen int
}

func watchSequences(t *testing.T, e *env, app string) *sequenceWatch {
	ctx, cancel := context.WithCancel(t.Context())
	w := &sequenceWatch{max: map[string]int64{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var list wasmbedv1.DeviceApplicationList
			// Errors are expected while the API server is down.
			if err := e.admin.List(ctx, &list, client.MatchingLabels{wasmbedv1.LabelApplication: app}); err == nil {
				w.observe(list.Items)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	w.stop = func() { cancel(); <-done }
	t.Cleanup(w.stop)
	return w
}

func (w *sequenceWatch) observe(items []wasmbedv1.DeviceApplication) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen++
	for _, da := range items {
		vals := map[string]int64{"status": da.Status.Sequence}
		if da.Spec.Artifact != nil {
			vals["spec"] = da.Spec.Artifact.Sequence
		}
		for k, v := range vals {
			key := string(da.UID) + "/" + k
			if prev, ok := w.max[key]; ok && v < prev && v != 0 {
				w.bad = append(w.bad, fmt.Sprintf("%s: %s sequence went down from %d to %d", da.Name, k, prev, v))
			}
			w.max[key] = max(w.max[key], v)
		}
	}
}

// check stops the watch and fails the test if a sequence went down.
func (w *sequenceWatch) check(t *testing.T) {
	t.Helper()
	w.stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == 0 {
		t.Error("the sequence watch never listed the DeviceApplications")
	}
	sort.Strings(w.bad)
	for _, b := range w.bad {
		t.Error(b)
	}
}

// waitRolloutStarted waits until at least one device runs version: the
// moment to inject a fault. It polls every 20 ms, faster than waitFor, not
// to miss the moment in a small fleet.
func (fl *fleet) waitRolloutStarted(t *testing.T, app, version string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		for _, d := range fl.sim.Devices() {
			if fw := d.Firmware(); fw != nil {
				if st, ok := fw.Applications.Status(app); ok && st.Version == version && st.State == protocol.StateRunning {
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s %s reached no device within a minute", app, version)
}

// keyOf is the key of a Device in the namespace enrollment creates them in.
func keyOf(name string) client.ObjectKey { return client.ObjectKey{Namespace: "default", Name: name} }
