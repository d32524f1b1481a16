package seal

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata vectors and fuzz seed corpora")

func key(t testing.TB, b byte) *ecdh.PrivateKey {
	t.Helper()
	k, err := ParsePrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type pair struct {
	platform, device *ecdh.PrivateKey
	sealer           *Sealer
	opener           *Opener
}

func newPair(t testing.TB, opts SealerOptions) *pair {
	t.Helper()
	p := &pair{platform: key(t, 1), device: key(t, 2)}
	var err error
	if p.sealer, err = NewSealer(p.platform, p.device.PublicKey(), opts); err != nil {
		t.Fatal(err)
	}
	if p.opener, err = NewOpener(p.device, []*ecdh.PublicKey{p.platform.PublicKey()}, OpenerOptions{}); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustSeal(t testing.TB, s *Sealer, pur Purpose, plain, aad []byte) []byte {
	t.Helper()
	b, err := s.Seal(pur, plain, aad)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	p := newPair(t, SealerOptions{})
	aad := ConfigAAD("dev-1", "sensor", 3)
	for _, tc := range []struct {
		name    string
		purpose Purpose
		plain   []byte
	}{
		{"module", PurposeModule, []byte("\x00asm\x01\x00\x00\x00")},
		{"config", PurposeConfig, []byte(`{"password":"hunter2"}`)},
		{"empty", PurposeConfig, nil},
		{"large", PurposeModule, bytes.Repeat([]byte{7}, 64<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealed := mustSeal(t, p.sealer, tc.purpose, tc.plain, aad)
			if got, want := len(sealed), len(tc.plain)+Overhead; got != want {
				t.Errorf("got sealed size %d, want %d", got, want)
			}
			if len(tc.plain) > 16 && bytes.Contains(sealed, tc.plain[:16]) {
				t.Errorf("sealed blob contains the plaintext")
			}
			got, err := p.opener.Open(tc.purpose, sealed, aad)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tc.plain) {
				t.Errorf("got plaintext %q, want %q", got, tc.plain)
			}
		})
	}
}

// TestRefusals covers every refusal of Open and Seal, one sentinel each.
func TestRefusals(t *testing.T) {
	p := newPair(t, SealerOptions{})
	aad := []byte("context")
	good := mustSeal(t, p.sealer, PurposeModule, []byte("secret module"), aad)

	other := key(t, 9)
	stranger, err := NewSealer(other, p.device.PublicKey(), SealerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	otherDevice, err := NewSealer(p.platform, key(t, 8).PublicKey(), SealerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	small, err := NewOpener(p.device, []*ecdh.PublicKey{p.platform.PublicKey()}, OpenerOptions{MaxSealedSize: 100})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		opener  *Opener
		purpose Purpose
		sealed  []byte
		aad     []byte
		want    error
	}{
		{"too large", small, PurposeModule, mustSeal(t, p.sealer, PurposeModule, make([]byte, 100), aad), aad, ErrTooLarge},
		{"empty", p.opener, PurposeModule, nil, aad, ErrMalformed},
		{"truncated below overhead", p.opener, PurposeModule, good[:Overhead-1], aad, ErrMalformed},
		{"unknown version", p.opener, PurposeModule, with(good, 0, 2), aad, ErrMalformed},
		{"unknown purpose", p.opener, PurposeModule, with(good, 1, 9), aad, ErrMalformed},
		{"nonce prefix differs from purpose", p.opener, PurposeModule, with(good, 45, 2), aad, ErrMalformed},
		{"unknown sender", p.opener, PurposeModule, mustSeal(t, stranger, PurposeModule, []byte("x"), aad), aad, ErrUnknownSender},
		{"sealed for another device", p.opener, PurposeModule, mustSeal(t, otherDevice, PurposeModule, []byte("x"), aad), aad, ErrDecrypt},
		{"wrong purpose", p.opener, PurposeConfig, good, aad, ErrDecrypt},
		{"wrong aad", p.opener, PurposeModule, good, []byte("contexT"), ErrDecrypt},
		{"missing aad", p.opener, PurposeModule, good, nil, ErrDecrypt},
		{"truncated tag", p.opener, PurposeModule, good[:len(good)-1], aad, ErrDecrypt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opener.Open(tc.purpose, tc.sealed, tc.aad)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
			if got != nil {
				t.Errorf("got plaintext %q with an error, want none", got)
			}
			var e *Error
			if !errors.As(err, &e) || e.Detail == "" {
				t.Errorf("got %T %v, want *Error with a detail", err, err)
			}
		})
	}

	t.Run("seal too large", func(t *testing.T) {
		s, err := NewSealer(p.platform, p.device.PublicKey(), SealerOptions{MaxSealedSize: 200})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Seal(PurposeConfig, make([]byte, 200-Overhead+1), nil); !errors.Is(err, ErrTooLarge) {
			t.Errorf("got %v, want ErrTooLarge", err)
		}
		if _, err := s.Seal(PurposeConfig, make([]byte, 200-Overhead), nil); err != nil {
			t.Errorf("got %v sealing exactly the limit, want nil", err)
		}
	})
}

func with(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

// TestTamper flips every bit of every region of a sealed blob: each flip must
// be refused and none may yield plaintext.
func TestTamper(t *testing.T) {
	p := newPair(t, SealerOptions{})
	aad := ConfigAAD("dev-1", "sensor", 1)
	sealed := mustSeal(t, p.sealer, PurposeConfig, []byte("top secret value"), aad)
	regions := []struct {
		name       string
		start, end int
		want       error
	}{
		{"version", 0, 1, ErrMalformed},
		{"purpose", 1, 2, nil}, // ErrMalformed or ErrDecrypt depending on the value
		{"sender key id", 2, 10, ErrUnknownSender},
		{"ephemeral key", 10, 42, ErrDecrypt},
		{"nonce purpose prefix", 42, 46, ErrMalformed},
		{"nonce counter", 46, 54, ErrDecrypt},
		{"ciphertext", 54, len(sealed) - TagSize, ErrDecrypt},
		{"tag", len(sealed) - TagSize, len(sealed), ErrDecrypt},
	}
	for _, r := range regions {
		t.Run(r.name, func(t *testing.T) {
			for i := r.start; i < r.end; i++ {
				for bit := range 8 {
					c := bytes.Clone(sealed)
					c[i] ^= 1 << bit
					got, err := p.opener.Open(PurposeConfig, c, aad)
					if err == nil || got != nil {
						t.Fatalf("byte %d bit %d: got %q, %v; want refusal", i, bit, got, err)
					}
					if r.want != nil && !errors.Is(err, r.want) {
						t.Fatalf("byte %d bit %d: got %v, want %v", i, bit, err, r.want)
					}
				}
			}
		})
	}
	t.Run("aad", func(t *testing.T) {
		for i := range aad {
			a := bytes.Clone(aad)
			a[i] ^= 0x01
			if _, err := p.opener.Open(PurposeConfig, sealed, a); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("aad byte %d: got %v, want ErrDecrypt", i, err)
			}
		}
	})
	if _, err := p.opener.Open(PurposeConfig, sealed, aad); err != nil {
		t.Fatalf("untampered blob: got %v, want nil", err)
	}
}

func TestKeyExhaustedAndRekey(t *testing.T) {
	const limit = 5
	p := newPair(t, SealerOptions{MessageLimit: limit})
	first, _ := ParseHeader(mustSeal(t, p.sealer, PurposeModule, nil, nil), 0)
	for i := 1; i < limit; i++ {
		mustSeal(t, p.sealer, PurposeModule, nil, nil)
	}
	if got := p.sealer.Remaining(PurposeModule); got != 0 {
		t.Errorf("got Remaining %d, want 0", got)
	}
	for range 3 {
		if _, err := p.sealer.Seal(PurposeModule, nil, nil); !errors.Is(err, ErrKeyExhausted) {
			t.Fatalf("got %v past the limit, want ErrKeyExhausted", err)
		}
	}
	// Config has its own key and counter.
	if got := p.sealer.Remaining(PurposeConfig); got != limit {
		t.Errorf("got config Remaining %d, want %d", got, limit)
	}
	if err := p.sealer.Rekey(); err != nil {
		t.Fatal(err)
	}
	b := mustSeal(t, p.sealer, PurposeModule, []byte("again"), nil)
	h, _ := ParseHeader(b, 0)
	if h.Counter() != 0 {
		t.Errorf("got counter %d after rekey, want 0", h.Counter())
	}
	if h.Ephemeral == first.Ephemeral {
		t.Errorf("got the same ephemeral key after rekey")
	}
	if _, err := p.opener.Open(PurposeModule, b, nil); err != nil {
		t.Errorf("open after rekey: %v", err)
	}
}

func TestByteLimit(t *testing.T) {
	p := newPair(t, SealerOptions{ByteLimit: 100})
	mustSeal(t, p.sealer, PurposeConfig, make([]byte, 60), nil)
	mustSeal(t, p.sealer, PurposeConfig, make([]byte, 40), nil)
	if _, err := p.sealer.Seal(PurposeConfig, make([]byte, 1), nil); !errors.Is(err, ErrKeyExhausted) {
		t.Fatalf("got %v past the byte limit, want ErrKeyExhausted", err)
	}
	mustSeal(t, p.sealer, PurposeModule, make([]byte, 100), nil) // own budget
	if err := p.sealer.Rekey(); err != nil {
		t.Fatal(err)
	}
	mustSeal(t, p.sealer, PurposeConfig, make([]byte, 100), nil)
}

func TestSealerOptions(t *testing.T) {
	platform, device := key(t, 1), key(t, 2)
	lowOrder, err := ecdh.X25519().NewPublicKey(make([]byte, 32)) // u = 0, refused by ParsePublicKey
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdh.P256().GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		platform *ecdh.PrivateKey
		device   *ecdh.PublicKey
		opts     SealerOptions
		want     error
	}{
		{"low-order device key", platform, lowOrder, SealerOptions{}, ErrInvalidKey},
		{"p-256 device key", platform, p256.PublicKey(), SealerOptions{}, ErrInvalidKey},
		{"p-256 platform key", p256, device.PublicKey(), SealerOptions{}, ErrInvalidKey},
		{"nil device key", platform, nil, SealerOptions{}, ErrInvalidKey},
		{"limit above maximum", platform, device.PublicKey(), SealerOptions{MessageLimit: MaxMessagesPerKey + 1}, nil},
		{"byte limit above maximum", platform, device.PublicKey(), SealerOptions{ByteLimit: MaxBytesPerKey + 1}, nil},
		{"max size below overhead", platform, device.PublicKey(), SealerOptions{MaxSealedSize: Overhead - 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSealer(tc.platform, tc.device, tc.opts)
			if err == nil || s != nil {
				t.Fatalf("got %v, %v; want an error", s, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := ParsePublicKey(make([]byte, 31)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("31-byte public key: got %v, want ErrInvalidKey", err)
	}
	// The points of small order on the curve and its twist (RFC 7748
	// section 6.1 refers to them as low-order points), as listed by
	// libsodium, also with the ignored top bit set.
	for i, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
	} {
		b, _ := hex.DecodeString(h)
		if _, err := ParsePublicKey(b); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "small order") {
			t.Errorf("low-order point %d %s: got %v, want ErrInvalidKey for small order", i, h, err)
		}
	}
	if _, err := ParsePublicKey(device.PublicKey().Bytes()); err != nil {
		t.Errorf("a generated key: got %v, want nil", err)
	}
	if _, err := NewOpener(device, nil, OpenerOptions{}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("opener without platform keys: got %v, want ErrInvalidKey", err)
	}
	if _, err := NewOpener(device, []*ecdh.PublicKey{lowOrder}, OpenerOptions{}); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("opener with low-order platform key: got %v, want ErrInvalidKey", err)
	}
}

// TestKeyRotation: a device trusting the old and new platform keys opens
// blobs from both; once the old key is dropped its blobs are refused.
func TestKeyRotation(t *testing.T) {
	device := key(t, 2)
	oldKey, newKey := key(t, 1), key(t, 5)
	oldS, err := NewSealer(oldKey, device.PublicKey(), SealerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newS, err := NewSealer(newKey, device.PublicKey(), SealerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	both, err := NewOpener(device, []*ecdh.PublicKey{oldKey.PublicKey(), newKey.PublicKey()}, OpenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newOnly, err := NewOpener(device, []*ecdh.PublicKey{newKey.PublicKey()}, OpenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fromOld := mustSeal(t, oldS, PurposeConfig, []byte("a"), nil)
	fromNew := mustSeal(t, newS, PurposeConfig, []byte("b"), nil)
	for _, tc := range []struct {
		name   string
		opener *Opener
		sealed []byte
		want   error
	}{
		{"old key, both trusted", both, fromOld, nil},
		{"new key, both trusted", both, fromNew, nil},
		{"new key, new trusted", newOnly, fromNew, nil},
		{"old key, old dropped", newOnly, fromOld, ErrUnknownSender},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.opener.Open(PurposeConfig, tc.sealed, nil); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
	if oldS.Sender() == newS.Sender() {
		t.Errorf("got equal key ids for different keys")
	}
}

// TestPurposeKeysDiffer: the same epoch derives different keys per purpose,
// so a module blob relabelled as config does not open.
func TestPurposeKeysDiffer(t *testing.T) {
	p := newPair(t, SealerOptions{})
	b := mustSeal(t, p.sealer, PurposeModule, []byte("m"), nil)
	c := bytes.Clone(b)
	c[1] = byte(PurposeConfig)
	c[45] = byte(PurposeConfig)
	if _, err := p.opener.Open(PurposeConfig, c, nil); !errors.Is(err, ErrDecrypt) {
		t.Errorf("relabelled blob: got %v, want ErrDecrypt", err)
	}
}

// TestOpenerCache: blobs of many epochs open in any order, whether their keys
// are cached or have been evicted.
func TestOpenerCache(t *testing.T) {
	for _, size := range []int{-1, 1, 4} {
		p := newPair(t, SealerOptions{})
		o, err := NewOpener(p.device, []*ecdh.PublicKey{p.platform.PublicKey()}, OpenerOptions{CacheSize: size})
		if err != nil {
			t.Fatal(err)
		}
		var blobs [][]byte
		for i := range 6 {
			blobs = append(blobs, mustSeal(t, p.sealer, PurposeConfig, []byte{byte(i)}, nil))
			if err := p.sealer.Rekey(); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 2 {
			for i, b := range blobs {
				got, err := o.Open(PurposeConfig, b, nil)
				if err != nil || !bytes.Equal(got, []byte{byte(i)}) {
					t.Fatalf("cache %d round %d blob %d: got %v, %v", size, round, i, got, err)
				}
			}
		}
	}
}

func TestNoNonceReuse(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		// The full million takes a few seconds under -race; -short keeps a
		// tenth of it so the property is still exercised.
		n = 100_000
	}
	p := newPair(t, SealerOptions{})
	seen := make(map[[NonceSize]byte]struct{}, n)
	var eph [32]byte
	for i := range n {
		b, err := p.sealer.Seal(PurposeModule, nil, nil)
		if err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
		var nonce [NonceSize]byte
		copy(nonce[:], b[42:54])
		if _, dup := seen[nonce]; dup {
			t.Fatalf("seal %d: nonce %x repeated", i, nonce)
		}
		seen[nonce] = struct{}{}
		if i == 0 {
			copy(eph[:], b[10:42])
		} else if !bytes.Equal(eph[:], b[10:42]) {
			t.Fatalf("seal %d: key changed without Rekey", i)
		}
	}
	if got := len(seen); got != n {
		t.Errorf("got %d distinct nonces, want %d", got, n)
	}
}

// TestSealerHammer seals from many goroutines while others rekey; every blob
// must open and no (key, nonce) pair may repeat.
func TestSealerHammer(t *testing.T) {
	p := newPair(t, SealerOptions{})
	const workers, each = 8, 2000
	type kn struct {
		eph   [32]byte
		nonce [NonceSize]byte
	}
	results := make([][][]byte, workers)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	rekeyDone := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				rekeyDone <- n
				return
			default:
			}
			if err := p.sealer.Rekey(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				pur := PurposeModule
				if i%2 == 1 {
					pur = PurposeConfig
				}
				b, err := p.sealer.Seal(pur, []byte{byte(w), byte(i)}, []byte{byte(w)})
				if err != nil {
					t.Error(err)
					return
				}
				results[w] = append(results[w], b)
			}
		}()
	}
	wg.Wait()
	close(stop)
	rekeys := <-rekeyDone
	seen := make(map[kn]struct{}, workers*each)
	for w, rs := range results {
		for i, b := range rs {
			var k kn
			copy(k.eph[:], b[10:42])
			copy(k.nonce[:], b[42:54])
			if _, dup := seen[k]; dup {
				t.Fatalf("worker %d seal %d: key and nonce repeated", w, i)
			}
			seen[k] = struct{}{}
			pur := Purpose(b[1])
			got, err := p.opener.Open(pur, b, []byte{byte(w)})
			if err != nil || !bytes.Equal(got, []byte{byte(w), byte(i)}) {
				t.Fatalf("worker %d seal %d: got %v, %v", w, i, got, err)
			}
		}
	}
	if len(seen) != workers*each {
		t.Errorf("got %d blobs, want %d", len(seen), workers*each)
	}
	t.Logf("%d seals across %d rekeys", len(seen), rekeys)
}

func TestConfigAAD(t *testing.T) {
	base := ConfigAAD("dev-1", "app", 1)
	for _, tc := range []struct {
		name string
		aad  []byte
	}{
		{"device", ConfigAAD("dev-2", "app", 1)},
		{"app", ConfigAAD("dev-1", "app2", 1)},
		{"generation", ConfigAAD("dev-1", "app", 2)},
		{"boundary shift", ConfigAAD("dev-1a", "pp", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.aad, base) {
				t.Errorf("got equal AAD %x for different context", base)
			}
		})
	}
}

func TestPeerMessage(t *testing.T) {
	p := newPair(t, SealerOptions{})
	good := mustSeal(t, p.sealer, PurposeConfig, []byte("x"), nil)
	o, err := NewOpener(p.device, []*ecdh.PublicKey{key(t, 7).PublicKey()}, OpenerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, errSender := o.Open(PurposeConfig, good, nil)
	_, errDecrypt := p.opener.Open(PurposeConfig, good, []byte("other"))
	if !errors.Is(errSender, ErrUnknownSender) || !errors.Is(errDecrypt, ErrDecrypt) {
		t.Fatalf("got %v and %v, want ErrUnknownSender and ErrDecrypt", errSender, errDecrypt)
	}
	if a, b := PeerMessage(errSender), PeerMessage(errDecrypt); a != b {
		t.Errorf("got peer messages %q and %q, want the same text", a, b)
	}
	if errSender.Error() == errDecrypt.Error() {
		t.Errorf("got identical local errors %q, want precise ones", errSender)
	}
}

// TestVector opens a blob sealed by an earlier build, so the format and key
// derivation cannot change by accident. Run with -update to rewrite it.
func TestVector(t *testing.T) {
	p := newPair(t, SealerOptions{})
	path := filepath.Join("testdata", "vector-config-v1.bin")
	plain := []byte("wasmbed sealed configuration vector")
	aad := ConfigAAD("dev-1", "sensor", 42)
	if *update {
		if err := os.WriteFile(path, mustSeal(t, p.sealer, PurposeConfig, plain, aad), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.opener.Open(PurposeConfig, b, aad)
	if err != nil {
		t.Fatalf("Open vector: %v", err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("got %q, want %q", got, plain)
	}
}
