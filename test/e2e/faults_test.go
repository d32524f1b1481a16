package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// rounds is how many faults a fault test injects: one, or more in the long
// version.
func rounds(longRounds int) int {
	if long {
		return longRounds
	}
	return 1
}

// convergeTimeout grows with the fleet.
func convergeTimeout() time.Duration {
	return 2*time.Minute + time.Duration(fleetSize)*time.Second
}

// nextRelease is the version after round rounds of updates on top of v1:
// 2.0, 3.0, ..., alternating the sensor and blinky modules so that every
// version is a new module.
func nextRelease(round int) release {
	mod := apps.Sensor
	if round%2 == 1 {
		mod = apps.Blinky
	}
	return release{version: strconv.Itoa(round+2) + ".0", module: apps.MustLoad(mod)}
}

// rolloutAt waits until the rollout of version reached a first device and
// logs how far it got, the moment a fault strikes.
func (fl *fleet) rolloutAt(t *testing.T, app, version string) {
	t.Helper()
	fl.waitRolloutStarted(t, app, version)
	n := 0
	for _, d := range fl.sim.Devices() {
		if fw := d.Firmware(); fw != nil {
			if st, ok := fw.Applications.Status(app); ok && st.Version == version {
				n++
			}
		}
	}
	t.Logf("fault with %s %s on %d of %d devices", app, version, n, len(fl.names))
}

// deployV1 deploys v1 to the fleet, one device at a time, and waits until
// it runs everywhere.
func (fl *fleet) deployV1(t *testing.T, app string) {
	t.Helper()
	fl.deploy(t, fl.application(app, v1, 1))
	fl.waitConverged(t, convergeTimeout(), desired{app: app, release: v1, installs: 1})
}

// waitGateway waits until every Device is Connected through gateway.
func (fl *fleet) waitGateway(t *testing.T, gateway string) {
	t.Helper()
	waitFor(t, time.Minute, "every device to be connected through "+gateway, func() []string {
		var out []string
		for _, name := range fl.names {
			dev := &wasmbedv1.Device{}
			if err := fl.e.admin.Get(t.Context(), keyOf(name), dev); err != nil {
				out = append(out, err.Error())
			} else if dev.Status.Gateway != gateway || dev.Status.Phase != wasmbedv1.DevicePhaseConnected {
				out = append(out, fmt.Sprintf("%s: %s through %q", name, dev.Status.Phase, dev.Status.Gateway))
			}
		}
		return out
	})
}

// TestGatewayKilledMidRollout runs two gateway replicas as processes and
// kills the one holding every session with SIGKILL while an update rolls
// out: the devices move to the other replica, which completes the rollout,
// and no device installs a version twice. The long version kills the
// replicas in turn, restarting the dead one each time.
func TestGatewayKilledMidRollout(t *testing.T) {
	e := platformEnv(t)
	gws := []*gatewayProc{e.startGatewayProc(t, "e2e-gw-a", nil), e.startGatewayProc(t, "e2e-gw-b", nil)}
	names := []string{"e2e-gw-a", "e2e-gw-b"}
	fl := e.startFleet(t, fleetOptions{devices: fleetSize, sessions: []string{gws[0].session, gws[1].session}})
	fl.waitGateway(t, names[0]) // devices try the endpoints in order

	const app = "gw-kill"
	fl.deployV1(t, app)
	w := watchSequences(t, e, app)
	for round := range rounds(4) {
		rel := nextRelease(round)
		fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.Version, s.WasmBinary = rel.version, rel.module })
		fl.rolloutAt(t, app, rel.version)
		victim, survivor := round%2, (round+1)%2
		gws[victim].kill(t)
		fl.waitConverged(t, convergeTimeout(), desired{app: app, release: rel, installs: uint64(round) + 2}) //nolint:gosec // small
		fl.waitGateway(t, names[survivor])
		gws[victim] = e.startGatewayProc(t, names[victim], gws[victim])
	}
	w.check(t)
}

// TestControllerKilledMidRollout runs the controller as a process and
// kills it with SIGKILL while an update rolls out one device at a time; a
// new controller completes the rollout, no issued or installed sequence
// goes down, and no device installs a version twice.
func TestControllerKilledMidRollout(t *testing.T) {
	e := platformEnv(t)
	e.p.StopController()
	t.Cleanup(func() {
		if err := e.p.StartController(); err != nil {
			t.Errorf("restart the in-process controller: %v", err)
		}
	})
	ctrl := e.startControllerProc(t, "e2e-controller-1")
	fl := e.startFleet(t, fleetOptions{devices: fleetSize})

	const app = "ctrl-kill"
	fl.deployV1(t, app)
	w := watchSequences(t, e, app)
	for round := range rounds(5) {
		rel := nextRelease(round)
		fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.Version, s.WasmBinary = rel.version, rel.module })
		fl.rolloutAt(t, app, rel.version)
		ctrl.kill(t)
		ctrl = e.startControllerProc(t, fmt.Sprintf("e2e-controller-%d", round+2))
		fl.waitConverged(t, convergeTimeout(), desired{app: app, release: rel, installs: uint64(round) + 2}) //nolint:gosec // small
	}
	w.check(t)
}

// TestAPIServerRestartedMidRollout stops etcd and kube-apiserver while an
// update rolls out, for longer than the controller's leader-election renew
// deadline, and starts them again on the same data: the gateway, which kept
// running, recovers on its own, the platform starts the controller that
// lost its Lease again; the rollout completes, and a further update proves
// both still work.
func TestAPIServerRestartedMidRollout(t *testing.T) {
	e := platformEnv(t)
	fl := e.startFleet(t, fleetOptions{devices: fleetSize})

	const app = "api-restart"
	fl.deployV1(t, app)
	w := watchSequences(t, e, app)
	n := rounds(3)
	for round := range n + 1 {
		rel := nextRelease(round)
		fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.Version, s.WasmBinary = rel.version, rel.module })
		if round < n {
			fl.rolloutAt(t, app, rel.version)
			// The first outage outlasts the controller's leader-election
			// renew deadline (10 s): it loses its Lease and must be
			// started again; the others are short.
			down := 2 * time.Second
			if round == 0 {
				down = 12 * time.Second
			}
			e.restartAPIServer(t, down)
		}
		fl.waitConverged(t, convergeTimeout(), desired{app: app, release: rel, installs: uint64(round) + 2}) //nolint:gosec // small
	}
	fl.waitConnected(t)
	w.check(t)
	e.waitHealthy(t)
}

// TestPowerLossMidInstall cuts every device's power at a different write
// step of installing an update (the cut step torn in half on every other
// device): the previous version runs after the reboot, and once the
// devices reach the gateway again the update completes.
func TestPowerLossMidInstall(t *testing.T) {
	e := platformEnv(t)
	px := newProxy(t, e.gw.Session)
	fl := e.startFleet(t, fleetOptions{devices: fleetSize, sessions: []string{px.Addr()}})

	const app = "power-loss"
	fl.deploy(t, fl.application(app, v1, len(fl.names)))
	fl.waitConverged(t, convergeTimeout(), desired{app: app, release: v1, installs: 1})

	devs := fl.sim.Devices()
	steps := []int64{0, 1, 2, 3, 5, 8}
	for i, d := range devs {
		if i%2 == 0 {
			d.Flash().SetTear(flash.TearHalf)
		}
		d.Flash().FailAfter(steps[i%len(steps)])
	}
	fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.Version, s.WasmBinary = v2.version, v2.module })
	waitFor(t, convergeTimeout(), "every device to lose power installing "+v2.version, func() []string {
		var out []string
		for i, d := range devs {
			if !d.Flash().Off() {
				out = append(out, fmt.Sprintf("%s: flash powered after %d write steps", fl.names[i], d.Flash().Steps()))
			}
		}
		return out
	})
	// Keep the gateway out of reach while the devices reboot, to see what
	// they run on their own.
	px.Refuse(true)
	px.Cut()
	boots := make([]uint64, len(devs))
	for i, d := range devs {
		boots[i] = d.Status().Boots
		d.PowerLoss()
	}
	waitFor(t, time.Minute, "every device to boot again with "+v1.version+" running", func() []string {
		var out []string
		for i, d := range devs {
			fw := d.Firmware()
			if d.Status().Boots <= boots[i] || fw == nil || fw.Client == nil {
				out = append(out, fl.names[i]+": not booted again")
				continue
			}
			st, ok := fw.Applications.Status(app)
			if !ok || st.Version != v1.version || st.State != protocol.StateRunning {
				out = append(out, fmt.Sprintf("%s: %s %q %v after the reboot, want %q running", fl.names[i], app, st.Version, st.State, v1.version))
			}
		}
		return out
	})
	px.Refuse(false)
	// The cut may have struck after the new version was written (then it
	// is written once more after the rollback), never more.
	fl.waitConverged(t, convergeTimeout(), desired{app: app, release: v2, maxInstalls: 3})
	for i, d := range devs {
		if st := d.Status(); st.Installs < 2 || st.PowerLosses != 1 {
			t.Errorf("%s: %d versions written, %d power losses; want at least 2 and 1", fl.names[i], st.Installs, st.PowerLosses)
		}
	}
	fl.waitConnected(t)
}

// TestNetworkFlapsMidRollout puts a TCP proxy between the devices and the
// gateway and, while an update rolls out one device at a time, cuts every
// connection, stalls the bytes in flight and refuses new connections at
// random: once the network is quiet the rollout completes, each device
// installed each version once, and no sequence went down.
func TestNetworkFlapsMidRollout(t *testing.T) {
	e := platformEnv(t)
	px := newProxy(t, e.gw.Session)
	fl := e.startFleet(t, fleetOptions{devices: fleetSize, sessions: []string{px.Addr()}})

	const app = "net-flap"
	fl.deployV1(t, app)
	w := watchSequences(t, e, app)
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("WASMBED_E2E_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("network faults from seed %d (WASMBED_E2E_SEED)", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	faults := 12
	if long {
		faults = 120
	}
	rel := v2
	fl.update(t, app, func(s *wasmbedv1.ApplicationSpec) { s.Version, s.WasmBinary = rel.version, rel.module })
	cut, stalled, refused := 0, 0, 0
	for range faults {
		time.Sleep(time.Duration(100+r.IntN(300)) * time.Millisecond)
		switch x := r.IntN(10); {
		case x < 5:
			px.Cut()
			cut++
		case x < 8:
			px.Stall(time.Duration(200+r.IntN(1300)) * time.Millisecond)
			stalled++
		default:
			px.Refuse(true)
			px.Cut()
			time.Sleep(time.Duration(500+r.IntN(1000)) * time.Millisecond)
			px.Refuse(false)
			refused++
		}
	}
	t.Logf("%d cuts, %d stalls, %d refusal periods; %d connections accepted", cut, stalled, refused, px.accepted.Load())
	fl.waitConverged(t, convergeTimeout(), desired{app: app, release: rel, installs: 2})
	fl.waitConnected(t)
	w.check(t)
}
