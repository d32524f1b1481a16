package hal

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock is the time source of a device. Firmware code reads time and sets
// timers only through a Clock — the link manager, the gateway client, the
// application runtime and the simulated board share one — so simulations
// and tests run in virtual time. SystemClock is the wall clock;
// ManualClock the one fake.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f once d has elapsed, like [time.AfterFunc].
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending [Clock.AfterFunc] call.
type Timer interface {
	// Stop prevents the call from happening; it reports whether it did.
	Stop() bool
	// Reset re-arms the timer to fire d from now; it reports whether the
	// timer was pending.
	Reset(d time.Duration) bool
}

// SystemClock is a Clock on the host's wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc: f runs in its own goroutine.
func (SystemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Sleep waits d on c, or until ctx is done, in which case it returns the
// context's error.
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	done := make(chan struct{})
	t := c.AfterFunc(d, func() { close(done) })
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	}
}

// ManualClock is a virtual Clock driven by its user: time stands still until
// Advance or Set moves it, and timers whose deadline is reached then fire
// synchronously, in deadline order, from that call. With SetAutoAdvance a
// timer fires as soon as it is set, the clock jumping to its deadline —
// a device with nothing to do but wait, as in a busy-wait on a simulated
// MCU, sees its virtual time pass without the host's. It is safe for
// concurrent use.
type ManualClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*manualTimer
	seq     uint64
	auto    bool
	changed chan struct{} // closed and replaced whenever a timer is set
}

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start, changed: make(chan struct{})}
}

type manualTimer struct {
	c    *ManualClock
	when time.Time
	seq  uint64
	f    func()
	done bool
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// SetAutoAdvance switches auto-advance on or off (see ManualClock).
func (c *ManualClock) SetAutoAdvance(on bool) {
	c.mu.Lock()
	c.auto = on
	c.mu.Unlock()
}

// AfterFunc schedules f at Now()+d.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	t := &manualTimer{c: c, f: f}
	c.scheduleLocked(t, d)
	auto := c.auto
	c.mu.Unlock()
	if auto {
		c.Advance(max(d, 0))
	}
	return t
}

// scheduleLocked (re)inserts t to fire d from now; c.mu is held.
func (c *ManualClock) scheduleLocked(t *manualTimer, d time.Duration) {
	c.seq++
	t.seq, t.when, t.done = c.seq, c.now.Add(d), false
	c.timers = append(c.timers, t)
	close(c.changed)
	c.changed = make(chan struct{})
}

// Stop cancels the timer.
func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.remove(t)
	return true
}

// Reset re-arms the timer d from the clock's now.
func (t *manualTimer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	pending := !t.done
	if pending {
		c.remove(t)
	}
	c.scheduleLocked(t, d)
	auto := c.auto
	c.mu.Unlock()
	if auto {
		c.Advance(max(d, 0))
	}
	return pending
}

func (c *ManualClock) remove(t *manualTimer) {
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return
		}
	}
}

// Advance moves the clock forward by d (negative d is ignored), firing due
// timers in order.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(max(d, 0))
	c.mu.Unlock()
	c.Set(end)
}

// Set moves the clock to t, firing the timers due by then in order; a t
// before the current time is ignored (the clock never goes back).
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	for {
		sort.Slice(c.timers, func(i, j int) bool {
			a, b := c.timers[i], c.timers[j]
			if !a.when.Equal(b.when) {
				return a.when.Before(b.when)
			}
			return a.seq < b.seq
		})
		if len(c.timers) == 0 || c.timers[0].when.After(t) {
			break
		}
		tm := c.timers[0]
		c.timers = c.timers[1:]
		tm.done = true
		if tm.when.After(c.now) {
			c.now = tm.when
		}
		c.mu.Unlock()
		tm.f()
		c.mu.Lock()
	}
	if t.After(c.now) {
		c.now = t
	}
	c.mu.Unlock()
}

// Pending returns the number of scheduled timers.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Next returns the delay until the earliest timer, and false if none.
func (c *ManualClock) Next() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	earliest := c.timers[0].when
	for _, t := range c.timers[1:] {
		if t.when.Before(earliest) {
			earliest = t.when
		}
	}
	return earliest.Sub(c.now), true
}

// WaitForTimers blocks until at least n timers are scheduled or the timeout
// (host time) elapses; it reports whether the count was reached. Tests use
// it to let a goroutine reach its next wait before advancing the clock.
func (c *ManualClock) WaitForTimers(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.timers) >= n {
			c.mu.Unlock()
			return true
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}
