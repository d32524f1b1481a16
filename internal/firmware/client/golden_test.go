package client_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/client"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// describe renders one message of a session transcript.
func describe(env protocol.Envelope) string {
	s := fmt.Sprintf("id=%d %s", env.MessageID, env.Message.Type())
	switch m := env.Message.(type) {
	case *protocol.AppStatus:
		s += fmt.Sprintf(" app=%s seq=%d state=%s", m.App, m.Sequence, m.State)
		if m.Reason != 0 {
			s += " reason=" + m.Reason.String()
		}
	case *protocol.Error:
		s += " code=" + m.Code.String()
	case *protocol.Disconnect:
		s += " reason=" + m.Reason.String()
	case *protocol.ConfigAck:
		s += fmt.Sprintf(" app=%s generation=%d", m.App, m.Generation)
	case *protocol.MetricsReport:
		s += fmt.Sprintf(" apps=%d", len(m.Apps))
	}
	return s
}

// TestSessionTranscript drives one session through its life — announce,
// heartbeats, commands, an unknown message, shutdown — on a fake clock and
// compares what the device sent with testdata/session.golden.
func TestSessionTranscript(t *testing.T) {
	srv := startServer(t, clienttest.Options{})
	clk := hal.NewManualClock(time.Now()) // certificates are issued on the wall clock
	d := startDevice(t, srv, deviceOpts{clock: clk, heartbeat: 10 * time.Second})
	ctx := waitCtx(t)
	peer, err := srv.AnyPeer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitPhase(t, d.client, client.Online)
	if !clk.WaitForTimers(1, 10*time.Second) {
		t.Fatal("heartbeat timer not armed")
	}
	for range 2 {
		before := srv.Heartbeats.Load()
		clk.Advance(10 * time.Second)
		waitUntil(t, func() bool { return srv.Heartbeats.Load() > before })
	}
	steps := []protocol.Message{
		&protocol.Deploy{App: "blink", Sequence: 1, Artifact: []byte("ok"), Start: true},
		&protocol.Deploy{App: "evil", Sequence: 1, Artifact: []byte("bad")},
		&protocol.ConfigPush{App: "blink", Generation: 2, Values: map[string]string{"k": "v"}},
		&protocol.Stop{App: "blink"},
	}
	for _, m := range steps {
		reply, err := peer.Send(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		// Let the report that follows an application change go out.
		if m.Type() != protocol.TypeConfigPush {
			waitUntil(t, func() bool { return reportAfter(srv.History(), reply.MessageID) })
		}
	}
	if _, err := peer.SendFrame(ctx, 1000, rawFrame(1000, 999)); err != nil {
		t.Fatal(err)
	}
	d.cancel()
	<-peer.Done()

	var b strings.Builder
	for _, r := range srv.History() {
		fmt.Fprintln(&b, describe(r.Env))
	}
	got := b.String()
	path := filepath.Join("testdata", "session.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("session transcript differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// reportAfter reports whether a MetricsReport follows the reply to id.
func reportAfter(h []clienttest.Record, id uint64) bool {
	seen := false
	for _, r := range h {
		if r.Env.MessageID == id {
			seen = true
		} else if _, ok := r.Env.Message.(*protocol.MetricsReport); ok && seen {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
