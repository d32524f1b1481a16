package protocol

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// invalidSample is an envelope a receiver must refuse, with the Error reply
// it sends. They are written to testdata/vectors/invalid for implementers of
// other decoders.
type invalidSample struct {
	name     string
	about    string
	receiver Side
	env      []byte
	code     ErrorCode
	id       uint64
}

func invalidSamples(t testing.TB) []invalidSample {
	manyCaps := []byte{0x84, 0x01, 0x01, 0x04, 0xa4, 0x01, 0x41, 0xaa, 0x02, 0x01, 0x03, 0x61, 'x', 0x04, 0x99, 0x01, 0x01}
	for range 257 {
		manyCaps = append(manyCaps, 0x61, 'c')
	}
	hb := func(extra string) []byte { return heartbeatWithExtra(unhex(t, extra)) }
	return []invalidSample{
		{"unknown_type", "message type 99 is unknown: answer unsupported and carry on", Gateway,
			unhex(t, "84 01 18 2a 18 63 a1 01 02"), CodeUnsupported, 42},
		{"newer_version", "protocol version 2 is not spoken", Gateway,
			unhex(t, "84 02 07 07 a0"), CodeUnsupportedVersion, 7},
		{"wrong_direction", "a Deploy sent by a device", Gateway,
			unhex(t, "84 01 03 09 a3 01 61 61 02 01 03 41 00"), CodeUnexpected, 3},
		{"indefinite_envelope", "indefinite-length envelope array; the id cannot be read", Gateway,
			unhex(t, "9f 01 05 07 a0 ff"), CodeMalformed, 0},
		{"indefinite_body", "indefinite-length body map", Gateway,
			unhex(t, "84 01 05 07 bf 01 00 ff"), CodeMalformed, 5},
		{"indefinite_string", "indefinite-length text string", Gateway,
			unhex(t, "84 01 05 0e a2 01 7f 61 61 ff 03 02"), CodeMalformed, 5},
		{"duplicate_key", "body key 1 appears twice", Gateway,
			unhex(t, "84 01 05 07 a2 01 01 01 02"), CodeMalformed, 5},
		{"tag", "CBOR tag 1 around a value", Gateway,
			unhex(t, "84 01 05 07 a1 01 c1 00"), CodeMalformed, 5},
		{"null", "null instead of a value", Gateway,
			unhex(t, "84 01 05 07 a1 01 f6"), CodeMalformed, 5},
		{"float", "floating-point value", Gateway,
			unhex(t, "84 01 05 07 a1 01 f9 3c00"), CodeMalformed, 5},
		{"overflow", "uptime-seconds does not fit 32 bits", Gateway,
			unhex(t, "84 01 05 07 a1 01 1b 0000000100000000"), CodeMalformed, 5},
		{"trailing_bytes", "a byte after the envelope", Gateway,
			unhex(t, "84 01 05 07 a0 00"), CodeMalformed, 5},
		{"missing_state", "AppStatus without state", Gateway,
			unhex(t, "84 01 05 0e a1 01 61 61"), CodeMalformed, 5},
		{"empty_app", "Start with an empty app name", Device,
			unhex(t, "84 01 02 0b a1 01 60"), CodeMalformed, 2},
		{"missing_artifact", "Deploy without artifact", Device,
			unhex(t, "84 01 02 09 a2 01 61 61 02 01"), CodeMalformed, 2},
		{"enroll_without_csr", "EnrollRequest without the csr that proves possession of the key", Gateway,
			unhex(t, "84 01 01 04 a3 01 41 aa 02 01 03 61 78"), CodeMalformed, 1},
		{"sealing_key_without_proof", "EnrollRequest with a sealing key but no sealing-key proof", Gateway,
			unhex(t, "84 01 01 04 a5 01 41 aa 02 01 03 61 78 05 41 30 08 58 20"+strings.Repeat("7c", 32)), CodeMalformed, 1},
		{"empty_csr", "RenewRequest with an empty csr", Gateway,
			unhex(t, "84 01 0f 12 a1 01 40"), CodeMalformed, 15},
		{"empty_chain", "RenewResponse with an empty cert-chain", Device,
			unhex(t, "84 01 0f 13 a1 01 80"), CodeMalformed, 15},
		{"too_deep", "nine levels of nesting (body map, then eight arrays) with the default limit of 8", Gateway,
			hb(strings.Repeat("81", 8) + "00"), CodeTooLarge, 5},
		{"too_many_elements", "257 capabilities with the default limit of 256", Gateway,
			manyCaps, CodeTooLarge, 1},
	}
}

func formatInvalid(s invalidSample) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# %s.\n# A %s receiving this envelope (default limits) refuses it and answers\n", s.about, s.receiver)
	fmt.Fprintf(&sb, "# [1, %d, 2, {1: %d}], an Error %q.\n", s.id, uint32(s.code), s.code.String())
	fmt.Fprintf(&sb, "receiver: %s\n", s.receiver)
	fmt.Fprintf(&sb, "hex: %x\n", s.env)
	fmt.Fprintf(&sb, "code: %d\n", uint32(s.code))
	fmt.Fprintf(&sb, "id: %d\n", s.id)
	return sb.String()
}

func TestInvalidVectors(t *testing.T) {
	dir := filepath.Join(vectorDir, "invalid")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range invalidSamples(t) {
		t.Run(s.name, func(t *testing.T) {
			path := filepath.Join(dir, s.name+".txt")
			text := formatInvalid(s)
			if *update {
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read vector (run with -update to create): %v", err)
			}
			if string(raw) != text {
				t.Errorf("%s is stale; run go test -update and review the diff", path)
			}
			fields := make(map[string]string)
			for line := range strings.Lines(string(raw)) {
				if k, v, ok := strings.Cut(strings.TrimSpace(line), ": "); ok && !strings.HasPrefix(k, "#") {
					fields[k] = v
				}
			}
			in, err := hex.DecodeString(fields["hex"])
			if err != nil || !bytes.Equal(in, s.env) {
				t.Fatalf("hex: got %q (%v), want %x", fields["hex"], err, s.env)
			}
			_, err = mustCodec(t, s.receiver, Limits{}).Decode(in)
			reply, ok := ReplyTo(err)
			if !ok {
				t.Fatalf("Decode: got %v, want an error with a reply", err)
			}
			m := reply.Message.(*Error)
			if strconv.Itoa(int(m.Code)) != fields["code"] || strconv.FormatUint(reply.MessageID, 10) != fields["id"] {
				t.Errorf("reply: got code %d id %d, want code %s id %s (error %v)", m.Code, reply.MessageID, fields["code"], fields["id"], err)
			}
		})
	}
}
