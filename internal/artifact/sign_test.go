package artifact

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/edkey"
	"github.com/wasmbed/wasmbed/internal/seal"
)

func TestSignRefusals(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		m    Manifest
		want error
	}{
		{"empty app", manifest(func(m *Manifest) { m.App = "" }), ErrMalformed},
		{"app too long", manifest(func(m *Manifest) { m.App = strings.Repeat("a", MaxNameLen+1) }), ErrMalformed},
		{"app with space", manifest(func(m *Manifest) { m.App = "my app" }), ErrMalformed},
		{"app with control byte", manifest(func(m *Manifest) { m.App = "app\n" }), ErrMalformed},
		{"empty version", manifest(func(m *Manifest) { m.Version = "" }), ErrMalformed},
		{"version too long", manifest(func(m *Manifest) { m.Version = strings.Repeat("1", MaxVersionLen+1) }), ErrMalformed},
		{"empty device", manifest(func(m *Manifest) { m.DeviceID = "" }), ErrMalformed},
		{"non-ascii device", manifest(func(m *Manifest) { m.DeviceID = "dév" }), ErrMalformed},
		{"sequence zero", manifest(func(m *Manifest) { m.Sequence = 0 }), ErrMalformed},
		{"memory limit zero", manifest(func(m *Manifest) { m.Limits.MemoryLimit = 0 }), ErrMalformed},
		{"timeout below 1ms", manifest(func(m *Manifest) { m.Limits.ExecutionTimeout = time.Microsecond }), ErrMalformed},
		{"negative timeout", manifest(func(m *Manifest) { m.Limits.ExecutionTimeout = -time.Second }), ErrMalformed},
		{"stack zero", manifest(func(m *Manifest) { m.Limits.MaxStackSize = 0 }), ErrMalformed},
		{"no issue time", manifest(func(m *Manifest) { m.IssuedAt = time.Time{} }), ErrMalformed},
		{"expiry before issue", manifest(func(m *Manifest) { m.Expires = m.IssuedAt.Add(-time.Second) }), ErrMalformed},
		{"expiry equals issue", manifest(func(m *Manifest) { m.Expires = m.IssuedAt }), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, m, err := f.signer.Sign(tc.m, module, SignOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if data != nil || m != nil {
				t.Errorf("got output with an error")
			}
		})
	}
	t.Run("empty module", func(t *testing.T) {
		if _, _, err := f.signer.Sign(manifest(), nil, SignOptions{}); !errors.Is(err, ErrMalformed) {
			t.Errorf("got %v, want ErrMalformed", err)
		}
	})
	t.Run("module too large", func(t *testing.T) {
		if _, _, err := f.signer.Sign(manifest(), make([]byte, 2000), SignOptions{MaxSize: 1000}); !errors.Is(err, ErrTooLarge) {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
	})
	t.Run("artifact too large after encoding", func(t *testing.T) {
		if _, _, err := f.signer.Sign(manifest(), make([]byte, 1000), SignOptions{MaxSize: 1000}); !errors.Is(err, ErrTooLarge) {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
	})
	t.Run("sealer exhausted", func(t *testing.T) {
		s, err := seal.NewSealer(f.platform, f.deviceKey.PublicKey(), seal.SealerOptions{MessageLimit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.signer.Sign(manifest(), module, SignOptions{Sealer: s}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.signer.Sign(manifest(), module, SignOptions{Sealer: s}); !errors.Is(err, seal.ErrKeyExhausted) {
			t.Errorf("got %v, want seal.ErrKeyExhausted", err)
		}
	})
	t.Run("bad key", func(t *testing.T) {
		if _, err := NewSigner(make([]byte, 10)); err == nil {
			t.Errorf("got nil for a 10-byte key, want an error")
		}
	})
}

// TestSignNormalises: the manifest Sign returns is exactly what a device
// decodes (times in whole seconds, UTC; timeout in whole milliseconds).
func TestSignNormalises(t *testing.T) {
	f := newFixture(t)
	in := manifest(func(m *Manifest) {
		m.IssuedAt = t0.Add(1500 * time.Millisecond).In(time.FixedZone("X", 3600))
		m.Limits.ExecutionTimeout = 250*time.Millisecond + 999*time.Microsecond
	})
	data, signed, err := f.signer.Sign(in, module, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.verifier.Verify(data, store{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Manifest != *signed {
		t.Errorf("got verified manifest %+v, want the signed one %+v", a.Manifest, *signed)
	}
	if got, want := signed.IssuedAt, t0.Add(time.Second); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("got IssuedAt %v, want %v UTC", got, want)
	}
	if got, want := signed.Limits.ExecutionTimeout, 250*time.Millisecond; got != want {
		t.Errorf("got timeout %v, want %v", got, want)
	}
}

func TestNewVerifierRefusals(t *testing.T) {
	f := newFixture(t)
	k := f.signer.PublicKey()
	for _, tc := range []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no device id", VerifierConfig{TrustedKeys: []ed25519PublicKey{k}}},
		{"no keys", VerifierConfig{DeviceID: "dev-1"}},
		{"too many keys", VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{k, k, k, k, k}}},
		{"short key", VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519PublicKey{k[:31]}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v, err := NewVerifier(tc.cfg); err == nil || v != nil {
				t.Errorf("got %v, %v; want an error", v, err)
			}
		})
	}
}

// TestSmallOrderTrustedKeyRefused shows the attack a small-order trusted key
// opens — an artifact "signed" without any private key that crypto/ed25519
// accepts — and that NewVerifier refuses such a key.
func TestSmallOrderTrustedKeyRefused(t *testing.T) {
	weak := ed25519.PublicKey(append([]byte{1}, make([]byte, 31)...)) // the identity point
	sig := make([]byte, ed25519.SignatureSize)
	sig[0] = 1 // R = the identity, S = 0: no private key involved
	m := manifest(func(m *Manifest) {
		m.KeyID = KeyIDOf(weak)
		m.ModuleHash = sha256.Sum256(module)
		m.ModuleSize = uint64(len(module))
	})
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(weak, SigningMessage(mb, nil), sig) {
		t.Fatal("the forged signature does not verify under the identity key; the premise of this test is gone")
	}
	_, err = NewVerifier(VerifierConfig{DeviceID: "dev-1", TrustedKeys: []ed25519.PublicKey{weak}})
	if !errors.Is(err, edkey.ErrSmallOrder) {
		t.Fatalf("NewVerifier with a small-order key: got %v, want edkey.ErrSmallOrder", err)
	}
}
