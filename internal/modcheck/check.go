// Package modcheck decides, for the controller and before anything is
// delivered, whether a module may go to a board: the firmware's own
// admission (package firmware/admission), run once per module version, so a
// module a device would refuse is refused first and never sent.
//
// Modules are untrusted input to the controller too. A Sandbox runs the
// checks in a child process — the controller's own executable, entered
// through RunChild — under a time budget (the child is killed when it runs
// out) and a memory budget (a watchdog in the child, backed by an
// address-space limit), so a module crafted to make decoding or compiling
// slow or large costs at most one budget and cannot take the controller down
// or stall it.
//
//	func main() {
//		if modcheck.IsChild() {
//			os.Exit(modcheck.RunChild(context.Background()))
//		}
//		...
//	}
//
//	sb := modcheck.NewSandbox(modcheck.SandboxOptions{})
//	v, err := sb.Check(ctx, modcheck.Request{Module: m, Limits: lim, Profiles: []string{"hifive1", "esp32"}})
//	if v.Invalid != nil { /* refused for every board: v.Invalid.Reason */ }
//	if r := v.Profiles["hifive1"]; r != nil { /* does not fit a HiFive1 */ }
package modcheck

import (
	"context"
	"errors"
	"time"

	fwadmission "github.com/wasmbed/wasmbed/internal/firmware/admission"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Reasons of refusals, in Refusal.Reason.
const (
	// ReasonInvalidModule: the bytes are not a valid module, use a feature
	// the device runtime lacks, or declare an unsupported app ABI.
	ReasonInvalidModule = "InvalidModule"
	// ReasonForbiddenImport: the module imports something outside the host
	// API.
	ReasonForbiddenImport = "ForbiddenImport"
	// ReasonBadEntryPoints: the module lacks the entry points of the app
	// model, has a start section or misuses a reserved export.
	ReasonBadEntryPoints = "BadEntryPoints"
	// ReasonExceedsLimits: the module cannot run within the application's
	// own limits (declared memory above memoryLimit, a call frame above
	// maxStackSize).
	ReasonExceedsLimits = "ExceedsLimits"
	// ReasonDoesNotFit: the module with its limits does not fit the board's
	// profile.
	ReasonDoesNotFit = "DoesNotFit"
	// ReasonUnknownProfile: no profile has the device type's name.
	ReasonUnknownProfile = "UnknownProfile"
	// ReasonTimeBudget: checking the module took longer than the time
	// budget.
	ReasonTimeBudget = "CheckTimeBudgetExceeded"
	// ReasonMemoryBudget: checking the module needed more memory than the
	// memory budget.
	ReasonMemoryBudget = "CheckMemoryBudgetExceeded"
	// ReasonCheckFailed: the checking process failed in another way.
	ReasonCheckFailed = "CheckFailed"
)

// Limits are an application's sandbox limits.
type Limits struct {
	// MemoryLimit is the most linear memory, in bytes.
	MemoryLimit uint64 `json:"memoryLimit"`
	// ExecutionTimeout bounds one execution.
	ExecutionTimeout time.Duration `json:"executionTimeout"`
	// MaxStackSize is the largest call stack, in bytes.
	MaxStackSize uint64 `json:"maxStackSize"`
}

// Request asks whether an application's module may run on boards.
type Request struct {
	// App is the application's name (for messages).
	App string `json:"app"`
	// Module is the plaintext WebAssembly module.
	Module []byte `json:"module"`
	// Limits are the application's limits.
	Limits Limits `json:"limits"`
	// Profiles are the board profiles (device types) to check the module
	// against.
	Profiles []string `json:"profiles"`
}

// Refusal says why a module is refused.
type Refusal struct {
	// Reason is a CamelCase reason (the Reason constants).
	Reason string `json:"reason"`
	// Message is a human-readable detail.
	Message string `json:"message"`
}

// Error formats the refusal.
func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

// Verdict is the outcome of checking one module.
type Verdict struct {
	// Invalid refuses the module for every board; nil when the module is
	// valid under its limits.
	Invalid *Refusal `json:"invalid,omitempty"`
	// Profiles holds, for each requested profile, nil when the module fits
	// an otherwise empty board of that profile, or the refusal. It is empty
	// when Invalid is set.
	Profiles map[string]*Refusal `json:"profiles,omitempty"`
}

// Checker runs the firmware's admission checks on a module, in the calling
// process. Check must not be called on untrusted input outside a Sandbox
// child.
type Checker interface {
	Check(ctx context.Context, req Request) Verdict
}

// FirmwareChecker is the Checker that runs the firmware's own admission
// (package firmware/admission: the board's module size and structural
// bounds, decoding with the app model and host API, the module against its
// own limits, the fit on the board, and a compilation under the limits that
// validates its code) for each requested board, next to no other
// application. A device runs the same function at install, and then also
// counts the applications it already holds.
type FirmwareChecker struct{}

// Check implements Checker. A refusal the module earns on every board
// (invalid, forbidden import, entry points, its own limits) makes it
// Invalid; refusals that depend on the board (size, bounds, fit) are the
// board's.
func (FirmwareChecker) Check(ctx context.Context, req Request) Verdict {
	lim := sandbox.Limits{MemoryLimit: req.Limits.MemoryLimit, ExecutionTimeout: req.Limits.ExecutionTimeout, MaxStackSize: req.Limits.MaxStackSize}
	v := Verdict{Profiles: make(map[string]*Refusal, len(req.Profiles))}
	var invalid *Refusal
	everyBoard := len(req.Profiles) > 0
	for _, name := range req.Profiles {
		board, err := profile.Lookup(name)
		if err != nil {
			v.Profiles[name] = &Refusal{Reason: ReasonUnknownProfile, Message: err.Error()}
			everyBoard = false
			continue
		}
		_, err = fwadmission.Check(ctx, req.Module, board, lim, fwadmission.Options{App: req.App})
		if err == nil {
			v.Profiles[name] = nil
			everyBoard = false
			continue
		}
		r := refusal(board.Name, err)
		v.Profiles[name] = r
		if r.Reason == ReasonDoesNotFit {
			everyBoard = false
		} else if invalid == nil {
			invalid = r
		}
	}
	if everyBoard && invalid != nil {
		return Verdict{Invalid: invalid}
	}
	return v
}

// refusal maps the firmware's refusal on board to a Refusal: the module's
// own faults by their check, and everything that depends on the board as
// DoesNotFit.
func refusal(board string, err error) *Refusal {
	msg := err.Error()
	if r, ok := errors.AsType[*fwadmission.Refusal](err); ok {
		msg = r.Message
		if r.Err != nil {
			msg += ": " + r.Err.Error()
		}
	}
	switch {
	case errors.Is(err, profile.ErrDoesNotFit), errors.Is(err, wasm.ErrTooComplex), errors.Is(err, wasm.ErrModuleTooLarge):
		return &Refusal{Reason: ReasonDoesNotFit, Message: board + ": " + msg}
	case errors.Is(err, wasm.ErrForbiddenImport), errors.Is(err, wasm.ErrImportedMemory):
		return &Refusal{Reason: ReasonForbiddenImport, Message: msg}
	case errors.Is(err, wasm.ErrNoEntryPoint), errors.Is(err, wasm.ErrBadExport), errors.Is(err, wasm.ErrStartSection):
		return &Refusal{Reason: ReasonBadEntryPoints, Message: msg}
	case errors.Is(err, wasm.ErrLimit):
		return &Refusal{Reason: ReasonExceedsLimits, Message: msg}
	}
	if r, ok := errors.AsType[*fwadmission.Refusal](err); ok && r.Reason == protocol.ReasonLimitsUnsupported {
		return &Refusal{Reason: ReasonExceedsLimits, Message: msg}
	}
	return &Refusal{Reason: ReasonInvalidModule, Message: msg}
}
