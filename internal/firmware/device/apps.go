package device

import (
	"context"
	"errors"
	"log/slog"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// apps serves the client's application commands: artifacts are admitted by
// the security manager, then installed, started, stopped and removed by the
// application manager. Every outcome, refusals included, is an AppStatus.
type apps struct {
	mgr *appmgr.Manager
	sec Security
	log *slog.Logger
}

func (a *apps) Deploy(ctx context.Context, m *protocol.Deploy) protocol.AppStatus {
	return a.install(ctx, m.App, m.Sequence, m.Artifact, m.Sealed, m.Start)
}

func (a *apps) Update(ctx context.Context, m *protocol.Update) protocol.AppStatus {
	return a.install(ctx, m.App, m.Sequence, m.Artifact, m.Sealed, m.Start)
}

func (a *apps) install(ctx context.Context, app string, seq uint64, artifact, sealed []byte, start bool) protocol.AppStatus {
	req, err := a.sec.Admit(app, seq, artifact, sealed, start)
	if err != nil {
		a.log.Info("artifact refused", "app", app, "sequence", seq, "err", err)
		return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateRefused,
			Reason: RefusalReason(err), Message: refusalText(err)}
	}
	st, err := a.mgr.Install(ctx, req)
	return a.result(app, seq, st, err)
}

func (a *apps) Start(ctx context.Context, m *protocol.Start) protocol.AppStatus {
	st, err := a.mgr.Start(ctx, m.App)
	return a.result(m.App, m.Sequence, st, err)
}

func (a *apps) Stop(ctx context.Context, m *protocol.Stop) protocol.AppStatus {
	st, err := a.mgr.Stop(ctx, m.App)
	return a.result(m.App, m.Sequence, st, err)
}

func (a *apps) Remove(ctx context.Context, m *protocol.Remove) protocol.AppStatus {
	st, err := a.mgr.Remove(ctx, m.App)
	return a.result(m.App, m.Sequence, st, err)
}

func (a *apps) Configure(_ context.Context, m *protocol.ConfigPush) error {
	return a.mgr.Configure(m.App, m.Generation, m.Values)
}

func (a *apps) Statuses(dst []protocol.AppStatus) []protocol.AppStatus {
	for _, st := range a.mgr.Statuses(nil) {
		dst = append(dst, st.AppStatus())
	}
	return dst
}

// result turns an application manager outcome into the status to report.
func (a *apps) result(app string, seq uint64, st appmgr.Status, err error) protocol.AppStatus {
	if err == nil {
		return st.AppStatus()
	}
	a.log.Info("application command failed", "app", app, "err", err)
	if re, ok := errors.AsType[*appmgr.RefusalError](err); ok {
		return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateRefused,
			Reason: re.Reason.Reason(), Message: re.Error()}
	}
	if se, ok := errors.AsType[*appmgr.StartError](err); ok {
		out := se.Failed.AppStatus()
		if out.State == 0 || out.State == protocol.StateInstalled {
			out.State = protocol.StateFailed
		}
		if out.Reason == 0 && errors.Is(err, appmgr.ErrInvalidModule) {
			out.Reason = protocol.ReasonInvalidModule
		}
		if out.Message == "" {
			out.Message = se.Error()
		}
		return out
	}
	out := st.AppStatus()
	out.App, out.State, out.Reason, out.Message = app, protocol.StateFailed, protocol.ReasonInternal, err.Error()
	if out.Sequence == 0 {
		out.Sequence = seq
	}
	return out
}

// refusalText is the message sent to the gateway for a refused artifact:
// the reason only, as refusals are reported vaguely to peers.
func refusalText(err error) string {
	if ae, ok := errors.AsType[*AdmitError](err); ok {
		return "artifact refused: " + ae.Reason.String()
	}
	return "artifact refused"
}
