package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

func TestIDsParity(t *testing.T) {
	tests := []struct {
		side Side
		want []uint64
	}{
		{Device, []uint64{1, 3, 5, 7}},
		{Gateway, []uint64{2, 4, 6, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.side.String(), func(t *testing.T) {
			ids, err := NewIDs(tt.side)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tt.want {
				id := ids.Next()
				if id != want {
					t.Errorf("id %d: got %d, want %d", i, id, want)
				}
				if !Owns(tt.side, id) || Owns(tt.side.peer(), id) {
					t.Errorf("Owns(%v, %d) and Owns(%v, %d) disagree with the parity rule", tt.side, id, tt.side.peer(), id)
				}
			}
		})
	}
	if _, err := NewIDs(Either); err == nil {
		t.Error("NewIDs(Either): got nil error, want one")
	}
	if Owns(Gateway, 0) || Owns(Device, 0) || Owns(Either, 3) {
		t.Error("id 0, or an id for Either, is owned by a side")
	}
}

func TestIDsConcurrent(t *testing.T) {
	ids, _ := NewIDs(Gateway)
	const workers, each = 8, 500
	seen := make(chan uint64, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				seen <- ids.Next()
			}
		})
	}
	wg.Wait()
	close(seen)
	got := map[uint64]bool{}
	for id := range seen {
		if got[id] || id%2 != 0 {
			t.Fatalf("id %d allocated twice or odd", id)
		}
		got[id] = true
	}
}

func TestCallsDeliver(t *testing.T) {
	var calls Calls
	ids, _ := NewIDs(Gateway)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		call, err := calls.Register(ids.Next())
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			env, err := call.Wait(t.Context())
			if err != nil {
				t.Errorf("Wait(%d): %v", call.ID(), err)
				return
			}
			if st, ok := env.Message.(*AppStatus); !ok || st.App != fmt.Sprint(i) {
				t.Errorf("Wait(%d): got %#v, want AppStatus for %d", call.ID(), env.Message, i)
			}
		})
	}
	if got := calls.Pending(); got != n {
		t.Errorf("Pending: got %d, want %d", got, n)
	}
	for i := range n {
		id := uint64(2 * (i + 1))
		if !calls.Deliver(Envelope{Version, id, &AppStatus{App: fmt.Sprint(i), State: StateRunning}}) {
			t.Errorf("Deliver(%d): nobody waiting", id)
		}
	}
	wg.Wait()
	if calls.Deliver(Envelope{Version, 2, &Ack{}}) {
		t.Error("a second reply to id 2 was delivered")
	}
	if calls.pending != nil {
		t.Error("an idle Calls keeps its map")
	}
}

func TestCallsPeerError(t *testing.T) {
	var calls Calls
	call, _ := calls.Register(2)
	calls.Deliver(Envelope{Version, 2, &Error{Code: CodeNotFound, Text: "missing"}})
	_, err := call.Wait(t.Context())
	var perr *Error
	if !errors.As(err, &perr) || perr.Code != CodeNotFound || perr.Text != "missing" {
		t.Errorf("got %v, want *Error not found", err)
	}
}

func TestCallsClose(t *testing.T) {
	var calls Calls
	call, _ := calls.Register(2)
	got := make(chan error, 1)
	go func() {
		_, err := call.Wait(t.Context())
		got <- err
	}()
	calls.Close(io.EOF)
	if err := <-got; !errors.Is(err, ErrConnClosed) || !errors.Is(err, io.EOF) {
		t.Errorf("Wait on a closed session: got %v, want ErrConnClosed wrapping io.EOF", err)
	}
	if _, err := calls.Register(4); !errors.Is(err, ErrConnClosed) {
		t.Errorf("Register after Close: got %v, want ErrConnClosed", err)
	}
	calls.Close(errors.New("second")) // ignored
	if _, err := calls.Register(6); !errors.Is(err, io.EOF) {
		t.Errorf("Register after a second Close: got %v, want the first error", err)
	}
}

func TestCallsContext(t *testing.T) {
	var calls Calls
	call, _ := calls.Register(2)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := call.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if n := calls.Pending(); n != 0 {
		t.Errorf("got %d pending requests after cancellation, want 0", n)
	}
	if calls.Deliver(Envelope{Version, 2, &Ack{}}) {
		t.Error("a late reply was delivered to a cancelled request")
	}
}
