package security

import (
	"context"
	"errors"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/monitor"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// The managers plug into the gateway client as they are.
var (
	_ client.Identity  = (*Manager)(nil)
	_ client.Apps      = (*appmgr.Commands)(nil)
	_ client.Telemetry = (*monitor.Monitor)(nil)
)

// failingRunner fails to start the versions listed.
type failingRunner map[string]bool

func (r failingRunner) Start(_ context.Context, spec appmgr.RunSpec, _ func(error)) (appmgr.Instance, error) {
	if r[spec.Version] {
		return nil, &appmgr.TrapError{Reason: "unreachable"}
	}
	return nopRunner{}, nil
}

func TestCommands(t *testing.T) {
	p := newPlatform(t)
	d, _ := enrolledDevice(t, p)
	var events []appmgr.Event
	m, err := appmgr.Open(t.Context(), appmgr.Config{Store: d.store, Runner: failingRunner{"1.0.3": true},
		Observer: func(e appmgr.Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	c := &appmgr.Commands{Apps: m, Verifier: verifier{d.sec}}
	ctx := t.Context()
	bad := p.sign(t, manifest("app", 1), nil)
	bad[len(bad)-1] ^= 1
	steps := []struct {
		name   string
		do     func() protocol.AppStatus
		state  protocol.AppState
		reason protocol.Reason
		seq    uint64
	}{
		{"tampered artifact", func() protocol.AppStatus {
			return c.Deploy(ctx, &protocol.Deploy{App: "app", Sequence: 1, Artifact: bad, Start: true})
		}, protocol.StateRefused, protocol.ReasonBadSignature, 1},
		{"deploy", func() protocol.AppStatus {
			return c.Deploy(ctx, &protocol.Deploy{App: "app", Sequence: 1, Artifact: p.sign(t, manifest("app", 1), nil), Start: true})
		}, protocol.StateRunning, 0, 1},
		{"confidential update", func() protocol.AppStatus {
			return c.Update(ctx, &protocol.Update{App: "app", Sequence: 2, Artifact: p.sign(t, manifest("app", 2), d.sec.SealingPublicKey()), Start: true})
		}, protocol.StateRunning, 0, 2},
		{"update that traps falls back", func() protocol.AppStatus {
			return c.Update(ctx, &protocol.Update{App: "app", Sequence: 3, Artifact: p.sign(t, manifest("app", 3), nil), Start: true})
		}, protocol.StateTrapped, 0, 3},
		{"stop names another sequence", func() protocol.AppStatus { return c.Stop(ctx, &protocol.Stop{App: "app", Sequence: 3}) },
			protocol.StateRefused, protocol.ReasonNotInstalled, 3},
		{"stop", func() protocol.AppStatus { return c.Stop(ctx, &protocol.Stop{App: "app", Sequence: 2}) }, protocol.StateStopped, 0, 2},
		{"start", func() protocol.AppStatus { return c.Start(ctx, &protocol.Start{App: "app"}) }, protocol.StateRunning, 0, 2},
		{"start unknown", func() protocol.AppStatus { return c.Start(ctx, &protocol.Start{App: "nope"}) },
			protocol.StateRefused, protocol.ReasonNotInstalled, 0},
		{"replayed old artifact", func() protocol.AppStatus {
			return c.Deploy(ctx, &protocol.Deploy{App: "app", Sequence: 1, Artifact: p.sign(t, manifest("app", 1), nil)})
		}, protocol.StateRefused, protocol.ReasonReplay, 1},
		{"remove", func() protocol.AppStatus { return c.Remove(ctx, &protocol.Remove{App: "app"}) }, protocol.StateRemoved, 0, 2},
	}
	for _, st := range steps {
		got := st.do()
		if got.State != st.state || got.Reason != st.reason || got.Sequence != st.seq || got.App == "" {
			t.Fatalf("%s: got %+v, want state %s reason %s sequence %d", st.name, got, st.state, st.reason, st.seq)
		}
		if st.name == "update that traps falls back" {
			last := events[len(events)-1]
			if last.Kind != appmgr.EventFellBack || last.Status.Sequence != 2 || last.Status.State != protocol.StateRunning {
				t.Fatalf("after failed update: last event %s %+v, want fell back to running 2", last.Kind, last.Status)
			}
		}
	}
	if sts := c.Statuses(nil); len(sts) != 0 {
		t.Fatalf("statuses after remove: %+v", sts)
	}
}

func TestConfigure(t *testing.T) {
	p := newPlatform(t)
	d, _ := enrolledDevice(t, p)
	m, _ := appmgr.Open(t.Context(), appmgr.Config{Store: d.store, Runner: nopRunner{}})
	c := &appmgr.Commands{Apps: m, Verifier: verifier{d.sec}}
	if st := c.Deploy(t.Context(), &protocol.Deploy{App: "app", Sequence: 1, Artifact: p.sign(t, manifest("app", 1), nil)}); st.State != protocol.StateInstalled {
		t.Fatalf("deploy: %+v", st)
	}
	sealer, err := seal.NewSealer(p.sealKey, d.sec.SealingPublicKey(), seal.SealerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := cbor.Marshal(map[string]string{"token": "s3cret"})
	blob, err := sealer.Seal(seal.PurposeConfig, secret, seal.ConfigAAD("dev-1", "app", 4))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(t.Context(), &protocol.ConfigPush{App: "app", Generation: 4, Values: map[string]string{"period": "5"}, Sealed: blob}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"period": "5", "token": "s3cret"} {
		if got, ok := m.Lookup("app", k); !ok || got != want {
			t.Fatalf("config %s: got %q, want %q", k, got, want)
		}
	}
	// Sealed for generation 4, replayed as generation 5: refused.
	err = c.Configure(t.Context(), &protocol.ConfigPush{App: "app", Generation: 5, Sealed: blob})
	if err == nil || d.sec.Refusals(RefusedDecrypt) != 1 {
		t.Fatalf("got %v, want a decryption refusal", err)
	}
	if _, err := d.sec.OpenConfig("app", 4, []byte("garbage")); !errors.As(err, new(*RefusalError)) {
		t.Fatalf("garbage: got %v", err)
	}
}
