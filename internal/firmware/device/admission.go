package device

import (
	"context"

	"github.com/wasmbed/wasmbed/internal/firmware/admission"
	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/security"
)

// admitter verifies artifacts with the security manager and then runs the
// firmware's admission (package admission: the board profile, the
// module's bounds and limits, a compilation by the device's engine, which
// the start that follows finds in its cache), before the application
// manager installs anything. A refusal leaves the replay mark and the
// flash untouched.
type admitter struct {
	sec  *security.Manager
	prof profile.Profile
	mgr  *appmgr.Manager
	run  *runner
}

var (
	_ appmgr.ArtifactVerifier = admitter{}
	_ appmgr.ConfigOpener     = admitter{}
)

// VerifyArtifact implements appmgr.ArtifactVerifier.
func (a admitter) VerifyArtifact(ctx context.Context, app string, data, sealed []byte) (appmgr.Request, func(), error) {
	v, err := a.sec.VerifyArtifact(app, data, sealed)
	if err != nil {
		return appmgr.Request{}, nil, err
	}
	req, done := installRequest(v)
	_, err = admission.Check(ctx, req.Module, a.prof, req.Limits,
		admission.Options{App: app, Installed: a.installed(app), Engine: a.run.eng})
	if err != nil {
		return appmgr.Request{}, nil, err
	}
	return req, done, nil
}

// installRequest turns an artifact the security manager verified into the
// application manager's install request, its replay mark committed with the
// install.
func installRequest(v *security.Verified) (appmgr.Request, func()) {
	m := &v.Manifest
	return appmgr.Request{
		Name: m.App, Version: m.Version, Sequence: m.Sequence, Module: v.Module, SHA256: m.ModuleHash,
		Limits: m.Limits,
		Extra:  v.Mark,
	}, v.Committed
}

// installed returns the usage of every installed application but skip
// (an update replaces skip's usage): its module in flash, and its RAM
// while it is started.
func (a admitter) installed(skip string) []profile.Usage {
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
func (a admitter) OpenConfig(app string, generation uint64, sealed []byte) (map[string]string, error) {
	return a.sec.OpenConfig(app, generation, sealed)
}
