package device

import (
	"errors"
	"fmt"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/security"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// admission verifies artifacts with the security manager and then checks
// that the application fits the board, before the application manager
// installs anything. The profile is the one place that decides
// (profile.Admit): app slots and flash against every other installed
// application, RAM — linear memory footprint, stack and the runtime's
// per-instance overhead — against the other started ones, module size.
// A refusal leaves the replay mark and the flash untouched.
type admission struct {
	sec  *security.Manager
	prof profile.Profile
	mgr  *appmgr.Manager
	run  *runner
}

var (
	_ appmgr.ArtifactVerifier = admission{}
	_ appmgr.ConfigOpener     = admission{}
)

// VerifyArtifact implements appmgr.ArtifactVerifier.
func (a admission) VerifyArtifact(app string, data, sealed []byte) (appmgr.Request, func(), error) {
	req, done, err := a.sec.VerifyArtifact(app, data, sealed)
	if err != nil {
		return req, done, err
	}
	info, err := wasm.Inspect(req.Module, a.prof.ModuleBounds)
	if err != nil {
		return appmgr.Request{}, nil, &admitError{reason: protocol.ReasonInvalidModule, text: "invalid module", err: err}
	}
	usage := profile.UsageOf(app, *info, req.Limits)
	if err := a.prof.Admit(a.installed(app), usage); err != nil {
		return appmgr.Request{}, nil, &admitError{reason: protocol.ReasonNoSpace, text: fitText(err), err: err}
	}
	return req, done, nil
}

// installed returns the usage of every installed application but skip
// (an update replaces skip's usage): its module in flash, and its RAM
// while it is started.
func (a admission) installed(skip string) []profile.Usage {
	sts := a.mgr.Statuses(nil)
	out := make([]profile.Usage, 0, len(sts))
	for _, st := range sts {
		if st.Name == skip {
			continue
		}
		u := a.run.usage(st.Name)
		u.App, u.FlashBytes = st.Name, uint64(st.ModuleBytes)
		out = append(out, u)
	}
	return out
}

// OpenConfig implements appmgr.ConfigOpener.
func (a admission) OpenConfig(app string, generation uint64, sealed []byte) (map[string]string, error) {
	return a.sec.OpenConfig(app, generation, sealed)
}

func fitText(err error) string {
	if fe, ok := errors.AsType[*profile.FitError](err); ok {
		return fmt.Sprintf("does not fit: needs %d %s, %d available", fe.Need, fe.Resource, fe.Available)
	}
	return "does not fit"
}

// admitError is a refusal by the device composition, with the protocol
// reason and the text the gateway is told.
type admitError struct {
	reason protocol.Reason
	text   string
	err    error
}

func (e *admitError) Error() string { return fmt.Sprintf("%s: %v", e.text, e.err) }

func (e *admitError) Unwrap() error { return e.err }

// ProtocolReason is the reason reported in the AppStatus.
func (e *admitError) ProtocolReason() protocol.Reason { return e.reason }

// PeerMessage is the text reported in the AppStatus.
func (e *admitError) PeerMessage() string { return e.text }
