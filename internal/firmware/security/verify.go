package security

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// Refusal says why the device refused an artifact or a sealed payload.
type Refusal uint8

// Refusal reasons, one per check that can fail.
const (
	RefusedMalformed Refusal = iota + 1
	RefusedTooLarge
	RefusedUnknownSigner
	RefusedBadSignature
	RefusedWrongDevice
	RefusedReplay
	RefusedDowngrade
	RefusedExpired
	RefusedNotYetValid
	RefusedHashMismatch
	RefusedDecrypt
	// RefusedWrongApp: the artifact is for another application than the
	// command names.
	RefusedWrongApp
	// RefusedNotEnrolled: the device has no pinned platform keys yet.
	RefusedNotEnrolled
	// RefusedSeparateSealed: the command carries a separate sealed payload
	// (Deploy/Update key 4, reserved): confidential modules travel sealed
	// inside the artifact, and nothing the device was sent is ignored.
	RefusedSeparateSealed
	numRefusals
)

// ErrSeparateSealed is the cause of a RefusedSeparateSealed refusal.
var ErrSeparateSealed = errors.New("security: separate sealed payload not supported")

var refusalNames = [...]string{
	RefusedMalformed: "malformed", RefusedTooLarge: "too large", RefusedUnknownSigner: "unknown signer",
	RefusedBadSignature: "bad signature", RefusedWrongDevice: "wrong device", RefusedReplay: "replay",
	RefusedDowngrade: "downgrade", RefusedExpired: "expired", RefusedNotYetValid: "not yet valid",
	RefusedHashMismatch: "hash mismatch", RefusedDecrypt: "decryption failed", RefusedWrongApp: "wrong application",
	RefusedNotEnrolled: "not enrolled", RefusedSeparateSealed: "separate sealed payload",
}

// String returns the refusal's name.
func (r Refusal) String() string {
	if int(r) < len(refusalNames) && refusalNames[r] != "" {
		return refusalNames[r]
	}
	return fmt.Sprintf("Refusal(%d)", uint8(r))
}

// Reason maps the refusal onto the protocol's reason codes. Authenticity
// failures (unknown signer, bad signature, hash mismatch) all map to
// ReasonBadSignature, so the peer cannot tell which check stopped it.
func (r Refusal) Reason() protocol.Reason {
	switch r {
	case RefusedUnknownSigner, RefusedBadSignature, RefusedHashMismatch:
		return protocol.ReasonBadSignature
	case RefusedWrongDevice:
		return protocol.ReasonWrongDevice
	case RefusedReplay, RefusedDowngrade:
		return protocol.ReasonReplay
	case RefusedExpired, RefusedNotYetValid:
		return protocol.ReasonExpired
	case RefusedDecrypt:
		return protocol.ReasonDecryptFailed
	case RefusedMalformed, RefusedTooLarge, RefusedWrongApp, RefusedSeparateSealed:
		return protocol.ReasonMalformedArtifact
	}
	return protocol.ReasonInternal
}

// RefusalError is a refused artifact or sealed payload. Its text is
// precise, for local logs; PeerMessage is what to tell the gateway.
type RefusalError struct {
	Reason Refusal
	Err    error
}

// Error describes the refusal precisely, for local logs.
func (e *RefusalError) Error() string { return fmt.Sprintf("refused (%s): %v", e.Reason, e.Err) }

// Unwrap returns the cause (an *artifact.Error or *seal.Error when the
// refusal came from those packages).
func (e *RefusalError) Unwrap() error { return e.Err }

// ProtocolReason returns the reason code to report.
func (e *RefusalError) ProtocolReason() protocol.Reason { return e.Reason.Reason() }

// PeerMessage returns the vague text to send to the peer.
func (e *RefusalError) PeerMessage() string {
	switch e.Reason {
	case RefusedWrongApp:
		return "malformed artifact"
	case RefusedNotEnrolled:
		return "not enrolled"
	case RefusedSeparateSealed:
		return "separate sealed payload not supported"
	}
	if msg := artifact.PeerMessage(e.Err); msg != "internal error" {
		return msg
	}
	return seal.PeerMessage(e.Err)
}

func classify(err error) Refusal {
	for _, c := range []struct {
		err error
		r   Refusal
	}{
		{artifact.ErrTooLarge, RefusedTooLarge}, {artifact.ErrMalformed, RefusedMalformed},
		{artifact.ErrUnknownSigner, RefusedUnknownSigner}, {artifact.ErrBadSignature, RefusedBadSignature},
		{artifact.ErrWrongDevice, RefusedWrongDevice}, {artifact.ErrReplay, RefusedReplay},
		{artifact.ErrDowngrade, RefusedDowngrade}, {artifact.ErrExpired, RefusedExpired},
		{artifact.ErrNotYetValid, RefusedNotYetValid}, {artifact.ErrHashMismatch, RefusedHashMismatch},
		{artifact.ErrDecrypt, RefusedDecrypt}, {seal.ErrDecrypt, RefusedDecrypt},
		{seal.ErrTooLarge, RefusedTooLarge}, {seal.ErrMalformed, RefusedMalformed},
		{seal.ErrUnknownSender, RefusedDecrypt}, {ErrNotEnrolled, RefusedNotEnrolled},
	} {
		if errors.Is(err, c.err) {
			return c.r
		}
	}
	return RefusedMalformed
}

// refuse counts and logs a refusal; m.mu is held.
func (m *Manager) refuse(r Refusal, err error) *RefusalError {
	m.refusals[r]++
	m.log.Warn("artifact refused", "reason", r, "err", err)
	return &RefusalError{Reason: r, Err: err}
}

// Refusals returns how many refusals of reason r the device made since boot.
func (m *Manager) Refusals(r Refusal) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r >= numRefusals {
		return 0
	}
	return m.refusals[r]
}

// LastSequence returns the highest artifact sequence accepted for app.
func (m *Manager) LastSequence(app string) uint64 {
	seq, _ := m.marks.LastSequence(app)
	return seq
}

// Verified is an artifact the device accepted, ready to install.
type Verified struct {
	// Manifest is the verified manifest: application, version, sequence,
	// module hash and limits.
	Manifest artifact.Manifest
	// Module is the plaintext WebAssembly module.
	Module []byte
	// Mark raises the application's replay mark to the artifact's
	// sequence. Commit it in the same flash transaction as the install, so
	// a power cut leaves both or neither, then call Committed.
	Mark *flash.Batch

	m *Manager
}

// Committed tells the security manager that Mark was committed with the
// install: the in-memory replay mark follows the one in flash.
func (v *Verified) Committed() { v.m.marks.set(v.Manifest.App, v.Manifest.Sequence) }

// VerifyArtifact verifies a deploy artifact for app — signature against the
// pinned keys, target device, validity window, sequence against the replay
// marks, module hash, and decryption of a confidential module — and returns
// it with the flash update that raises its replay mark. sealed is the
// command's separate sealed payload (Deploy/Update key 4), which is
// reserved: a non-empty one is refused (RefusedSeparateSealed). A refusal
// is a *RefusalError and changes nothing.
func (m *Manager) VerifyArtifact(app string, data, sealed []byte) (*Verified, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(sealed) > 0 {
		return nil, m.refuse(RefusedSeparateSealed, fmt.Errorf("%w: %d bytes", ErrSeparateSealed, len(sealed)))
	}
	v, err := m.verifierLocked()
	if err != nil {
		return nil, m.refuse(classify(err), err)
	}
	a, err := v.Verify(data, &m.marks)
	if err != nil {
		return nil, m.refuse(classify(err), err)
	}
	man := &a.Manifest
	if man.App != app {
		return nil, m.refuse(RefusedWrongApp, fmt.Errorf("artifact for app %q, command names %q", man.App, app))
	}
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], man.Sequence)
	mark := new(flash.Batch)
	mark.Put(replayPrefix+man.App, seq[:])
	return &Verified{Manifest: *man, Module: a.Module, Mark: mark, m: m}, nil
}

// OpenConfig opens the sealed secret part of a configuration push for app
// at generation and decodes it as a CBOR map of strings.
func (m *Manager) OpenConfig(app string, generation uint64, sealed []byte) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.enr == nil {
		return nil, m.refuse(RefusedNotEnrolled, ErrNotEnrolled)
	}
	op, err := m.openerLocked()
	if err != nil {
		return nil, m.refuse(RefusedDecrypt, err)
	}
	plain, err := op.Open(seal.PurposeConfig, sealed, seal.ConfigAAD(m.enr.DeviceID, app, generation))
	if err != nil {
		return nil, m.refuse(classify(err), err)
	}
	var values map[string]string
	if err := configDecMode.Unmarshal(plain, &values); err != nil {
		return nil, m.refuse(RefusedMalformed, fmt.Errorf("decode sealed configuration: %w", err))
	}
	return values, nil
}

var configDecMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{MaxNestedLevels: 4, MaxMapPairs: 256, DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()
