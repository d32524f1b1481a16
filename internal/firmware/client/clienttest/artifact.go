package clienttest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// DefaultLimits are the application limits SignArtifact uses when given
// zero limits: one 64 KiB page, 100 ms per call, 8 KiB of stack.
var DefaultLimits = sandbox.Limits{MemoryLimit: 64 << 10, ExecutionTimeout: 100 * time.Millisecond, MaxStackSize: 8 << 10}

// SignArtifact signs module as application app, sequence seq, for the
// device, with the server's platform signing key (the key devices pinned
// at enrollment).
func (s *Server) SignArtifact(deviceID, app string, seq uint64, module []byte, lim sandbox.Limits) ([]byte, error) {
	return SignArtifactWith(s.signKey, deviceID, app, seq, module, lim)
}

// SignArtifactWith signs with any key; tests use it to forge artifacts.
func SignArtifactWith(key ed25519.PrivateKey, deviceID, app string, seq uint64, module []byte, lim sandbox.Limits) ([]byte, error) {
	if lim == (sandbox.Limits{}) {
		lim = DefaultLimits
	}
	signer, err := artifact.NewSigner(key)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	data, _, err := signer.Sign(artifact.Manifest{
		App: app, Version: fmt.Sprintf("v%d", seq), Limits: lim, DeviceID: deviceID, Sequence: seq,
		IssuedAt: now.Add(-time.Minute), Expires: now.Add(24 * time.Hour),
	}, module, artifact.SignOptions{})
	return data, err
}

// Deploy signs module and sends it to the device's live session as a
// Deploy that starts the application, and returns the device's AppStatus.
func (p *Peer) Deploy(ctx context.Context, app string, seq uint64, module []byte) (*protocol.AppStatus, error) {
	data, err := p.s.SignArtifact(p.DeviceID, app, seq, module, sandbox.Limits{})
	if err != nil {
		return nil, err
	}
	env, err := p.Send(ctx, &protocol.Deploy{App: app, Sequence: seq, Artifact: data, Start: true})
	if err != nil {
		return nil, err
	}
	st, ok := env.Message.(*protocol.AppStatus)
	if !ok {
		return nil, fmt.Errorf("deploy reply: got %s, want AppStatus", env.Message.Type())
	}
	return st, nil
}
