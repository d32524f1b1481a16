package hal

import (
	"container/heap"
	"time"
)

// TimerID identifies a scheduled timer; the zero value is never used.
type TimerID uint64

// Timers is a deterministic software timer queue on an injected clock, the
// equivalent of an MCU's timer peripheral multiplexed by the firmware. It
// owns no goroutine: the device loop calls Fire with the current time and
// uses Next to learn when to wake up. Callbacks with equal deadlines run in
// scheduling order. The zero value is ready to use and allocates nothing
// until the first timer is scheduled. Not safe for concurrent use.
type Timers struct {
	q    timerHeap
	seq  uint64
	live map[TimerID]struct{}
}

type timer struct {
	at     time.Time
	id     TimerID
	period time.Duration
	fn     func(now time.Time)
}

// At schedules fn to run once at deadline at and returns its id.
func (t *Timers) At(at time.Time, fn func(now time.Time)) TimerID {
	return t.add(at, 0, fn)
}

// Every schedules fn to run at first and then every period after it (a
// period <= 0 means once).
func (t *Timers) Every(first time.Time, period time.Duration, fn func(now time.Time)) TimerID {
	return t.add(first, period, fn)
}

func (t *Timers) add(at time.Time, period time.Duration, fn func(time.Time)) TimerID {
	t.seq++
	id := TimerID(t.seq)
	if t.live == nil {
		t.live = make(map[TimerID]struct{})
	}
	t.live[id] = struct{}{}
	heap.Push(&t.q, &timer{at: at, id: id, period: period, fn: fn})
	return id
}

// Cancel stops timer id; it reports whether the timer was still scheduled.
func (t *Timers) Cancel(id TimerID) bool {
	if _, ok := t.live[id]; !ok {
		return false
	}
	delete(t.live, id)
	return true
}

// Len returns the number of scheduled timers.
func (t *Timers) Len() int { return len(t.live) }

// Next returns the earliest deadline, or false if no timer is scheduled.
func (t *Timers) Next() (time.Time, bool) {
	for len(t.q) > 0 {
		top := t.q[0]
		if _, ok := t.live[top.id]; ok {
			return top.at, true
		}
		heap.Pop(&t.q)
	}
	return time.Time{}, false
}

// Fire runs, in deadline order, every callback whose deadline is not after
// now, and returns how many ran. A periodic timer runs at most once per
// call (missed periods are skipped, as a hardware auto-reload timer would).
func (t *Timers) Fire(now time.Time) int {
	n := 0
	for len(t.q) > 0 && !t.q[0].at.After(now) {
		tm := heap.Pop(&t.q).(*timer)
		if _, ok := t.live[tm.id]; !ok {
			continue
		}
		if tm.period > 0 {
			next := tm.at.Add(tm.period)
			if !next.After(now) {
				skip := now.Sub(tm.at)/tm.period + 1
				next = tm.at.Add(skip * tm.period)
			}
			tm.at = next
			heap.Push(&t.q, tm)
		} else {
			delete(t.live, tm.id)
		}
		n++
		tm.fn(now)
	}
	if len(t.live) == 0 {
		t.q, t.live = nil, nil
	}
	return n
}

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].id < h[j].id
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)   { *h = append(*h, x.(*timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}
