package session

import (
	"context"
	"testing"
	"time"
)

func TestTokenBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newTokenBucket(10, 2, func() time.Time { return now })
	ctx := t.Context()
	for i := range 2 {
		if err := b.wait(ctx); err != nil {
			t.Fatalf("token %d of the burst: %v", i, err)
		}
	}
	// The burst is spent and the clock stands still: a third token needs a
	// wait, which a cancelled context cuts short.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.wait(cancelled); err == nil {
		t.Fatal("a third token was granted with the burst spent and no time passed")
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	if err := b.wait(cancelled); err != nil {
		t.Fatalf("after 100ms at 10/s: %v", err)
	}
	if err := b.wait(cancelled); err == nil {
		t.Fatal("a second token after 100ms at 10/s")
	}
	now = now.Add(time.Hour) // the bucket never holds more than its burst
	for i := range 2 {
		if err := b.wait(cancelled); err != nil {
			t.Fatalf("token %d after an hour: %v", i, err)
		}
	}
	if err := b.wait(cancelled); err == nil {
		t.Fatal("the bucket held more than its burst")
	}
}
