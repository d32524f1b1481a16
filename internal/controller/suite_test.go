package controller

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
	"github.com/wasmbed/wasmbed/internal/fixture"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// env is the real control plane shared by this package's tests.
var env *controlplanetest.Env

func TestMain(m *testing.M) {
	if modcheck.IsChild() {
		os.Exit(modcheck.RunChild(context.Background()))
	}
	os.Exit(controlplanetest.Run(m, &env))
}

const gatewayName = "gw-0"

// testbed is one test's namespace, system namespace and controller.
type testbed struct {
	t      testing.TB
	ns     string
	sys    string
	opts   Options
	cancel context.CancelFunc
	done   chan error
}

// newTestbed creates a namespace and a system namespace with a live gateway
// Lease, and starts a controller watching them.
func newTestbed(t testing.TB, mutate ...func(*Options)) *testbed {
	t.Helper()
	ns := env.Namespace(t)
	sys := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns + "-sys"}}
	if err := env.Client.Create(t.Context(), sys); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), sys) })
	return newTestbedIn(t, ns, sys.Name, mutate...)
}

// newTestbedIn is newTestbed with existing namespaces.
func newTestbedIn(t testing.TB, ns, system string, mutate ...func(*Options)) *testbed {
	t.Helper()
	tb := &testbed{t: t, ns: ns, sys: system}
	tb.renewLease(time.Now(), 3600)
	tb.opts = Options{
		RESTConfig: env.Config, SystemNamespace: tb.sys, Namespaces: []string{tb.ns, tb.sys},
		MetricsAddr: "0", ProbeAddr: "0", SkipNameValidation: true,
		StatusInterval: 200 * time.Millisecond, CSRGracePeriod: 2 * time.Second,
	}
	for _, m := range mutate {
		m(&tb.opts)
	}
	tb.start()
	t.Cleanup(tb.stop)
	return tb
}

// start starts a controller; stop stops it.
func (tb *testbed) start() {
	tb.t.Helper()
	mgr, err := New(tb.opts)
	if err != nil {
		tb.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.cancel, tb.done = cancel, make(chan error, 1)
	go func() { tb.done <- mgr.Start(ctx) }()
}

func (tb *testbed) stop() {
	if tb.cancel == nil {
		return
	}
	tb.cancel()
	if err := <-tb.done; err != nil {
		tb.t.Errorf("controller stopped with %v", err)
	}
	tb.cancel = nil
}

// renewLease writes the gateway's Lease as renewed at renew for seconds.
func (tb *testbed) renewLease(renew time.Time, seconds int32) {
	tb.t.Helper()
	ctx := tb.t.Context()
	l := &coordinationv1.Lease{}
	key := client.ObjectKey{Namespace: tb.sys, Name: gatewayName}
	err := env.Client.Get(ctx, key, l)
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To(gatewayName), LeaseDurationSeconds: ptr.To(seconds), RenewTime: &metav1.MicroTime{Time: renew}}
	switch {
	case apierrors.IsNotFound(err):
		l.ObjectMeta = metav1.ObjectMeta{Namespace: tb.sys, Name: gatewayName, Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway}}
		err = env.Client.Create(ctx, l)
	case err == nil:
		err = env.Client.Update(ctx, l)
	}
	if err != nil {
		tb.t.Fatalf("lease: %v", err)
	}
}

// fakeDevice is a device as the test's gateway knows it: its keys, what it
// accepted, whether it is online and whether it fails new versions.
type fakeDevice struct {
	name    string
	id      string
	sealing *ecdh.PrivateKey
	replay  marks
	online  bool
	fail    bool
	modules map[string][]byte // app -> plaintext installed
	seqs    map[string][]uint64
}

// marks are a fake device's replay marks: the highest sequence accepted per
// application, which artifact.Verifier refuses to go below.
type marks map[string]uint64

// LastSequence implements artifact.SequenceStore.
func (m marks) LastSequence(app string) (uint64, error) { return m[app], nil }

// gateway plays the gateway's part: it delivers DeviceApplications to
// online fake devices, verifying every artifact as a device does, writes
// their status, and confirms removals.
type gateway struct {
	tb      *testbed
	mu      sync.Mutex
	devices map[string]*fakeDevice
	signing ed25519.PublicKey
}

func newGateway(tb *testbed) *gateway {
	return &gateway{tb: tb, devices: map[string]*fakeDevice{}}
}

type deviceOpt func(*wasmbedv1.Device, *fakeDevice)

func withType(t wasmbedv1.DeviceType) deviceOpt {
	return func(d *wasmbedv1.Device, _ *fakeDevice) { d.Spec.DeviceType = t }
}

func withLabels(l map[string]string) deviceOpt {
	return func(d *wasmbedv1.Device, _ *fakeDevice) { d.Labels = l }
}

func noSealingKey() deviceOpt {
	return func(d *wasmbedv1.Device, _ *fakeDevice) { d.Spec.SealingKey = "" }
}

// addDevice creates a Device (Connected through this gateway unless
// offline) and its fake.
func (g *gateway) addDevice(name string, opts ...deviceOpt) *fakeDevice {
	t := g.tb.t
	t.Helper()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDevice{name: name, id: name, sealing: key, replay: marks{}, online: true, modules: map[string][]byte{}, seqs: map[string][]uint64{}}
	d := fixture.Device(name, fixture.InNamespace(g.tb.ns))
	d.Spec.SealingKey = base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())
	for _, o := range opts {
		o(d, f)
	}
	if err := env.Client.Create(t.Context(), d); err != nil {
		t.Fatalf("create device %s: %v", name, err)
	}
	g.setOnline(f, d, f.online)
	g.mu.Lock()
	g.devices[name] = f
	g.mu.Unlock()
	return f
}

// setOnline writes the Device's status as the gateway does on connect or
// goodbye.
func (g *gateway) setOnline(f *fakeDevice, _ *wasmbedv1.Device, online bool) {
	t := g.tb.t
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d := &wasmbedv1.Device{}
		if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: g.tb.ns, Name: f.name}, d); err != nil {
			return err
		}
		now := metav1.Now()
		d.Status.Phase, d.Status.Gateway, d.Status.LastSeen = wasmbedv1.DevicePhaseDisconnected, "", &now
		if online {
			d.Status.Phase, d.Status.Gateway, d.Status.ConnectedSince = wasmbedv1.DevicePhaseConnected, gatewayName, &metav1.MicroTime{Time: now.Time}
		}
		return env.Client.Status().Update(t.Context(), d)
	})
	if err != nil {
		t.Fatalf("device %s status: %v", f.name, err)
	}
	g.mu.Lock()
	f.online = online
	g.mu.Unlock()
}

func (g *gateway) signingKey(ctx context.Context) (ed25519.PublicKey, error) {
	if g.signing != nil {
		return g.signing, nil
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: g.tb.sys, Name: wasmbedv1.IssuerConfigMap}, cm); err != nil {
		return nil, err
	}
	pub, err := issuer.ParsePublicData(cm.Data)
	if err != nil {
		return nil, err
	}
	g.signing = pub.SigningKey
	return g.signing, nil
}

// step handles every DeviceApplication once.
func (g *gateway) step(ctx context.Context) {
	t := g.tb.t
	list := &wasmbedv1.DeviceApplicationList{}
	if err := env.Client.List(ctx, list, client.InNamespace(g.tb.ns)); err != nil {
		t.Errorf("list deviceapplications: %v", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range list.Items {
		da := &list.Items[i]
		f := g.devices[da.Spec.Device]
		if f == nil || !f.online {
			continue
		}
		if !da.DeletionTimestamp.IsZero() {
			controllerutil.RemoveFinalizer(da, wasmbedv1.FinalizerDeviceRemoval)
			if err := env.Client.Update(ctx, da); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				t.Errorf("confirm removal of %s: %v", da.Name, err)
			}
			delete(f.modules, da.Spec.AppName)
			continue
		}
		desired := wasmbedv1.DeviceApplicationPhaseRunning
		if da.Spec.State == wasmbedv1.RunStateStopped {
			desired = wasmbedv1.DeviceApplicationPhaseStopped
		}
		st := da.Status
		switch a := da.Spec.Artifact; {
		case a != nil && st.AttemptedSequence != a.Sequence:
			if err := g.deliver(ctx, f, da); err != nil {
				t.Errorf("device %s refused %s sequence %d: %v", f.name, da.Name, a.Sequence, err)
				continue
			}
			st.AttemptedSequence = a.Sequence
			if f.fail {
				st.Phase, st.Reason, st.Message = wasmbedv1.DeviceApplicationPhaseFailed, "FellBack", "the new version failed to start; the previous one runs"
			} else {
				st.Phase, st.Reason, st.Message = desired, "", ""
				st.Sequence, st.Version, st.ModuleHash = a.Sequence, da.Spec.Version, a.ModuleHash
			}
		case st.Sequence > 0 && !st.Phase.Failed() && st.Phase != desired:
			st.Phase = desired
		default:
			continue
		}
		st.Gateway = gatewayName
		da.Status = st
		if err := env.Client.Status().Update(ctx, da); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			t.Errorf("status of %s: %v", da.Name, err)
		}
	}
}

// deliver fetches the payload once per version, joins it with the
// device's part, and verifies it as the device does; the device records
// the sequence.
func (g *gateway) deliver(ctx context.Context, f *fakeDevice, da *wasmbedv1.DeviceApplication) error {
	a := da.Spec.Artifact
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: da.Namespace, Name: a.Payload.ConfigMap}, cm); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	payload := cm.BinaryData[PayloadKey]
	if sum := sha256.Sum256(payload); hex.EncodeToString(sum[:]) != a.Payload.SHA256 || int64(len(payload)) != a.Payload.Size {
		return errors.New("payload does not match its reference")
	}
	data, err := (&artifact.Signed{Manifest: a.Manifest, Signature: a.Signature, Payload: payload, KeyMaterial: a.KeyMaterial}).Marshal()
	if err != nil {
		return err
	}
	signing, err := g.signingKey(ctx)
	if err != nil {
		return err
	}
	v, err := artifact.NewVerifier(artifact.VerifierConfig{DeviceID: f.id, TrustedKeys: []ed25519.PublicKey{signing}, SealingKey: f.sealing})
	if err != nil {
		return err
	}
	art, err := v.Verify(data, f.replay)
	if err != nil {
		return err
	}
	f.replay[art.Manifest.App] = art.Manifest.Sequence // Verify refused anything not above the mark
	if got := hex.EncodeToString(art.Manifest.ModuleHash[:]); got != a.ModuleHash {
		return fmt.Errorf("module hash %s, spec says %s", got, a.ModuleHash)
	}
	f.modules[art.Manifest.App] = art.Module
	f.seqs[art.Manifest.App] = append(f.seqs[art.Manifest.App], art.Manifest.Sequence)
	return nil
}

// until steps the gateway until cond holds, failing the test after the
// timeout with cond's last description. cond is checked before each step,
// so the gateway does no more than cond needs.
func (g *gateway) until(timeout time.Duration, cond func(ctx context.Context) (bool, string)) {
	t := g.tb.t
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond(ctx)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, desc)
		}
		if g.devices != nil {
			g.step(ctx)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// application returns the stored Application.
func (tb *testbed) application(ctx context.Context, name string) *wasmbedv1.Application {
	app := &wasmbedv1.Application{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: tb.ns, Name: name}, app); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		tb.t.Fatal(err)
	}
	return app
}

// phaseIs waits for the Application's phase, up to date with its spec.
func (tb *testbed) phaseIs(name string, phase wasmbedv1.ApplicationPhase) func(context.Context) (bool, string) {
	return func(ctx context.Context) (bool, string) {
		app := tb.application(ctx, name)
		if app == nil {
			return false, "no application " + name
		}
		return app.Status.Phase == phase && app.Status.ObservedGeneration == app.Generation,
			fmt.Sprintf("application %s: got phase %q (observed generation %d of %d), want %q; status %+v", name, app.Status.Phase, app.Status.ObservedGeneration, app.Generation, phase, app.Status)
	}
}

// deviceApplications returns the namespace's DeviceApplications by device.
func (tb *testbed) deviceApplications(ctx context.Context) map[string]*wasmbedv1.DeviceApplication {
	list := &wasmbedv1.DeviceApplicationList{}
	if err := env.Client.List(ctx, list, client.InNamespace(tb.ns)); err != nil {
		tb.t.Fatal(err)
	}
	out := map[string]*wasmbedv1.DeviceApplication{}
	for i := range list.Items {
		da := &list.Items[i]
		if _, dup := out[da.Spec.Device]; dup {
			tb.t.Errorf("two DeviceApplications for device %s", da.Spec.Device)
		}
		out[da.Spec.Device] = da
	}
	return out
}

// newApp returns an Application of module targeting devices.
func (tb *testbed) newApp(name string, module []byte, devices ...string) *wasmbedv1.Application {
	app := fixture.Application(name, fixture.InNamespace(tb.ns), fixture.Targeting(devices...), fixture.WithModule(module))
	app.Spec.Version = "1.0"
	return app
}

func (tb *testbed) create(obj client.Object) {
	tb.t.Helper()
	if err := env.Client.Create(tb.t.Context(), obj); err != nil {
		tb.t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// mutateApp changes the stored Application, retrying on conflict.
func (tb *testbed) mutateApp(name string, fn func(*wasmbedv1.Application)) {
	tb.t.Helper()
	for range 20 {
		app := tb.application(tb.t.Context(), name)
		fn(app)
		err := env.Client.Update(tb.t.Context(), app)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			tb.t.Fatalf("update application %s: %v", name, err)
		}
	}
	tb.t.Fatalf("update application %s: too many conflicts", name)
}

// events returns the reasons of the Events about an object.
func (tb *testbed) events(ctx context.Context, name string) []string {
	list := &eventsv1.EventList{}
	if err := env.Client.List(ctx, list, client.InNamespace(tb.ns)); err != nil {
		tb.t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// hasEvent waits for an Event with reason about name.
func (tb *testbed) hasEvent(name, reason string) func(context.Context) (bool, string) {
	return func(ctx context.Context) (bool, string) {
		got := tb.events(ctx, name)
		for _, r := range got {
			if r == reason {
				return true, ""
			}
		}
		return false, fmt.Sprintf("events about %s: got %v, want %s", name, got, reason)
	}
}

func condition(app *wasmbedv1.Application, typ string) *metav1.Condition {
	return meta.FindStatusCondition(app.Status.Conditions, typ)
}

var (
	blinky  = apps.MustLoad(apps.Blinky)
	sensor  = apps.MustLoad(apps.Sensor)
	compute = apps.MustLoad(apps.Compute)
)

// containsAny reports whether b contains one of the needles.
func containsAny(b []byte, needles ...[]byte) bool {
	for _, n := range needles {
		if len(n) > 0 && bytes.Contains(b, n) {
			return true
		}
	}
	return false
}
