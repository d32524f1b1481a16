package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fuzzLimits keep fuzzing fast while exercising every limit.
var fuzzLimits = Limits{MaxFrameSize: 64 << 10, MaxNestedLevels: 6, MaxArrayElements: 32, MaxMapPairs: 32}

// checkDecoded asserts the properties every successfully decoded envelope
// has: it encodes, and its encoding is a fixed point of decode-then-encode
// (so canonical input, which is what Encode produces, comes back byte for
// byte).
func checkDecoded(t *testing.T, c *Codec, in []byte, env Envelope) {
	t.Helper()
	out, err := Encode(env)
	if err != nil {
		t.Fatalf("decoded %x but cannot encode it: %v", in, err)
	}
	env2, err := c.Decode(out)
	if err != nil {
		t.Fatalf("cannot decode re-encoded %x (from %x): %v", out, in, err)
	}
	out2, err := Encode(env2)
	if err != nil {
		t.Fatalf("second encode: %v", err)
	}
	if !bytes.Equal(out, out2) {
		t.Fatalf("encoding is not stable: %x, then %x (from %x)", out, out2, in)
	}
	if canonicalSeeds[string(in)] && !bytes.Equal(in, out) {
		t.Fatalf("canonical input %x re-encoded as %x", in, out)
	}
}

// canonicalSeeds holds the vectors, which are canonical.
var canonicalSeeds = func() map[string]bool {
	m := make(map[string]bool)
	for _, s := range samples() {
		b, err := Encode(s.env)
		if err != nil {
			panic(err)
		}
		m[string(b)] = true
	}
	return m
}()

// checkRejected asserts that a decode error is typed and answerable.
func checkRejected(t *testing.T, in []byte, err error) {
	t.Helper()
	typed := []error{ErrMalformed, ErrLimitExceeded, ErrUnsupported, ErrUnsupportedVersion, ErrWrongDirection}
	for _, want := range typed {
		if errors.Is(err, want) {
			reply, ok := ReplyTo(err)
			var me *MalformedError
			if !ok && errors.As(err, &me) && me.Type == TypeError {
				return // an Error is never answered with an Error
			}
			if !ok {
				t.Fatalf("no reply for %v", err)
			}
			if _, err := Encode(reply); err != nil {
				t.Fatalf("reply to %x does not encode: %v", in, err)
			}
			return
		}
	}
	t.Fatalf("untyped error for %x: %v", in, err)
}

func FuzzDecodeEnvelope(f *testing.F) {
	c, err := NewCodec(Either, fuzzLimits)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		env, err := c.Decode(in)
		if err != nil {
			checkRejected(t, in, err)
			return
		}
		checkDecoded(t, c, in, env)
	})
}

func FuzzReadFrame(f *testing.F) {
	c, err := NewCodec(Gateway, fuzzLimits)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), c)
		for range 64 {
			env, err := r.ReadEnvelope()
			switch {
			case err == io.EOF:
				return
			case errors.Is(err, ErrTruncated), errors.Is(err, ErrFrameTooLarge):
				return // fatal for the stream
			case err != nil:
				checkRejected(t, in, err)
			default:
				checkDecoded(t, c, in, env)
			}
		}
	})
}

// seed is one checked-in fuzz corpus entry.
type seed struct {
	name string
	data []byte
}

// fuzzSeeds returns the checked-in seed corpora.
func fuzzSeeds(t *testing.T) map[string][]seed {
	var frames []byte
	var dec []seed
	for _, s := range samples() {
		b, err := Encode(s.env)
		if err != nil {
			t.Fatal(err)
		}
		dec = append(dec, seed{"vector-" + s.name, b})
		frames = append(frames, frameOf(b)...)
	}
	bomb := heartbeatWithExtra(nestedArrays(10000))
	dec = append(dec,
		seed{"nesting-bomb", bomb},
		seed{"map-nesting-bomb", heartbeatWithExtra(append(bytes.Repeat([]byte{0xa1, 0x01}, 5000), 0x00))},
		seed{"huge-array-length", heartbeatWithExtra(unhex(t, "9b 7fffffffffffffff"))},
		seed{"huge-bytes-length", heartbeatWithExtra(unhex(t, "5b 7fffffffffffffff 00"))},
		seed{"unknown-type", unhex(t, "84 01 18 2a 18 63 a1 01 02")},
		seed{"newer-version", unhex(t, "84 02 07 07 a0")},
		seed{"indefinite-envelope", unhex(t, "9f 01 05 07 a0 ff")},
		seed{"indefinite-body", unhex(t, "84 01 05 07 bf 01 00 ff")},
		seed{"duplicate-key", unhex(t, "84 01 05 07 a2 01 01 01 02")},
		seed{"duplicate-config-key", unhex(t, "84 01 02 10 a2 01 61 61 03 a2 61 6b 60 61 6b 60")},
		seed{"tag", unhex(t, "84 01 05 07 a1 01 c1 00")},
		seed{"truncated-header", unhex(t, "84 01 1b 00")},
	)
	read := []seed{
		{"all-vectors", frames},
		{"huge-declared-length", unhex(t, "ffffffff 84 01 05 07 a0 00")},
		{"large-declared-length-short-body", unhex(t, "00100000 84 01 05 07 a0 00")},
		{"nesting-bomb", frameOf(bomb)},
		{"zero-length-frame", append([]byte{0, 0, 0, 0}, frames...)},
		{"truncated", frames[:len(frames)-3]},
	}
	return map[string][]seed{"FuzzDecodeEnvelope": dec, "FuzzReadFrame": read}
}

// TestFuzzSeeds keeps the checked-in seed corpora in sync with fuzzSeeds;
// -update rewrites them.
func TestFuzzSeeds(t *testing.T) {
	for target, seeds := range fuzzSeeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *update {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds {
			path := filepath.Join(dir, s.name)
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.data)
			if *update {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read seed (run with -update to create): %v", err)
			}
			if string(got) != want {
				t.Errorf("%s is stale; run go test -update", path)
			}
		}
	}
}
