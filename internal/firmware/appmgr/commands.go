package appmgr

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/wasmbed/wasmbed/internal/protocol"
)

// ArtifactVerifier authenticates deploy artifacts and admits the
// applications they carry; the device composition implements it with the
// security manager and the firmware's admission. VerifyArtifact returns
// the install request for a verified artifact — with the flash update
// recording its sequence in Extra — and done, to call once the request
// has been committed. A refusal error should implement ProtocolReason()
// protocol.Reason and may implement PeerMessage() string.
type ArtifactVerifier interface {
	VerifyArtifact(ctx context.Context, app string, artifact, sealed []byte) (req Request, done func(), err error)
}

// ConfigOpener opens the sealed part of a configuration push; the security
// manager implements it.
type ConfigOpener interface {
	OpenConfig(app string, generation uint64, sealed []byte) (map[string]string, error)
}

// Commands executes the gateway's application commands on a Manager,
// verifying artifacts first; it implements the client's Apps interface.
// Every command returns the AppStatus to report.
type Commands struct {
	Apps     *Manager
	Verifier ArtifactVerifier
}

// Deploy installs an application from a signed artifact.
func (c *Commands) Deploy(ctx context.Context, m *protocol.Deploy) protocol.AppStatus {
	return c.install(ctx, m.App, m.Sequence, m.Artifact, m.Sealed, m.Start)
}

// Update installs a newer artifact of an application.
func (c *Commands) Update(ctx context.Context, m *protocol.Update) protocol.AppStatus {
	return c.install(ctx, m.App, m.Sequence, m.Artifact, m.Sealed, m.Start)
}

func (c *Commands) install(ctx context.Context, app string, seq uint64, art, sealed []byte, start bool) protocol.AppStatus {
	req, done, err := c.Verifier.VerifyArtifact(ctx, app, art, sealed)
	if err != nil {
		reason := reasonOf(err)
		if st, ok := c.Apps.Status(app); ok && reason == protocol.ReasonReplay && st.Sequence == seq && seq != 0 {
			// The artifact already installed, delivered again: report it.
			return st.AppStatus()
		}
		return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateRefused, Reason: reason, Message: peerMessage(err)}
	}
	req.Start = start
	st, err := c.Apps.Install(ctx, req)
	var se *StartError
	switch {
	case err == nil:
		done()
		return st.AppStatus()
	case errors.As(err, &se):
		done()
		as := se.Failed.AppStatus()
		if se.Fallback != nil {
			as.Message = fmt.Sprintf("%s; fell back to sequence %d", as.Message, se.Fallback.Sequence)
		}
		return as
	}
	return c.failure(app, req.Sequence, err)
}

func (c *Commands) failure(app string, seq uint64, err error) protocol.AppStatus {
	var re *RefusalError
	if errors.As(err, &re) {
		return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateRefused, Reason: re.Reason.Reason(), Message: re.Reason.String()}
	}
	return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateFailed, Reason: protocol.ReasonInternal, Message: "internal error"}
}

// check refuses a command whose sequence names another version than the
// installed one.
func (c *Commands) check(app string, seq uint64) (protocol.AppStatus, bool) {
	st, ok := c.Apps.Status(app)
	if !ok {
		return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateRefused, Reason: protocol.ReasonNotInstalled, Message: "not installed"}, false
	}
	if seq != 0 && st.Sequence != seq {
		return protocol.AppStatus{App: app, Sequence: seq, State: protocol.StateRefused, Reason: protocol.ReasonNotInstalled,
			Message: fmt.Sprintf("sequence %d installed", st.Sequence)}, false
	}
	return protocol.AppStatus{}, true
}

// Start starts an installed application.
func (c *Commands) Start(ctx context.Context, m *protocol.Start) protocol.AppStatus {
	if st, ok := c.check(m.App, m.Sequence); !ok {
		return st
	}
	st, err := c.Apps.Start(ctx, m.App)
	if err != nil && !isRunnerErr(err) {
		return c.failure(m.App, m.Sequence, err)
	}
	return st.AppStatus()
}

// Stop stops an application.
func (c *Commands) Stop(ctx context.Context, m *protocol.Stop) protocol.AppStatus {
	if st, ok := c.check(m.App, m.Sequence); !ok {
		return st
	}
	st, err := c.Apps.Stop(ctx, m.App)
	if err != nil {
		return c.failure(m.App, m.Sequence, err)
	}
	return st.AppStatus()
}

// Remove uninstalls an application.
func (c *Commands) Remove(ctx context.Context, m *protocol.Remove) protocol.AppStatus {
	if st, ok := c.check(m.App, m.Sequence); !ok {
		return st
	}
	st, err := c.Apps.Remove(ctx, m.App)
	if err != nil {
		return c.failure(m.App, m.Sequence, err)
	}
	return st.AppStatus()
}

// Configure applies a configuration push, opening its sealed part with the
// verifier when it is a ConfigOpener.
func (c *Commands) Configure(_ context.Context, m *protocol.ConfigPush) error {
	values := m.Values
	if len(m.Sealed) > 0 {
		op, ok := c.Verifier.(ConfigOpener)
		if !ok {
			return errors.New("sealed configuration not supported")
		}
		secret, err := op.OpenConfig(m.App, m.Generation, m.Sealed)
		if err != nil {
			return fmt.Errorf("sealed configuration refused: %s", peerMessage(err))
		}
		values = maps.Clone(values)
		if values == nil {
			values = make(map[string]string, len(secret))
		}
		maps.Copy(values, secret)
	}
	return c.Apps.Configure(m.App, m.Generation, values)
}

// Statuses appends the status of every installed application to dst.
func (c *Commands) Statuses(dst []protocol.AppStatus) []protocol.AppStatus {
	for _, st := range c.Apps.Statuses(nil) {
		dst = append(dst, st.AppStatus())
	}
	return dst
}

// isRunnerErr reports whether err is a start failure of the application
// itself, which the returned status already describes.
func isRunnerErr(err error) bool {
	var re *RefusalError
	var se *StorageError
	return !errors.As(err, &re) && !errors.As(err, &se)
}

func reasonOf(err error) protocol.Reason {
	var r interface{ ProtocolReason() protocol.Reason }
	if errors.As(err, &r) {
		return r.ProtocolReason()
	}
	return protocol.ReasonInternal
}

func peerMessage(err error) string {
	var p interface{ PeerMessage() string }
	if errors.As(err, &p) {
		return p.PeerMessage()
	}
	return "refused"
}
