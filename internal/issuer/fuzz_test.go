package issuer

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the fuzz seed corpora")

// TestFuzzCorpus checks that the seed corpora are present; with -update it
// rewrites them.
func TestFuzzCorpus(t *testing.T) {
	if *update {
		writeSeeds(t)
	}
	for _, target := range []string{"FuzzParseSigningKey", "FuzzParsePublicData"} {
		ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", target))
		if err != nil || len(ents) == 0 {
			t.Errorf("%s seed corpus: got %d files, %v; want some", target, len(ents), err)
		}
	}
}

// FuzzParseSigningKey: stored key data never panics the parser, is refused
// with ErrMalformedKey, or parses to a key that encodes back to a key that
// parses to itself.
func FuzzParseSigningKey(f *testing.F) {
	key, err := GenerateSigningKey()
	if err != nil {
		f.Fatal(err)
	}
	enc, err := EncodeSigningKey(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseSigningKey(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("got %v, want ErrMalformedKey", err)
			}
			return
		}
		again, err := EncodeSigningKey(k)
		if err != nil {
			t.Fatal(err)
		}
		k2, err := ParseSigningKey(again)
		if err != nil || !k2.Equal(k) {
			t.Fatalf("re-encoded key does not parse back: %v", err)
		}
	})
}

// FuzzParsePublicData: published key data never panics the parser, is
// refused with ErrMalformedKey, or round-trips through Data.
func FuzzParsePublicData(f *testing.F) {
	sk, _ := GenerateSigningKey()
	ik, _ := GenerateIssuerKey()
	d := (&Public{SigningKey: sk.Public().(ed25519.PublicKey), IssuerKey: ik.PublicKey()}).Data()
	f.Add(d["signingKey"], d["signingKeyID"], d["sealingKey"], d["sealingKeyID"])
	f.Fuzz(func(t *testing.T, signing, signingID, sealing, sealingID string) {
		data := map[string]string{"signingKey": signing, "signingKeyID": signingID, "sealingKey": sealing, "sealingKeyID": sealingID}
		p, err := ParsePublicData(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedKey) {
				t.Fatalf("got %v, want ErrMalformedKey", err)
			}
			return
		}
		for k, v := range p.Data() {
			if data[k] != v {
				t.Fatalf("%s: got %q back, parsed %q", k, v, data[k])
			}
		}
	})
}

// writeSeed writes a seed corpus entry of string or []byte arguments.
func writeSeed(t *testing.T, target, name string, args ...any) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	text := "go test fuzz v1\n"
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			text += fmt.Sprintf("[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			text += fmt.Sprintf("string(%s)\n", strconv.Quote(v))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeSeeds(t *testing.T) {
	key, _ := GenerateSigningKey()
	enc, _ := EncodeSigningKey(key)
	writeSeed(t, "FuzzParseSigningKey", "valid", enc)
	writeSeed(t, "FuzzParseSigningKey", "truncated", enc[:len(enc)/2])
	writeSeed(t, "FuzzParseSigningKey", "empty", []byte{})
	ik, _ := GenerateIssuerKey()
	d := (&Public{SigningKey: key.Public().(ed25519.PublicKey), IssuerKey: ik.PublicKey()}).Data()
	writeSeed(t, "FuzzParsePublicData", "valid", d["signingKey"], d["signingKeyID"], d["sealingKey"], d["sealingKeyID"])
	writeSeed(t, "FuzzParsePublicData", "wrong-id", d["signingKey"], "0000000000000000", d["sealingKey"], d["sealingKeyID"])
}
