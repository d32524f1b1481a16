package device_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// TestReenrollmentCannotRepinSigningKey plays the attack on re-enrollment:
// a device enrolled by an honest gateway lets its certificate expire and
// enrolls again; the gateway that answers (a compromised replica: a valid
// gateway certificate, the platform's device CA, but a signing key of its
// own) offers its key. The device keeps the key it pinned first, so the
// rogue's artifacts are refused and the platform's still install.
func TestReenrollmentCannotRepinSigningKey(t *testing.T) {
	clk := hal.NewManualClock(time.Now())
	ca, err := pki.NewAuthority(pki.AuthorityOptions{Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	honest := startServer(t, clienttest.Options{Authority: ca, DeviceLifetime: time.Hour})
	_, rogueKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	rogue := startServer(t, clienttest.Options{Authority: ca, SigningKey: rogueKey, DeviceLifetime: time.Hour})

	cfg := testConfig(honest)
	cfg.Gateways = []string{rogue.SessionAddr()}
	cfg.EnrollGateways = []string{honest.EnrollAddr(), rogue.EnrollAddr()}
	cfg.Engine = sharedEngine(t)
	cfg.Clock = clk
	d := newDevice(t, cfg)
	runDevice(t, d)
	waitFor(t, "online", func() bool { return d.Status().Phase == device.Online })
	if honest.Enrolled() != 1 || rogue.Enrolled() != 0 {
		t.Fatalf("first enrollment: honest %d, rogue %d; want the honest gateway", honest.Enrolled(), rogue.Enrolled())
	}

	// The certificate expires; the honest gateway is gone, the rogue answers.
	honest.StopListening()
	clk.Advance(2 * time.Hour)
	for _, p := range rogue.Peers() {
		p.Drop()
	}
	deadline := time.Now().Add(20 * time.Second)
	for rogue.Enrolled() < 1 || rogue.Sessions.Load() < 2 || d.Status().Phase != device.Online {
		if time.Now().After(deadline) {
			t.Fatalf("no session after re-enrollment: rogue enrolled %d, sessions %d, phase %s",
				rogue.Enrolled(), rogue.Sessions.Load(), d.Status().Phase)
		}
		if next, ok := clk.Next(); ok && next <= time.Minute {
			clk.Advance(next)
		}
		time.Sleep(5 * time.Millisecond)
	}
	fw := d.Firmware()
	if fw == nil {
		t.Fatal("device is off")
	}
	if got := fw.Security.IgnoredEnrollmentKeys(); got != 1 {
		t.Fatalf("ignored enrollment keys: got %d, want the rogue's signing key", got)
	}
	id := d.Status().DeviceID
	peer := rogue.Peer(id)
	if peer == nil {
		t.Fatal("no session on the rogue gateway")
	}
	ctx := ctxFor(t)
	module := apps.MustLoad(apps.Blinky)
	st, err := peer.Deploy(ctx, "blinky", 1, module) // signed with the rogue's key
	if err != nil {
		t.Fatal(err)
	}
	if st.State != protocol.StateRefused || st.Reason != protocol.ReasonBadSignature {
		t.Fatalf("artifact of the rogue's key: got %v/%v (%s), want refused for a bad signature", st.State, st.Reason, st.Message)
	}
	good, err := honest.SignArtifact(id, "blinky", 2, module, sandbox.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	env, err := peer.Send(ctx, &protocol.Deploy{App: "blinky", Sequence: 2, Artifact: good, Start: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := env.Message.(*protocol.AppStatus); st.State != protocol.StateRunning {
		t.Fatalf("artifact of the pinned key: got %v (%s), want running", st.State, st.Message)
	}
}
