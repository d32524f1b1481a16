package protocol

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors from the samples")

const vectorDir = "testdata/vectors"

// vector is the parsed form of a testdata/vectors/*.txt file:
//
//	# comment lines
//	type: Heartbeat
//	hex: 84...
//	frame: 0000001684...
//	diag: [1, 5, 7, {...}]
type vector struct {
	typ   string
	hex   string
	frame string
	diag  string
}

func formatVector(s sample, b []byte) (string, error) {
	diag, err := cbor.Diagnose(b)
	if err != nil {
		return "", err
	}
	t := s.env.Message.Type()
	var sb strings.Builder
	fmt.Fprintf(&sb, "# %s (type %d), sent by: %s.\n", t, uint32(t), t.Sender())
	fmt.Fprintf(&sb, "# hex is the envelope; frame is the same envelope with its length prefix.\n")
	ann, err := annotate(b)
	if err != nil {
		return "", err
	}
	sb.WriteString("#\n")
	for line := range strings.Lines(ann) {
		sb.WriteString("#   " + line)
	}
	sb.WriteString("#\n")
	fmt.Fprintf(&sb, "type: %s\n", t)
	fmt.Fprintf(&sb, "hex: %x\n", b)
	fmt.Fprintf(&sb, "frame: %08x%x\n", len(b), b)
	fmt.Fprintf(&sb, "diag: %s\n", diag)
	return sb.String(), nil
}

func parseVector(text string) (vector, error) {
	var v vector
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, ok := strings.Cut(line, ": ")
		if !ok {
			return v, fmt.Errorf("bad line %q", line)
		}
		switch k {
		case "type":
			v.typ = val
		case "hex":
			v.hex = val
		case "frame":
			v.frame = val
		case "diag":
			v.diag = val
		default:
			return v, fmt.Errorf("unknown key %q", k)
		}
	}
	if v.typ == "" || v.hex == "" || v.frame == "" || v.diag == "" {
		return v, fmt.Errorf("incomplete vector")
	}
	return v, nil
}

func TestVectors(t *testing.T) {
	c := mustCodec(t, Either, Limits{})
	if *update {
		if err := os.MkdirAll(vectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			path := filepath.Join(vectorDir, s.name+".txt")
			b, err := Encode(s.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if *update {
				text, err := formatVector(s, b)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read vector (run with -update to create): %v", err)
			}
			if text, err := formatVector(s, b); err != nil || text != string(raw) {
				t.Errorf("%s is stale (%v); run go test -update and review the diff", path, err)
			}
			v, err := parseVector(string(raw))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			want, err := hex.DecodeString(v.hex)
			if err != nil {
				t.Fatalf("%s: hex: %v", path, err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("Encode: got %x, want %x", b, want)
			}
			frame, err := AppendFrame(nil, s.env)
			if err != nil {
				t.Fatalf("AppendFrame: %v", err)
			}
			if got := hex.EncodeToString(frame); got != v.frame {
				t.Errorf("AppendFrame: got %s, want %s", got, v.frame)
			}
			if got := s.env.Message.Type().String(); got != v.typ {
				t.Errorf("type: got %s, want %s", got, v.typ)
			}
			diag, err := cbor.Diagnose(want)
			if err != nil {
				t.Fatalf("Diagnose: %v", err)
			}
			if diag != v.diag {
				t.Errorf("diag: got %s, want %s", diag, v.diag)
			}
			env, err := c.Decode(want)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(env, s.env) {
				t.Errorf("Decode: got %#v, want %#v", env, s.env)
			}
		})
	}
}

// TestSamplesCoverEveryType keeps the vectors complete as messages are added.
func TestSamplesCoverEveryType(t *testing.T) {
	seen := make(map[Type]bool)
	for _, s := range samples() {
		seen[s.env.Message.Type()] = true
	}
	for _, typ := range Types() {
		if !seen[typ] {
			t.Errorf("no sample for %s", typ)
		}
		if m := newMessage(typ); m == nil || m.Type() != typ {
			t.Errorf("newMessage(%s) gave %T", typ, m)
		}
	}
}
