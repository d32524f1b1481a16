package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// connPair returns a gateway Conn and a device Conn joined by a pipe.
func connPair(t *testing.T) (gw, dev *Conn, gwEnd, devEnd net.Conn) {
	t.Helper()
	gwEnd, devEnd = net.Pipe()
	t.Cleanup(func() { gwEnd.Close(); devEnd.Close() })
	var err error
	if gw, err = NewConn(gwEnd, mustCodec(t, Gateway, Limits{})); err != nil {
		t.Fatal(err)
	}
	if dev, err = NewConn(devEnd, mustCodec(t, Device, Limits{})); err != nil {
		t.Fatal(err)
	}
	return gw, dev, gwEnd, devEnd
}

// serveDevice answers application commands like firmware would, until the
// stream ends.
func serveDevice(t *testing.T, dev *Conn) {
	t.Helper()
	for {
		env, err := dev.Receive()
		if reply, ok := ReplyTo(err); ok {
			if err := dev.Reply(reply.MessageID, reply.Message); err != nil {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		switch m := env.Message.(type) {
		case *Deploy:
			_ = dev.Reply(env.MessageID, &AppStatus{App: m.App, Sequence: m.Sequence, State: StateRunning})
		case *Start:
			_ = dev.Reply(env.MessageID, &Error{Code: CodeNotFound, Text: m.App})
		}
	}
}

func TestConnRequest(t *testing.T) {
	gw, dev, _, _ := connPair(t)
	go serveDevice(t, dev)
	go func() {
		for {
			if _, err := gw.Receive(); err != nil && !errors.Is(err, ErrMalformed) {
				return
			}
		}
	}()

	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			app := fmt.Sprintf("app-%d", i)
			env, err := gw.Request(t.Context(), &Deploy{App: app, Sequence: uint64(i + 1), Artifact: []byte{1}})
			if err != nil {
				t.Errorf("Request(%s): %v", app, err)
				return
			}
			st, ok := env.Message.(*AppStatus)
			if !ok || st.App != app || st.Sequence != uint64(i+1) {
				t.Errorf("Request(%s): got %#v, want AppStatus for %s", app, env.Message, app)
			}
			if env.MessageID%2 != 0 {
				t.Errorf("gateway request id %d is odd", env.MessageID)
			}
		})
	}
	wg.Wait()

	_, err := gw.Request(t.Context(), &Start{App: "missing"})
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeNotFound || perr.Text != "missing" {
		t.Errorf("Request(Start missing): got %v, want *Error not found", err)
	}
}

// TestConnSendAndReceiveReply checks that replies to Send come back from
// Receive, with the Send's id.
func TestConnSendAndReceiveReply(t *testing.T) {
	gw, dev, _, _ := connPair(t)
	go func() {
		for {
			env, err := gw.Receive()
			if err != nil {
				return
			}
			if _, ok := env.Message.(*Heartbeat); ok {
				_ = gw.Reply(env.MessageID, &HeartbeatAck{ServerTime: 42})
			}
		}
	}()
	for range 3 {
		id, err := dev.Send(&Heartbeat{UptimeSeconds: 1})
		if err != nil {
			t.Fatal(err)
		}
		if id%2 != 1 {
			t.Errorf("device id %d is even", id)
		}
		env, err := dev.Receive()
		if err != nil {
			t.Fatal(err)
		}
		ack, ok := env.Message.(*HeartbeatAck)
		if !ok || env.MessageID != id || ack.ServerTime != 42 {
			t.Errorf("got %+v (%#v), want HeartbeatAck for id %d", env, env.Message, id)
		}
	}
}

// TestConnUnsupported sends a message type the receiver does not know and
// checks the sender gets CodeUnsupported and the session goes on.
func TestConnUnsupported(t *testing.T) {
	gwEnd, devEnd := net.Pipe()
	t.Cleanup(func() { gwEnd.Close(); devEnd.Close() })
	dev, err := NewConn(devEnd, mustCodec(t, Device, Limits{}))
	if err != nil {
		t.Fatal(err)
	}
	go serveDevice(t, dev)
	c := mustCodec(t, Gateway, Limits{})
	w, r := NewWriter(gwEnd, c), NewReader(gwEnd, c)

	if err := w.WriteFrame(unhex(t, "84 01 18 2a 18 63 a1 01 02")); err != nil { // id 42, type 99
		t.Fatal(err)
	}
	env, err := r.ReadEnvelope()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := env.Message.(*Error); !ok || e.Code != CodeUnsupported || env.MessageID != 42 {
		t.Fatalf("got %+v (%#v), want Error unsupported for id 42", env, env.Message)
	}
	if err := w.WriteEnvelope(Envelope{Version, 44, &Deploy{App: "a", Sequence: 1, Artifact: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	env, err = r.ReadEnvelope()
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := env.Message.(*AppStatus); !ok || st.State != StateRunning || env.MessageID != 44 {
		t.Errorf("after the unsupported message: got %#v, want AppStatus running for id 44", env.Message)
	}
}

func TestConnClosed(t *testing.T) {
	gw, _, _, devEnd := connPair(t)
	received := make(chan error, 1)
	go func() {
		_, err := gw.Receive()
		received <- err
	}()
	// Drain what the gateway writes so its Request does not block, then hang up.
	go func() {
		buf := make([]byte, 64)
		if _, err := devEnd.Read(buf); err == nil {
			devEnd.Close()
		}
	}()
	_, err := gw.Request(t.Context(), &Start{App: "a"})
	if !errors.Is(err, ErrConnClosed) || !errors.Is(err, io.EOF) {
		t.Errorf("Request on a closed stream: got %v, want ErrConnClosed wrapping io.EOF", err)
	}
	if err := <-received; err != io.EOF {
		t.Errorf("Receive: got %v, want io.EOF", err)
	}
	if _, err := gw.Request(t.Context(), &Start{App: "a"}); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Request after close: got %v, want ErrConnClosed", err)
	}
}

func TestConnRequestContext(t *testing.T) {
	gw, _, _, devEnd := connPair(t)
	go func() { _, _ = io.Copy(io.Discard, devEnd) }() // the device never answers
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := gw.Request(ctx, &Stop{App: "a"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if len(gw.pending) != 0 {
		t.Errorf("got %d pending requests after cancellation, want 0", len(gw.pending))
	}
}

func TestNewConnNeedsSide(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := NewConn(a, mustCodec(t, Either, Limits{})); err == nil {
		t.Error("NewConn(Either codec): got nil error, want one")
	}
}
