package device

import (
	"context"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/link"
)

// halClock adapts a link.Clock to hal.Clock.
type halClock struct{ c link.Clock }

var _ hal.Clock = halClock{}

func (h halClock) Now() time.Time { return h.c.Now() }

func (h halClock) Sleep(ctx context.Context, d time.Duration) error { return link.Sleep(ctx, h.c, d) }

// Skewed returns a clock that reads offset ahead of c (behind when
// negative), for clock-skew fault injection. Timers are unaffected.
func Skewed(c link.Clock, offset time.Duration) link.Clock {
	if offset == 0 {
		return c
	}
	return skewed{c, offset}
}

type skewed struct {
	link.Clock
	off time.Duration
}

func (s skewed) Now() time.Time { return s.Clock.Now().Add(s.off) }
