package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustEncrypt(t testing.TB, plain, aad []byte) (*ContentKey, []byte) {
	t.Helper()
	k, blob, err := EncryptContent(plain, aad)
	if err != nil {
		t.Fatalf("EncryptContent: %v", err)
	}
	return k, blob
}

func mustWrap(t testing.TB, recipientSeed byte, k *ContentKey, aad []byte) []byte {
	t.Helper()
	w, err := WrapKey(key(t, recipientSeed).PublicKey(), k, aad)
	if err != nil {
		t.Fatalf("WrapKey: %v", err)
	}
	return w
}

func TestContentRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plain []byte
		aad   []byte
	}{
		{"module", []byte("\x00asm\x01\x00\x00\x00 module body"), nil},
		{"with aad", []byte("payload"), []byte("context")},
		{"empty", nil, nil},
		{"largest", make([]byte, DefaultMaxSealedSize-ContentOverhead), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, blob := mustEncrypt(t, tc.plain, tc.aad)
			if got, want := len(blob), len(tc.plain)+ContentOverhead; got != want {
				t.Fatalf("got blob of %d bytes, want %d", got, want)
			}
			got, err := DecryptContent(k, blob, tc.aad, 0)
			if err != nil {
				t.Fatalf("DecryptContent: %v", err)
			}
			if !bytes.Equal(got, tc.plain) {
				t.Errorf("got plaintext %q, want %q", got, tc.plain)
			}
		})
	}
}

func TestEncryptContentFreshKeys(t *testing.T) {
	k1, b1 := mustEncrypt(t, []byte("same"), nil)
	k2, b2 := mustEncrypt(t, []byte("same"), nil)
	if *k1 == *k2 || bytes.Equal(b1, b2) {
		t.Fatal("two encryptions of one plaintext share a key or a ciphertext")
	}
}

func TestContentRefusals(t *testing.T) {
	k, blob := mustEncrypt(t, []byte("secret module"), []byte("aad"))
	other, _ := mustEncrypt(t, nil, nil)
	for _, tc := range []struct {
		name    string
		key     *ContentKey
		blob    []byte
		aad     []byte
		maxSize int
		want    error
	}{
		{"wrong key", other, blob, []byte("aad"), 0, ErrDecrypt},
		{"wrong aad", k, blob, []byte("other"), 0, ErrDecrypt},
		{"no key", nil, blob, []byte("aad"), 0, ErrInvalidKey},
		{"version 1", k, with(blob, 0, 1), []byte("aad"), 0, ErrMalformed},
		{"wrapped-key kind", k, with(blob, 1, kindWrappedKey), []byte("aad"), 0, ErrMalformed},
		{"short", k, blob[:ContentOverhead-1], []byte("aad"), 0, ErrMalformed},
		{"above the size limit", k, blob, []byte("aad"), len(blob) - 1, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecryptContent(tc.key, tc.blob, tc.aad, tc.maxSize)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got != nil {
				t.Errorf("got plaintext with the refusal")
			}
		})
	}
	if _, _, err := EncryptContent(make([]byte, DefaultMaxSealedSize-ContentOverhead+1), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("encrypt above the limit: got %v, want ErrTooLarge", err)
	}
}

// TestContentTamper flips every bit of a content blob: each flip must be
// refused.
func TestContentTamper(t *testing.T) {
	k, blob := mustEncrypt(t, []byte("0123456789"), nil)
	for i := range blob {
		for bit := range 8 {
			c := with(blob, i, blob[i]^1<<bit)
			if got, err := DecryptContent(k, c, nil, 0); err == nil || got != nil {
				t.Fatalf("flip of byte %d bit %d: got %q, %v; want a refusal", i, bit, got, err)
			}
		}
	}
}

func TestWrapUnwrap(t *testing.T) {
	k, _ := mustEncrypt(t, []byte("m"), nil)
	aad := []byte("wasmbed/test")
	w := mustWrap(t, 7, k, aad)
	if len(w) != WrappedKeySize {
		t.Fatalf("got wrapped key of %d bytes, want %d", len(w), WrappedKeySize)
	}
	got, err := UnwrapKey(key(t, 7), w, aad)
	if err != nil {
		t.Fatalf("UnwrapKey: %v", err)
	}
	if *got != *k {
		t.Fatal("unwrapped key differs")
	}
	if w2 := mustWrap(t, 7, k, aad); bytes.Equal(w, w2) {
		t.Error("two wraps of one key are identical; the ephemeral key must be fresh")
	}
	// The Opener unwraps with the device key it holds.
	p := newPair(t, SealerOptions{})
	w3, err := WrapKey(p.device.PublicKey(), k, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.opener.UnwrapKey(w3, aad); err != nil || *got != *k {
		t.Fatalf("Opener.UnwrapKey: got %v, %v", got, err)
	}
}

func TestUnwrapRefusals(t *testing.T) {
	k, _ := mustEncrypt(t, nil, nil)
	w := mustWrap(t, 7, k, []byte("a"))
	for _, tc := range []struct {
		name    string
		wrapped []byte
		seed    byte
		aad     []byte
		want    error
	}{
		{"other recipient", w, 8, []byte("a"), ErrDecrypt},
		{"other aad", w, 7, []byte("b"), ErrDecrypt},
		{"short", w[:WrappedKeySize-1], 7, []byte("a"), ErrMalformed},
		{"long", append(bytes.Clone(w), 0), 7, []byte("a"), ErrMalformed},
		{"version 1", with(w, 0, 1), 7, []byte("a"), ErrMalformed},
		{"content kind", with(w, 1, kindContent), 7, []byte("a"), ErrMalformed},
		{"low-order ephemeral", append(append([]byte{ContentVersion, kindWrappedKey}, make([]byte, 32)...), w[34:]...), 7, []byte("a"), ErrDecrypt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnwrapKey(key(t, tc.seed), tc.wrapped, tc.aad)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got != nil {
				t.Error("got a key with the refusal")
			}
		})
	}
	for i := range w {
		for bit := range 8 {
			if got, err := UnwrapKey(key(t, 7), with(w, i, w[i]^1<<bit), []byte("a")); err == nil || got != nil {
				t.Fatalf("flip of byte %d bit %d: got %v, %v; want a refusal", i, bit, got, err)
			}
		}
	}
	if _, err := WrapKey(nil, k, nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("wrap to no recipient: got %v, want ErrInvalidKey", err)
	}
}

// TestVectorV2 decrypts a content blob and unwraps a key made by an earlier
// build from fixed keys, so the version 2 formats and derivation cannot
// change by accident; wrapping again with the same ephemeral key must give
// the same bytes. Run with -update to rewrite it.
func TestVectorV2(t *testing.T) {
	path := filepath.Join("testdata", "vector-content-v2.txt")
	plain := []byte("wasmbed confidential module vector")
	aad := []byte("wasmbed/test-vector")
	recipient := key(t, 9)
	eph := key(t, 10)
	if *update {
		k, blob, err := encryptContent(bytes.NewReader(bytes.Repeat([]byte{0x5a}, ContentKeySize)), plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		w, err := wrapKey(eph, recipient.PublicKey(), k, aad)
		if err != nil {
			t.Fatal(err)
		}
		text := "content " + hex.EncodeToString(blob) + "\nwrapped " + hex.EncodeToString(w) + "\n"
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string][]byte{}
	for line := range strings.Lines(string(raw)) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		if fields[name], err = hex.DecodeString(value); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	k, err := UnwrapKey(recipient, fields["wrapped"], aad)
	if err != nil {
		t.Fatalf("unwrap vector: %v", err)
	}
	if want := (ContentKey)(bytes.Repeat([]byte{0x5a}, ContentKeySize)); *k != want {
		t.Fatalf("got content key %x, want %x", k[:], want[:])
	}
	got, err := DecryptContent(k, fields["content"], nil, 0)
	if err != nil {
		t.Fatalf("decrypt vector: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("got %q, want %q", got, plain)
	}
	again, err := wrapKey(eph, recipient.PublicKey(), k, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, fields["wrapped"]) {
		t.Errorf("wrapping again gives %x, want the vector's %x", again, fields["wrapped"])
	}
}

// FuzzDecryptContent feeds arbitrary blobs to DecryptContent: it must never
// panic, refuse with a sentinel, and return only plaintext of the blob's size
// minus the overhead.
func FuzzDecryptContent(f *testing.F) {
	k, blob := mustEncrypt(f, []byte("seed"), nil)
	f.Add(blob, []byte(nil))
	f.Fuzz(func(t *testing.T, blob, aad []byte) {
		plain, err := DecryptContent(k, blob, aad, 0)
		if err != nil {
			if plain != nil {
				t.Fatalf("got plaintext with error %v", err)
			}
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("got error %v outside the sentinels", err)
			}
			return
		}
		if len(plain) != len(blob)-ContentOverhead {
			t.Fatalf("got %d bytes of plaintext from a %d-byte blob", len(plain), len(blob))
		}
	})
}

// FuzzUnwrapKey feeds arbitrary wrapped keys to UnwrapKey: it must never
// panic and only refuse with a sentinel; a key comes only from a blob of the
// exact size.
func FuzzUnwrapKey(f *testing.F) {
	k, _ := mustEncrypt(f, nil, nil)
	f.Add(mustWrap(f, 7, k, nil), []byte(nil))
	recipient := key(f, 7)
	f.Fuzz(func(t *testing.T, wrapped, aad []byte) {
		got, err := UnwrapKey(recipient, wrapped, aad)
		if err != nil {
			if got != nil {
				t.Fatalf("got key with error %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDecrypt) {
				t.Fatalf("got error %v outside the sentinels", err)
			}
			return
		}
		if len(wrapped) != WrappedKeySize {
			t.Fatalf("unwrapped a key from %d bytes", len(wrapped))
		}
	})
}
