package flash

import (
	"fmt"
	"sync"
)

// Tear selects what a write step does when power is cut during it.
type Tear uint8

const (
	// TearNone means the cut step leaves the flash untouched.
	TearNone Tear = iota
	// TearHalf means the cut step completes half its work — a program writes the
	// first half of its bytes, an erase erases the first half of the block
	// and leaves the rest as it was.
	TearHalf
)

// OpKind is the kind of a write step.
type OpKind uint8

// Write step kinds.
const (
	OpProgram OpKind = iota + 1
	OpErase
)

// Op describes one write step, as passed to a Faulty hook.
type Op struct {
	Kind  OpKind
	Step  int64 // number of write steps completed before this one
	Off   int64 // program: address; erase: first address of the block
	Len   int   // program: byte count; erase: block size
	Block int   // erase block the step touches
}

// Faulty wraps a Chip with power-cut injection. A cut strikes at a write
// step (a Program or an Erase), tears it as configured, and leaves the chip
// unpowered: every later operation, reads included, fails with ErrPowerCut
// until PowerOn. Tests cut power at every write step of an operation by
// looping FailAfter(n) for n = 0, 1, ... until the operation completes.
type Faulty struct {
	chip Chip

	mu     sync.Mutex
	steps  int64
	budget int64 // remaining steps allowed; < 0 means unlimited
	tear   Tear
	hook   func(Op) bool
	off    bool
}

// NewFaulty wraps c. Until configured it passes every operation through.
func NewFaulty(c Chip) *Faulty { return &Faulty{chip: c, budget: -1} }

// FailAfter lets the next n write steps complete and cuts power at the
// step after them. A negative n removes the budget.
func (f *Faulty) FailAfter(n int64) {
	f.mu.Lock()
	f.budget = n
	f.mu.Unlock()
}

// SetTear sets how the cut step is torn.
func (f *Faulty) SetTear(t Tear) {
	f.mu.Lock()
	f.tear = t
	f.mu.Unlock()
}

// OnWrite installs a hook called before every write step; returning true
// cuts power at that step. A nil hook removes it. The hook runs with the
// chip locked and must not call the chip's methods; Op.Step tells how many
// steps completed before.
func (f *Faulty) OnWrite(hook func(Op) bool) {
	f.mu.Lock()
	f.hook = hook
	f.mu.Unlock()
}

// Cut cuts power now.
func (f *Faulty) Cut() {
	f.mu.Lock()
	f.off = true
	f.mu.Unlock()
}

// PowerOn restores power and clears the write budget; the hook and tear
// mode stay.
func (f *Faulty) PowerOn() {
	f.mu.Lock()
	f.off = false
	f.budget = -1
	f.mu.Unlock()
}

// Off reports whether the chip is unpowered.
func (f *Faulty) Off() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.off
}

// Steps returns the number of write steps completed so far.
func (f *Faulty) Steps() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.steps
}

// Geometry implements Chip.
func (f *Faulty) Geometry() Geometry { return f.chip.Geometry() }

// ReadAt implements Chip.
func (f *Faulty) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	dead := f.off
	f.mu.Unlock()
	if dead {
		return 0, fmt.Errorf("read at %d: %w", off, ErrPowerCut)
	}
	return f.chip.ReadAt(p, off)
}

// step decides whether the write step op is cut. It returns cut=true when
// power fails during it, and dead=true when the chip was already off.
func (f *Faulty) step(op Op) (cut, dead bool, tear Tear) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return false, true, 0
	}
	op.Step = f.steps
	cut = f.budget == 0 || (f.hook != nil && f.hook(op))
	if cut {
		f.off = true
		return true, false, f.tear
	}
	if f.budget > 0 {
		f.budget--
	}
	f.steps++
	return false, false, 0
}

// Program implements Chip.
func (f *Faulty) Program(off int64, p []byte) error {
	g := f.chip.Geometry()
	cut, dead, tear := f.step(Op{Kind: OpProgram, Off: off, Len: len(p), Block: int(off / int64(g.BlockSize))})
	switch {
	case dead:
		return fmt.Errorf("program at %d: %w", off, ErrPowerCut)
	case cut:
		if tear == TearHalf && len(p)/2 > 0 {
			_ = f.chip.Program(off, p[:len(p)/2])
		}
		return fmt.Errorf("program at %d: %w", off, ErrPowerCut)
	}
	return f.chip.Program(off, p)
}

// Erase implements Chip.
func (f *Faulty) Erase(block int) error {
	g := f.chip.Geometry()
	base := int64(block) * int64(g.BlockSize)
	cut, dead, tear := f.step(Op{Kind: OpErase, Off: base, Len: g.BlockSize, Block: block})
	switch {
	case dead:
		return fmt.Errorf("erase block %d: %w", block, ErrPowerCut)
	case cut:
		if tear == TearHalf && checkErase(g, block) == nil {
			half := g.BlockSize / 2
			old := make([]byte, half)
			if _, err := f.chip.ReadAt(old, base+int64(half)); err == nil && f.chip.Erase(block) == nil {
				for o := 0; o < half; o += g.PageSize {
					n := min(g.PageSize, half-o)
					_ = f.chip.Program(base+int64(half+o), old[o:o+n])
				}
			}
		}
		return fmt.Errorf("erase block %d: %w", block, ErrPowerCut)
	}
	return f.chip.Erase(block)
}
