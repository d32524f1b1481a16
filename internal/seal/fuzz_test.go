package seal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// writeCorpus rewrites testdata/fuzz/<target>/ with one seed file per entry
// (each entry a list of []byte arguments).
func writeCorpus(t *testing.T, target string, entries map[string][][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, args := range entries {
		var b bytes.Buffer
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(a)))
		}
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzCorpus regenerates the fuzz seed corpora with -update; without it
// it checks that they are present.
func TestFuzzCorpus(t *testing.T) {
	if !*update {
		for _, target := range []string{"FuzzOpen", "FuzzParseHeader", "FuzzDecryptContent", "FuzzUnwrapKey"} {
			ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
			if err != nil || len(ents) == 0 {
				t.Errorf("%s seed corpus: got %d files, %v; want some (run with -update)", target, len(ents), err)
			}
		}
		return
	}
	p := newPair(t, SealerOptions{})
	aad := ConfigAAD("dev-1", "sensor", 1)
	module := mustSeal(t, p.sealer, PurposeModule, []byte("\x00asm\x01\x00\x00\x00"), aad)
	config := mustSeal(t, p.sealer, PurposeConfig, []byte("secret"), aad)
	empty := mustSeal(t, p.sealer, PurposeConfig, nil, nil)
	writeCorpus(t, "FuzzOpen", map[string][][]byte{
		"module":      {module, aad},
		"config":      {config, aad},
		"empty":       {empty, nil},
		"wrong-aad":   {config, []byte("x")},
		"header-only": {module[:HeaderSize], aad},
		"short":       {[]byte{1, 1, 0}, nil},
	})
	ck, content := mustEncrypt(t, []byte("\x00asm\x01\x00\x00\x00"), nil)
	writeCorpus(t, "FuzzDecryptContent", map[string][][]byte{
		"module":       {content, nil},
		"wrong-aad":    {content, []byte("x")},
		"wrapped-kind": {with(content, 1, kindWrappedKey), nil},
		"short":        {content[:ContentOverhead-1], nil},
	})
	wrapped := mustWrap(t, 7, ck, []byte("aad"))
	writeCorpus(t, "FuzzUnwrapKey", map[string][][]byte{
		"wrapped":   {wrapped, []byte("aad")},
		"wrong-aad": {wrapped, nil},
		"short":     {wrapped[:WrappedKeySize-1], []byte("aad")},
		"version-1": {with(wrapped, 0, 1), []byte("aad")},
	})
	writeCorpus(t, "FuzzParseHeader", map[string][][]byte{
		"module":    {module},
		"config":    {config},
		"bad-nonce": {with(config, 45, 1)},
		"version-2": {with(config, 0, 2)},
		"short":     {module[:Overhead-1]},
	})
}

// FuzzOpen feeds arbitrary blobs to an Opener: it must never panic, refuse
// with one of the package's sentinels, and only ever return plaintext of the
// blob's size minus the overhead.
func FuzzOpen(f *testing.F) {
	p := newPair(f, SealerOptions{})
	f.Add(mustSeal(f, p.sealer, PurposeConfig, []byte("seed"), nil), []byte(nil))
	f.Fuzz(func(t *testing.T, sealed, aad []byte) {
		for _, pur := range []Purpose{PurposeModule, PurposeConfig} {
			plain, err := p.opener.Open(pur, sealed, aad)
			if err != nil {
				if plain != nil {
					t.Fatalf("got plaintext with error %v", err)
				}
				if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrMalformed) &&
					!errors.Is(err, ErrUnknownSender) && !errors.Is(err, ErrDecrypt) {
					t.Fatalf("got error %v outside the sentinels", err)
				}
				continue
			}
			if got, want := len(plain), len(sealed)-Overhead; got != want {
				t.Fatalf("got %d plaintext bytes from a %d-byte blob, want %d", got, len(sealed), want)
			}
			if Purpose(sealed[1]) != pur {
				t.Fatalf("opened a %d blob as %s", sealed[1], pur)
			}
		}
	})
}

// FuzzParseHeader: a header that parses re-encodes to the same bytes.
func FuzzParseHeader(f *testing.F) {
	p := newPair(f, SealerOptions{})
	f.Add(mustSeal(f, p.sealer, PurposeModule, nil, nil))
	f.Fuzz(func(t *testing.T, sealed []byte) {
		h, err := ParseHeader(sealed, 4096)
		if err != nil {
			if h != nil {
				t.Fatalf("got header with error %v", err)
			}
			return
		}
		got := appendHeader(nil, h.Purpose, h.Sender, h.Ephemeral[:], h.Counter())
		if !bytes.Equal(got, sealed[:HeaderSize]) {
			t.Fatalf("got re-encoded header %x, want %x", got, sealed[:HeaderSize])
		}
	})
}
