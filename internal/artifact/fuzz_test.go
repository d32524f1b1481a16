package artifact

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora")

func writeCorpus(t *testing.T, target string, entries map[string][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range entries {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var fuzzTargets = []string{"FuzzVerify", "FuzzParseManifest"}

// TestFuzzCorpus regenerates the seed corpora with -update; without it it
// checks that they are present.
func TestFuzzCorpus(t *testing.T) {
	if !*update {
		for _, target := range fuzzTargets {
			ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
			if err != nil || len(ents) == 0 {
				t.Errorf("%s seed corpus: got %d files, %v; want some (run with -update)", target, len(ents), err)
			}
		}
		return
	}
	f := newFixture(t)
	plain := f.sign(t, manifest(), false)
	conf := f.sign(t, manifest(), true)
	badSig := decodeSigned(t, plain)
	badSig.Signature[0] ^= 1
	sealed, blob := sealedContent(t)
	v2 := f.issue(t, manifest(), sealed, blob)
	writeCorpus(t, "FuzzVerify", map[string][]byte{
		"sealed-content": v2,
		"v2-no-key":      with(decodeSigned(t, v2), func(s *Signed) { s.KeyMaterial = nil }).mustMarshal(t),
		"plain":          plain,
		"confidential":   conf,
		"bad-signature":  badSig.mustMarshal(t),
		"other-device":   f.sign(t, manifest(func(m *Manifest) { m.DeviceID = "dev-2" }), false),
		"truncated":      plain[:len(plain)/2],
		"empty-map":      {0xa0},
	})
	writeCorpus(t, "FuzzParseManifest", map[string][]byte{
		"plain":          decodeSigned(t, plain).Manifest,
		"confidential":   decodeSigned(t, conf).Manifest,
		"sealed-content": decodeSigned(t, v2).Manifest,
		"empty-map":      {0xa0},
	})
}

// FuzzVerify: arbitrary input never panics, is refused with exactly the
// package's sentinels, and is accepted only if it re-encodes identically and
// carries the signed module.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.sign(f, manifest(), true))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := fx.verifier.Verify(data, store{"sensor": 3})
		if err != nil {
			if a != nil {
				t.Fatalf("got artifact with error %v", err)
			}
			if !isOneOf(err, allSentinels) {
				t.Fatalf("got error %v outside the sentinels", err)
			}
			return
		}
		s, err := Unmarshal(data, 0)
		if err != nil {
			t.Fatalf("verified input does not unmarshal: %v", err)
		}
		again, err := s.Marshal()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("verified input re-encodes differently")
		}
		if !bytes.Equal(a.Module, module) {
			t.Fatalf("got a module the fixture never signed")
		}
	})
}

// FuzzParseManifest: a manifest that parses re-encodes to identical bytes.
func FuzzParseManifest(f *testing.F) {
	fx := newFixture(f)
	f.Add(decodeSigned(f, fx.sign(f, manifest(), false)).Manifest)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("got error %v, want ErrMalformed or ErrTooLarge", err)
			}
			return
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("parsed manifest does not marshal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("got re-encoded %x, want %x", again, b)
		}
	})
}
