package artifact_test

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/sandbox"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// sequences is an in-memory artifact.SequenceStore: application → highest
// sequence accepted.
type sequences map[string]uint64

func (s sequences) LastSequence(app string) (uint64, error) { return s[app], nil }

// Example walks through a confidential deployment: the platform seals and
// signs a module for one device; the device verifies it, installs it and
// records its sequence; a replay of the same artifact is then refused.
func Example() {
	// Platform keys (in production: loaded from a Secret).
	_, signKey, _ := ed25519.GenerateKey(nil)
	platformSealing, _ := seal.GenerateKey()
	// Device keys (generated on the device at first boot).
	deviceSealing, _ := seal.GenerateKey()

	// Platform side.
	signer, _ := artifact.NewSigner(signKey)
	sealer, _ := seal.NewSealer(platformSealing, deviceSealing.PublicKey(), seal.SealerOptions{})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	data, _, err := signer.Sign(artifact.Manifest{
		App:      "sensor",
		Version:  "1.0.0",
		Limits:   sandbox.Limits{MemoryLimit: 64 << 10, ExecutionTimeout: 100 * time.Millisecond, MaxStackSize: 8 << 10},
		DeviceID: "esp32-0001",
		Sequence: 1,
		IssuedAt: now,
		Expires:  now.Add(24 * time.Hour),
	}, []byte("\x00asm\x01\x00\x00\x00"), artifact.SignOptions{Sealer: sealer})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Device side, with the keys pinned at enrollment.
	opener, _ := seal.NewOpener(deviceSealing, []*ecdh.PublicKey{platformSealing.PublicKey()}, seal.OpenerOptions{})
	verifier, _ := artifact.NewVerifier(artifact.VerifierConfig{
		DeviceID:    "esp32-0001",
		TrustedKeys: []ed25519.PublicKey{signer.PublicKey()},
		Opener:      opener,
		Now:         func() time.Time { return now.Add(time.Minute) },
	})
	marks := sequences{} // one flash value per application in practice
	a, err := verifier.Verify(data, marks)
	if err != nil {
		fmt.Println("refused:", artifact.PeerMessage(err))
		return
	}
	// Install a.Module, and raise the mark in the same flash write.
	marks[a.Manifest.App] = a.Manifest.Sequence
	fmt.Printf("installed %s %s (%d bytes, confidential %t)\n", a.Manifest.App, a.Manifest.Version, len(a.Module), a.Manifest.Confidential)

	_, err = verifier.Verify(data, marks)
	fmt.Println("replay refused:", errors.Is(err, artifact.ErrReplay), "-", artifact.PeerMessage(err))
	// Output:
	// installed sensor 1.0.0 (8 bytes, confidential true)
	// replay refused: true - stale sequence
}
