package link

import (
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with full jitter: the wait before retry
// n (n >= 1) is uniform in [0, min(Max, Base·2^(n-1))]. Full jitter spreads a
// fleet that lost its gateway at the same moment over the whole window
// instead of bringing it back in synchronised waves.
type Backoff struct {
	// Base is the ceiling of the first retry's wait.
	Base time.Duration
	// Max caps the ceiling.
	Max time.Duration
}

// DefaultBackoff is the backoff used when a Config leaves it zero.
var DefaultBackoff = Backoff{Base: 500 * time.Millisecond, Max: 60 * time.Second}

// Ceiling returns the upper bound of the wait before retry attempt.
func (b Backoff) Ceiling(attempt int) time.Duration {
	if attempt <= 0 || b.Base <= 0 {
		return 0
	}
	ceil := b.Base
	for i := 1; i < attempt; i++ {
		ceil *= 2
		if ceil >= b.Max || ceil <= 0 {
			return b.Max
		}
	}
	if b.Max > 0 && ceil > b.Max {
		return b.Max
	}
	return ceil
}

// Delay draws the wait before retry attempt from r.
func (b Backoff) Delay(attempt int, r *rand.Rand) time.Duration {
	ceil := b.Ceiling(attempt)
	if ceil <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(ceil) + 1))
}
