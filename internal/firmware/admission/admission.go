// Package admission decides whether a WebAssembly application may be
// installed on a board: the firmware's own admission, as one function
// that needs nothing but the module, the board's profile and the
// application's limits. A device runs it on every verified artifact before
// its application manager installs anything; a controller can run the
// same function on an untrusted module before it signs and sends it, and
// learn the reason a device would refuse it.
//
//	board, _ := profile.Lookup("hifive1")
//	v, err := admission.Check(ctx, module, board, sandbox.Limits{MaxStackSize: 4096}, admission.Options{})
//	var r *admission.Refusal
//	if errors.As(err, &r) {
//		// r.Reason is what the device would report (invalid module, no
//		// space, limits unsupported); errors.Is(err, wasm.ErrTooComplex),
//		// errors.Is(err, profile.ErrDoesNotFit), ... name the check.
//	}
//	_ = v.Usage // what the application takes from the board
//
// Check runs, in order: the board's module size; decoding, the app model
// and the host API, and the board's structural bounds on the module
// (wasm.Inspect); the module against its own limits (its declared memory,
// its largest call frame); the fit of the application — its memory footprint,
// tables, stack and the runtime's per-instance overhead, its module in
// flash — next to the applications already installed (profile.Admit);
// then the installation itself, instrumenting and compiling the module
// under its limits (wasm.Engine.Compile), which validates its code in
// full. Every step is bounded in time and memory by the board's bounds
// before anything is allocated in proportion to a declared count, so an
// untrusted module cannot exhaust the process that checks it (see
// docs/app-abi.md, "Installation checks").
package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Options are what a caller may know beyond the module and the board.
type Options struct {
	// App names the application in refusals.
	App string
	// Installed are the applications already on the device, which the new
	// one must fit next to (leave out the one it replaces); none for an
	// empty device.
	Installed []profile.Usage
	// Engine compiles the module, as the device's runtime would; a device
	// passes its own, so that the compilation is cached for the start that
	// follows. Nil uses a process-wide engine in interpreter mode, which
	// validates as thoroughly and compiles faster.
	Engine *wasm.Engine
}

// Verdict describes an admitted application.
type Verdict struct {
	// Info is what the module declares and needs.
	Info wasm.ModuleInfo
	// Usage is what the application takes from the board.
	Usage profile.Usage
}

// Refusal is why an application was not admitted. Err is the refusing
// check's own error: a *wasm.ModuleError, *wasm.ImportError,
// *wasm.BoundError or *wasm.LimitError, a *profile.FitError, or the
// context's error; errors.Is and errors.As see through the Refusal.
type Refusal struct {
	// App names the application (Options.App).
	App string
	// Reason is what a device reports to its gateway for this refusal.
	Reason protocol.Reason
	// Message is a short summary for the gateway and the Application's
	// status.
	Message string
	Err     error
}

func (r *Refusal) Error() string {
	if r.App == "" {
		return fmt.Sprintf("not admitted: %s: %v", r.Message, r.Err)
	}
	return fmt.Sprintf("app %q not admitted: %s: %v", r.App, r.Message, r.Err)
}

// Unwrap returns the refusing check's error.
func (r *Refusal) Unwrap() error { return r.Err }

// ProtocolReason is the reason a device reports in its AppStatus.
func (r *Refusal) ProtocolReason() protocol.Reason { return r.Reason }

// PeerMessage is the text a device reports in its AppStatus.
func (r *Refusal) PeerMessage() string { return r.Message }

// Check runs the firmware's admission of module on board under lim (see
// the package documentation). It returns the verdict, or a *Refusal.
func Check(ctx context.Context, module []byte, board profile.Profile, lim sandbox.Limits, opts Options) (*Verdict, error) {
	refuse := func(reason protocol.Reason, msg string, err error) (*Verdict, error) {
		return nil, &Refusal{App: opts.App, Reason: reason, Message: msg, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return refuse(protocol.ReasonInternal, "admission cancelled", err)
	}
	if size := uint64(len(module)); size > board.MaxModuleBytes {
		return refuse(protocol.ReasonNoSpace, fitMessage(size, profile.ResourceModuleSize, board.MaxModuleBytes),
			&profile.FitError{Profile: board.Name, App: opts.App, Resource: profile.ResourceModuleSize, Need: size, Available: board.MaxModuleBytes})
	}
	if err := (wasm.ModuleInfo{}).CheckLimits(lim); err != nil {
		return refuse(protocol.ReasonLimitsUnsupported, "stack limit unsupported", err)
	}
	info, err := wasm.Inspect(module, board.ModuleBounds)
	if err == nil {
		err = info.CheckLimits(lim)
	}
	if err != nil {
		return refuse(protocol.ReasonInvalidModule, moduleMessage(err), err)
	}
	usage := profile.UsageOf(opts.App, *info, lim)
	if err := board.Admit(opts.Installed, usage); err != nil {
		msg := "does not fit"
		if fe, ok := errors.AsType[*profile.FitError](err); ok {
			msg = fitMessage(fe.Need, fe.Resource, fe.Available)
		}
		return refuse(protocol.ReasonNoSpace, msg, err)
	}
	eng := opts.Engine
	if eng == nil {
		if eng, err = validator(ctx); err != nil {
			return refuse(protocol.ReasonInternal, "no webassembly engine", err)
		}
	}
	mod, err := eng.Compile(ctx, module, lim, board.ModuleBounds)
	if err != nil {
		if ctx.Err() != nil {
			return refuse(protocol.ReasonInternal, "admission cancelled", err)
		}
		return refuse(protocol.ReasonInvalidModule, moduleMessage(err), err)
	}
	v := &Verdict{Info: mod.Info(), Usage: profile.UsageOf(opts.App, mod.Info(), lim)}
	mod.Release(ctx)
	return v, nil
}

func fitMessage(need uint64, r profile.Resource, avail uint64) string {
	return fmt.Sprintf("does not fit: needs %d %s, %d available", need, r, avail)
}

// moduleMessage summarises a runtime refusal by its sentinel.
func moduleMessage(err error) string {
	for _, s := range []error{wasm.ErrModuleTooLarge, wasm.ErrTooComplex, wasm.ErrLimit, wasm.ErrForbiddenImport,
		wasm.ErrImportedMemory, wasm.ErrNoEntryPoint, wasm.ErrBadExport, wasm.ErrStartSection,
		wasm.ErrUnsupportedFeature, wasm.ErrUnsupportedABI, wasm.ErrUninstantiable} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "invalid module"
}

var (
	validatorOnce sync.Once
	validatorEng  *wasm.Engine
	validatorErr  error
)

// validator returns the process-wide engine Check compiles with when the
// caller has none.
func validator(ctx context.Context) (*wasm.Engine, error) {
	validatorOnce.Do(func() {
		validatorEng, validatorErr = wasm.NewEngine(context.WithoutCancel(ctx), wasm.Config{Mode: wasm.ModeInterpreter})
	})
	return validatorEng, validatorErr
}
