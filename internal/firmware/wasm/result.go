package wasm

import (
	"fmt"
	"time"
)

// Outcome classifies how one execution of an app (init, tick or _start)
// ended.
type Outcome uint8

// Outcomes.
const (
	// OutcomeCompleted: the entry point returned normally.
	OutcomeCompleted Outcome = iota
	// OutcomeTrapped: the guest trapped; Result.Trap says why.
	OutcomeTrapped
	// OutcomeLimitExceeded: a per-app limit stopped or hampered the app;
	// Result.Limit says which. For LimitTime and LimitStack the execution
	// was aborted; for LimitMemory a memory.grow past memoryLimit was
	// refused (returned -1 to the guest) during the execution, whether or
	// not the app then completed.
	OutcomeLimitExceeded
	// OutcomeHostError: the runtime failed (instantiation failed, the app
	// is not running, the context was cancelled by the caller).
	OutcomeHostError
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OutcomeCompleted:
		return "completed"
	case OutcomeTrapped:
		return "trapped"
	case OutcomeLimitExceeded:
		return "limit-exceeded"
	case OutcomeHostError:
		return "host-error"
	}
	return "unknown"
}

// Trap is the reason a guest trapped.
type Trap uint8

// Trap reasons.
const (
	TrapNone Trap = iota
	// TrapUnreachable: the guest executed `unreachable` (C's
	// __builtin_trap, abort, a failed assertion).
	TrapUnreachable
	// TrapOutOfBounds: a memory access outside linear memory.
	TrapOutOfBounds
	// TrapDivideByZero: integer division or remainder by zero.
	TrapDivideByZero
	// TrapIntegerOverflow: signed division overflow or float truncation
	// out of range.
	TrapIntegerOverflow
	// TrapInvalidConversion: float to integer conversion of NaN.
	TrapInvalidConversion
	// TrapTableAccess: call_indirect outside the table or to a null entry.
	TrapTableAccess
	// TrapIndirectCallType: call_indirect with a mismatching signature.
	TrapIndirectCallType
	// TrapStackExhausted: the call stack grew past maxStackSize (or the
	// engine's own ceiling); reported with OutcomeLimitExceeded/LimitStack
	// and the Mechanism that fired.
	TrapStackExhausted
	// TrapOther: any other trap.
	TrapOther
)

var trapNames = [...]string{"none", "unreachable", "out-of-bounds", "divide-by-zero", "integer-overflow",
	"invalid-conversion", "table-access", "indirect-call-type", "stack-exhausted", "other"}

// String returns the trap's name.
func (t Trap) String() string {
	if int(t) < len(trapNames) {
		return trapNames[t]
	}
	return "unknown"
}

// LimitKind names a per-app limit.
type LimitKind uint8

// Limit kinds.
const (
	LimitNone LimitKind = iota
	// LimitMemory is memoryLimit.
	LimitMemory
	// LimitTime is executionTimeout.
	LimitTime
	// LimitStack is maxStackSize.
	LimitStack
)

// String returns the limit's name.
func (k LimitKind) String() string {
	switch k {
	case LimitNone:
		return "none"
	case LimitMemory:
		return "memory"
	case LimitTime:
		return "time"
	case LimitStack:
		return "stack"
	}
	return "unknown"
}

// Mechanism names what ended or flagged an execution, so that a limit
// reported can be traced to the check that enforced it.
type Mechanism uint8

// Mechanisms.
const (
	MechanismNone Mechanism = iota
	// MechanismStackAccounting: the instrumentation's stack accounting
	// found the accounted stack past maxStackSize (LimitStack).
	MechanismStackAccounting
	// MechanismEngineStack: the engine's own call-stack ceiling stopped
	// the guest (LimitStack). The accounting is meant to fire first; this
	// is reported apart so that tests and operators can tell.
	MechanismEngineStack
	// MechanismDeadline: the instrumentation's time checks found
	// executionTimeout passed (LimitTime).
	MechanismDeadline
	// MechanismMemoryGrow: the instrumented memory.grow saw a grow refused
	// past memoryLimit (LimitMemory).
	MechanismMemoryGrow
	// MechanismCanceled: the caller's context ended the execution
	// (OutcomeHostError).
	MechanismCanceled
	// MechanismTableGrow: the instrumented table.grow saw a growth refused
	// past the bound on table elements, or the table's own maximum
	// (LimitMemory: tables are part of the app's RAM).
	MechanismTableGrow
)

var mechanismNames = [...]string{"none", "stack-accounting", "engine-stack", "deadline", "memory-grow", "canceled", "table-grow"}

// String returns the mechanism's name.
func (m Mechanism) String() string {
	if int(m) < len(mechanismNames) {
		return mechanismNames[m]
	}
	return "unknown"
}

// Result is the outcome of one execution of an app.
type Result struct {
	Outcome Outcome
	// Trap is set for OutcomeTrapped and for stack exhaustion.
	Trap Trap
	// Limit is set for OutcomeLimitExceeded.
	Limit LimitKind
	// Mechanism is what enforced the limit, or stopped the execution.
	Mechanism Mechanism
	// Err is nil for OutcomeCompleted and an *ExecError otherwise.
	Err error
	// Duration is the host CPU (wall) time the execution took.
	Duration time.Duration
}

// OK reports whether the execution completed without hitting a limit.
func (r Result) OK() bool { return r.Outcome == OutcomeCompleted }

// String summarises the result, e.g. "limit-exceeded(stack)".
func (r Result) String() string {
	switch r.Outcome {
	case OutcomeTrapped:
		return fmt.Sprintf("trapped(%s)", r.Trap)
	case OutcomeLimitExceeded:
		return fmt.Sprintf("limit-exceeded(%s)", r.Limit)
	}
	return r.Outcome.String()
}

// ExecError describes a failed execution. It is the Err of a Result whose
// Outcome is not OutcomeCompleted.
type ExecError struct {
	App     string
	Entry   string // export that was running: wasmbed_init, wasmbed_tick, _start
	Outcome Outcome
	Trap    Trap
	Limit   LimitKind
	// Mechanism is what enforced the limit or stopped the execution.
	Mechanism Mechanism
	// Cause is the runtime's error (with the guest stack trace), if any.
	Cause error
}

func (e *ExecError) Error() string {
	var what string
	switch e.Outcome {
	case OutcomeTrapped:
		what = "trapped: " + e.Trap.String()
	case OutcomeLimitExceeded:
		what = "exceeded " + e.Limit.String() + " limit (" + e.Mechanism.String()
		if e.Trap != TrapNone {
			what += ", " + e.Trap.String()
		}
		what += ")"
	default:
		what = e.Outcome.String()
	}
	if e.Cause != nil {
		return fmt.Sprintf("app %q %s: %s: %v", e.App, e.Entry, what, e.Cause)
	}
	return fmt.Sprintf("app %q %s: %s", e.App, e.Entry, what)
}

// Unwrap returns the runtime's error.
func (e *ExecError) Unwrap() error { return e.Cause }
