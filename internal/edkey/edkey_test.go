package edkey

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
)

// smallOrder lists encodings of points of small order: the eight points
// (both signs of the order-4 and order-8 points) and the non-canonical
// spellings of 0 and 1 that crypto/ed25519 also decodes.
var smallOrder = map[string]string{
	"identity":              "0100000000000000000000000000000000000000000000000000000000000000",
	"order 2":               "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"order 4":               "0000000000000000000000000000000000000000000000000000000000000000",
	"order 4, negative x":   "0000000000000000000000000000000000000000000000000000000000000080",
	"order 8 a":             "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
	"order 8 a, negative x": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
	"order 8 b":             "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"order 8 b, negative x": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
	"order 4 as y = p":      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"identity as y = p+1":   "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge returns a message and a signature that crypto/ed25519 accepts under
// pub without any private key: R = the identity, S = 0, which verifies
// whenever [k]pub is the identity.
func forge(pub []byte) (msg, sig []byte, ok bool) {
	sig = make([]byte, ed25519.SignatureSize)
	sig[0] = 1 // R = encoding of the identity; S = 0
	for i := range 256 {
		m := fmt.Appendf(nil, "deploy attacker module #%d", i)
		if ed25519.Verify(pub, m, sig) {
			return m, sig, true
		}
	}
	return nil, nil, false
}

// TestSmallOrderKeysAllowForgery shows why the check exists: Go's verifier
// accepts a signature made without a private key under every small-order
// key, and Check refuses every one of them.
func TestSmallOrderKeysAllowForgery(t *testing.T) {
	for name, h := range smallOrder {
		t.Run(name, func(t *testing.T) {
			pub := mustHex(t, h)
			if _, _, ok := forge(pub); !ok {
				t.Fatalf("no forgery found under %s; the key list is wrong", h)
			}
			err := Check(pub)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check: got %v, want *Error", err)
			}
			if !errors.Is(err, ErrSmallOrder) && !errors.Is(err, ErrNonCanonical) {
				t.Fatalf("Check: got %v, want ErrSmallOrder or ErrNonCanonical", err)
			}
		})
	}
}

func TestSmallOrderReasons(t *testing.T) {
	for name, h := range smallOrder {
		want := ErrSmallOrder
		if name == "order 4 as y = p" || name == "identity as y = p+1" {
			want = ErrNonCanonical
		}
		if err := Check(mustHex(t, h)); !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
}

func TestGeneratedKeysAccepted(t *testing.T) {
	for i := range 64 {
		pub, _, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(pub); err != nil {
			t.Fatalf("key %d %x: got %v, want nil", i, pub, err)
		}
		// A real key resists the forgery the check guards against.
		if _, _, ok := forge(pub); ok {
			t.Fatalf("key %d: forged a signature under a real key", i)
		}
	}
}

func TestRefusals(t *testing.T) {
	notOnCurve := func() []byte {
		// Find the smallest y whose x^2 is not a square.
		for y := byte(2); y < 255; y++ {
			k := make([]byte, 32)
			k[0] = y
			if err := Check(k); errors.Is(err, ErrNotOnCurve) {
				return k
			}
		}
		t.Fatal("no off-curve y below 255")
		return nil
	}()
	tests := []struct {
		name string
		key  []byte
		want error
	}{
		{"empty", nil, ErrLength},
		{"31 bytes", make([]byte, 31), ErrLength},
		{"33 bytes", make([]byte, 33), ErrLength},
		{"y = p+2", mustHex(t, "efffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), ErrNonCanonical},
		{"y = 2^255-1", mustHex(t, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"), ErrNonCanonical},
		{"not on the curve", notOnCurve, ErrNotOnCurve},
		{"identity with the sign bit", mustHex(t, "0100000000000000000000000000000000000000000000000000000000000080"), ErrSmallOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(tt.key); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// An off-curve key cannot be forged under either: crypto/ed25519
	// refuses to decode it. It is refused to fail loudly at pinning time.
	if _, _, ok := forge(notOnCurve); ok {
		t.Error("forged a signature under an off-curve key")
	}
}

func FuzzCheck(f *testing.F) {
	for _, h := range smallOrder {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	f.Add([]byte(pub))
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b) != nil {
			return
		}
		// Whatever Check accepts, crypto/ed25519 decodes and no trivial
		// forgery verifies under it.
		if _, _, ok := forge(b); ok {
			t.Fatalf("accepted key %x admits a forgery", b)
		}
	})
}

// BenchmarkCheck measures the check of a valid key, the common case.
func BenchmarkCheck(b *testing.B) {
	pub, _, _ := ed25519.GenerateKey(nil)
	b.ReportAllocs()
	for b.Loop() {
		if err := Check(pub); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCheckFastAgrees: CheckFast refuses exactly what Check refuses, except
// keys off the curve.
func TestCheckFastAgrees(t *testing.T) {
	keys := [][]byte{nil, make([]byte, 31)}
	for _, h := range smallOrder {
		keys = append(keys, mustHex(t, h))
	}
	for y := range 64 {
		k := make([]byte, 32)
		k[0] = byte(y)
		keys = append(keys, k)
		nc := bytes.Repeat([]byte{0xff}, 32)
		nc[0], nc[31] = byte(0xed+y%19), 0x7f|byte(y%2)<<7
		keys = append(keys, nc)
	}
	for range 32 {
		pub, _, _ := ed25519.GenerateKey(nil)
		keys = append(keys, pub)
	}
	for _, k := range keys {
		full, fast := Check(k), CheckFast(k)
		if errors.Is(full, ErrNotOnCurve) {
			if fast != nil {
				t.Errorf("%x: CheckFast %v for an off-curve key of canonical encoding", k, fast)
			}
			continue
		}
		if (full == nil) != (fast == nil) || (full != nil && !errors.Is(fast, full.(*Error).Reason)) {
			t.Errorf("%x: Check %v, CheckFast %v", k, full, fast)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = CheckFast(keys[len(keys)-1]) }); allocs != 0 {
		t.Errorf("CheckFast allocates %v times, want 0", allocs)
	}
}
