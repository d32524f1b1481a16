package device

import (
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
)

// Skewed returns a clock that reads offset ahead of c (behind when
// negative), for clock-skew fault injection. Timers are unaffected.
func Skewed(c hal.Clock, offset time.Duration) hal.Clock {
	if offset == 0 {
		return c
	}
	return skewed{c, offset}
}

type skewed struct {
	hal.Clock
	off time.Duration
}

func (s skewed) Now() time.Time { return s.Clock.Now().Add(s.off) }
