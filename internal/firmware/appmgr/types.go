package appmgr

import (
	"context"
	"errors"
	"fmt"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Request installs or updates an application. The security manager builds
// it from a verified artifact.
type Request struct {
	Name     string
	Version  string
	Sequence uint64 // artifact sequence; identifies the version on the wire
	Module   []byte
	SHA256   [32]byte // the manifest's module digest; Module must match it
	Limits   sandbox.Limits
	// Start asks for the application to run once installed. An update of
	// a running application with Start becomes active only once the new
	// version has started; a failure falls back to the previous version.
	Start bool
	// Extra holds flash operations committed atomically with the install
	// record, for instance the security manager's replay counter.
	Extra *flash.Batch
}

// RunSpec is what the runtime needs to start an application.
type RunSpec struct {
	Name     string
	Version  string
	Sequence uint64
	Module   []byte
	Limits   sandbox.Limits
	// Config reads the application's configuration values. It may be
	// called while Start runs — an application reading its configuration
	// as it initialises, at boot as after a command — and for as long as
	// the instance lives.
	Config ConfigSource
}

// ConfigSource gives applications their configuration values; the Manager
// implements it (the runtime's configuration source has the same method).
type ConfigSource interface {
	Lookup(app, key string) (string, bool)
}

// Runner starts application instances; the device composition adapts the
// WebAssembly runtime to it.
//
// Start compiles and instantiates the module and runs its initialisation;
// it returns once the application runs or has failed to start. When a
// started instance later ends on its own (a trap, an exceeded limit) the
// runner calls exit once with the cause; exit never blocks and may be
// called from any goroutine. A failure is reported as a *TrapError, a
// *LimitError or an error wrapping ErrInvalidModule where that applies.
type Runner interface {
	Start(ctx context.Context, spec RunSpec, exit func(error)) (Instance, error)
}

// Instance is a started application.
type Instance interface {
	// Stop stops the instance; exit is not called for a requested stop.
	Stop(ctx context.Context) error
}

// ErrInvalidModule marks a runner error caused by the module itself (it
// does not compile or lacks the required exports).
var ErrInvalidModule = errors.New("invalid module")

// TrapError reports that an application trapped.
type TrapError struct {
	Reason string
}

// Error returns the trap description.
func (e *TrapError) Error() string { return "trap: " + e.Reason }

// LimitError reports that an application exceeded a runtime limit.
type LimitError struct {
	Resource protocol.Resource
	Detail   string
}

// Error names the limit and the detail.
func (e *LimitError) Error() string {
	return fmt.Sprintf("%s limit exceeded: %s", e.Resource, e.Detail)
}

// Refusal says why the manager refused a request.
type Refusal uint8

// Refusal reasons.
const (
	// RefusedName: the application name is empty or too long.
	RefusedName Refusal = iota + 1
	// RefusedHash: the module does not match its SHA-256 digest.
	RefusedHash
	// RefusedFlash: the flash store has no room for the request.
	RefusedFlash
	// RefusedNotInstalled: the application is not installed.
	RefusedNotInstalled
	// RefusedOlder: the request's sequence is older than the installed one.
	RefusedOlder
	numRefusals
)

var refusalNames = [...]string{
	RefusedName:         "bad name",
	RefusedHash:         "module hash mismatch",
	RefusedFlash:        "out of flash",
	RefusedNotInstalled: "not installed",
	RefusedOlder:        "older version",
}

// String returns the refusal's name.
func (r Refusal) String() string {
	if int(r) < len(refusalNames) && refusalNames[r] != "" {
		return refusalNames[r]
	}
	return fmt.Sprintf("Refusal(%d)", uint8(r))
}

// Reason maps the refusal onto the protocol's reason codes.
func (r Refusal) Reason() protocol.Reason {
	switch r {
	case RefusedFlash:
		return protocol.ReasonNoSpace
	case RefusedHash, RefusedName:
		return protocol.ReasonMalformedArtifact
	case RefusedNotInstalled:
		return protocol.ReasonNotInstalled
	case RefusedOlder:
		return protocol.ReasonReplay
	}
	return protocol.ReasonInternal
}

// RefusalError is returned when the manager refuses a request; the device
// state is unchanged.
type RefusalError struct {
	App    string
	Reason Refusal
	Detail string
}

// Error describes the refusal.
func (e *RefusalError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("app %q refused: %s", e.App, e.Reason)
	}
	return fmt.Sprintf("app %q refused: %s: %s", e.App, e.Reason, e.Detail)
}

// StorageError reports that the flash store failed during an operation
// (for instance a power cut). What was committed before stays; the device
// must reboot to continue.
type StorageError struct {
	App string
	Err error
}

// Error describes the storage failure.
func (e *StorageError) Error() string { return fmt.Sprintf("app %q: storage: %v", e.App, e.Err) }

// Unwrap returns the flash error.
func (e *StorageError) Unwrap() error { return e.Err }

// StartError is returned when a new version failed to start. Failed is
// the status of the version that failed; Fallback, when not nil, is the
// status of the previous version the manager fell back to.
type StartError struct {
	Failed   Status
	Fallback *Status
	Err      error
}

// Error describes the failed start and the fallback.
func (e *StartError) Error() string {
	if e.Fallback != nil {
		return fmt.Sprintf("app %q version %q failed to start, fell back to %q: %v", e.Failed.Name, e.Failed.Version, e.Fallback.Version, e.Err)
	}
	return fmt.Sprintf("app %q version %q failed to start: %v", e.Failed.Name, e.Failed.Version, e.Err)
}

// Unwrap returns the runner's error.
func (e *StartError) Unwrap() error { return e.Err }

// Status is the observed state of one application.
type Status struct {
	Name     string
	Version  string
	Sequence uint64
	// Slot is the active slot (0 or 1), -1 when none is.
	Slot int
	// State is installed, running, stopped, trapped, limit exceeded,
	// failed or removed.
	State protocol.AppState
	// Reason details StateFailed.
	Reason protocol.Reason
	// Resource names the limit with StateLimitExceeded.
	Resource protocol.Resource
	// Message is a human-readable detail (trap or error text).
	Message string
	// Run is the persisted desired run state.
	Run bool
	// ModuleBytes is the size of the version's module in flash.
	ModuleBytes uint32
}

// AppStatus converts the status to its wire form.
func (s Status) AppStatus() protocol.AppStatus {
	return protocol.AppStatus{
		App: s.Name, Sequence: s.Sequence, State: s.State,
		Reason: s.Reason, Resource: s.Resource, Message: s.Message,
	}
}

// EventKind says what changed.
type EventKind uint8

// Event kinds.
const (
	// EventInstalled: a version was installed (not started).
	EventInstalled EventKind = iota + 1
	// EventStarted: the application runs.
	EventStarted
	// EventStopped: the application was stopped on request.
	EventStopped
	// EventExited: a running application trapped or hit a limit.
	EventExited
	// EventFailed: an application failed to start.
	EventFailed
	// EventFellBack: after a failed update the previous version is active
	// again.
	EventFellBack
	// EventRecovered: at boot, an update interrupted by a power loss was
	// rolled back, or a damaged application was found.
	EventRecovered
	// EventRemoved: the application was removed.
	EventRemoved
)

var eventNames = [...]string{
	EventInstalled: "installed", EventStarted: "started", EventStopped: "stopped",
	EventExited: "exited", EventFailed: "failed", EventFellBack: "fell back",
	EventRecovered: "recovered", EventRemoved: "removed",
}

// String returns the kind's name.
func (k EventKind) String() string {
	if int(k) < len(eventNames) && eventNames[k] != "" {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is a state change, passed to the Config.Observer.
type Event struct {
	Kind   EventKind
	Status Status
}
