package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// unhex decodes hex, ignoring spaces.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// nestedArrays returns depth nested one-element arrays around 0.
func nestedArrays(depth int) []byte {
	return append(bytes.Repeat([]byte{0x81}, depth), 0x00)
}

// heartbeatWithExtra returns a Heartbeat envelope (message id 5) whose body
// has an extra key 9 holding value.
func heartbeatWithExtra(value []byte) []byte {
	b := []byte{0x84, 0x01, 0x05, 0x07, 0xa5, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04, 0x82, 0x00, 0x00, 0x09}
	return append(b, value...)
}

func TestDecodeRejects(t *testing.T) {
	small := Limits{MaxFrameSize: 256, MaxNestedLevels: 4, MaxArrayElements: 16, MaxMapPairs: 16}
	caps := []byte{0x84, 0x01, 0x01, 0x04, 0xa4, 0x01, 0x41, 0xaa, 0x02, 0x01, 0x03, 0x61, 'x', 0x04, 0x91} // 17 capabilities
	for range 17 {
		caps = append(caps, 0x61, 'c')
	}
	values := []byte{0x84, 0x01, 0x02, 0x10, 0xa2, 0x01, 0x61, 'a', 0x03, 0xb1} // 17 config values
	for i := range 17 {
		values = append(values, 0x61, 'a'+byte(i), 0x60)
	}

	tests := []struct {
		name    string
		lim     Limits
		in      []byte
		wantIs  error
		wantID  uint64
		wantErr func(error) bool
	}{
		{
			name:   "frame size",
			lim:    small,
			in:     heartbeatWithExtra(append([]byte{0x59, 0x01, 0x00}, make([]byte, 256)...)),
			wantIs: ErrFrameTooLarge,
			wantErr: func(err error) bool {
				var le *LimitError
				return errors.As(err, &le) && le.Limit == LimitFrameSize && le.Max == 256 && le.Got == 16+3+256
			},
		},
		{
			name:   "nesting",
			lim:    small,
			in:     heartbeatWithExtra(nestedArrays(4)),
			wantIs: ErrTooDeep,
			wantID: 5,
			wantErr: func(err error) bool {
				var le *LimitError
				return errors.As(err, &le) && le.Limit == LimitNestedLevels && le.Max == 4 && le.MessageID == 5
			},
		},
		{
			name:   "nesting bomb, default limits",
			in:     heartbeatWithExtra(nestedArrays(100000)),
			wantIs: ErrTooDeep,
			wantID: 5,
		},
		{
			name:   "array elements",
			lim:    small,
			in:     caps,
			wantIs: ErrTooManyElements,
			wantID: 1,
			wantErr: func(err error) bool {
				var le *LimitError
				return errors.As(err, &le) && le.Limit == LimitArrayElements && le.Max == 16 && le.Got == 17
			},
		},
		{
			name:   "array declared huge",
			in:     heartbeatWithExtra(unhex(t, "9b 7fffffffffffffff")),
			wantIs: ErrTooManyElements,
			wantID: 5,
			wantErr: func(err error) bool {
				var le *LimitError
				return errors.As(err, &le) && le.Got == 0x7fffffffffffffff
			},
		},
		{
			name:   "map declared huge after strings and a tag-free array",
			in:     heartbeatWithExtra(unhex(t, "83 43 010203 62 6869 bb 00000000ffffffff")),
			wantIs: ErrTooManyPairs,
			wantID: 5,
			wantErr: func(err error) bool {
				var le *LimitError
				return errors.As(err, &le) && le.Got == 0xffffffff
			},
		},
		{
			name:   "map pairs",
			lim:    small,
			in:     values,
			wantIs: ErrTooManyPairs,
			wantID: 2,
			wantErr: func(err error) bool {
				var le *LimitError
				return errors.As(err, &le) && le.Limit == LimitMapPairs && le.Max == 16 && le.Got == 17
			},
		},
		{
			name:   "unknown type",
			in:     unhex(t, "84 01 18 2a 18 63 a1 01 02"),
			wantIs: ErrUnsupported,
			wantID: 42,
			wantErr: func(err error) bool {
				var ue *UnsupportedMessageError
				return errors.As(err, &ue) && ue.Type == 99 && ue.MessageID == 42
			},
		},
		{
			name:   "type zero",
			in:     unhex(t, "84 01 03 00 a0"),
			wantIs: ErrUnsupported,
			wantID: 3,
		},
		{
			name:   "newer version",
			in:     unhex(t, "84 02 07 07 a0"),
			wantIs: ErrUnsupportedVersion,
			wantID: 7,
			wantErr: func(err error) bool {
				var ve *VersionError
				return errors.As(err, &ve) && ve.Version == 2
			},
		},
		{
			name:   "empty frame",
			in:     []byte{},
			wantIs: ErrMalformed,
		},
		{
			name:   "not an array",
			in:     unhex(t, "a0"),
			wantIs: ErrMalformed,
		},
		{
			name:   "array of 3",
			in:     unhex(t, "83 01 01 01"),
			wantIs: ErrMalformed,
		},
		{
			name:   "indefinite envelope",
			in:     unhex(t, "9f 01 05 07 a0 ff"),
			wantIs: ErrMalformed,
		},
		{
			name:   "indefinite body map",
			in:     unhex(t, "84 01 05 07 bf 01 00 ff"),
			wantIs: ErrMalformed,
			wantID: 5,
			wantErr: func(err error) bool {
				var ie *cbor.IndefiniteLengthError
				return errors.As(err, &ie)
			},
		},
		{
			name:   "indefinite byte string",
			in:     unhex(t, "84 01 02 09 a2 01 61 61 03 5f 41 00 ff"),
			wantIs: ErrMalformed,
			wantID: 2,
		},
		{
			name:   "duplicate struct key",
			in:     unhex(t, "84 01 05 07 a2 01 01 01 02"),
			wantIs: ErrMalformed,
			wantID: 5,
			wantErr: func(err error) bool {
				var de *cbor.DupMapKeyError
				return errors.As(err, &de)
			},
		},
		{
			name:   "duplicate config key",
			in:     unhex(t, "84 01 02 10 a2 01 61 61 03 a2 61 6b 60 61 6b 60"),
			wantIs: ErrMalformed,
			wantID: 2,
			wantErr: func(err error) bool {
				var de *cbor.DupMapKeyError
				return errors.As(err, &de)
			},
		},
		{
			name:   "tag",
			in:     unhex(t, "84 01 05 07 a1 01 c1 00"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "null",
			in:     unhex(t, "84 01 05 07 a1 01 f6"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "wrong field type",
			in:     unhex(t, "84 01 05 07 a1 01 61 61"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "integer overflow",
			in:     unhex(t, "84 01 05 07 a1 01 1b 0000000100000000"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "body not a map",
			in:     unhex(t, "84 01 05 07 80"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "trailing bytes",
			in:     unhex(t, "84 01 05 07 a0 00"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "truncated body",
			in:     unhex(t, "84 01 05 07 a1 01"),
			wantIs: ErrMalformed,
			wantID: 5,
		},
		{
			name:   "truncated header",
			in:     unhex(t, "84 01 1b 00"),
			wantIs: ErrMalformed,
		},
		{
			name:   "missing body",
			in:     unhex(t, "84 01 05 07"),
			wantIs: ErrMalformed,
		},
		{
			name:   "header field not uint",
			in:     unhex(t, "84 01 20 07 a0"),
			wantIs: ErrMalformed,
		},
		{
			name:   "version out of range",
			in:     unhex(t, "84 1a 00010001 05 07 a0"),
			wantIs: ErrMalformed,
		},
		{
			name:   "invalid utf-8",
			in:     unhex(t, "84 01 02 0c a1 01 62 c3 28"),
			wantIs: ErrMalformed,
			wantID: 2,
		},
		{
			name:   "missing required field",
			in:     unhex(t, "84 01 02 09 a2 01 61 61 02 01"), // Deploy without artifact
			wantIs: ErrMalformed,
			wantID: 2,
			wantErr: func(err error) bool {
				var me *MalformedError
				return errors.As(err, &me) && me.Type == TypeDeploy && strings.Contains(err.Error(), "artifact")
			},
		},
		{
			name:   "app name too long",
			in:     append(unhex(t, "84 01 02 0b a1 01 78 fe"), bytes.Repeat([]byte{'a'}, 254)...),
			wantIs: ErrMalformed,
			wantID: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCodec(t, Either, tt.lim)
			env, err := c.Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode succeeded with %#v, want error matching %v", env, tt.wantIs)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("got error %v, want one matching %v", err, tt.wantIs)
			}
			if env.Message != nil {
				t.Errorf("got message %#v with error, want nil", env.Message)
			}
			if tt.wantErr != nil && !tt.wantErr(err) {
				t.Errorf("error %#v (%v) lacks expected details", err, err)
			}
			reply, ok := ReplyTo(err)
			if !ok {
				t.Fatalf("ReplyTo(%v): got no reply", err)
			}
			if reply.MessageID != tt.wantID {
				t.Errorf("reply id: got %d, want %d", reply.MessageID, tt.wantID)
			}
			if _, err := Encode(reply); err != nil {
				t.Errorf("reply does not encode: %v", err)
			}
		})
	}
}

func TestReplyTo(t *testing.T) {
	c := mustCodec(t, Gateway, Limits{})
	tests := []struct {
		name     string
		in       []byte
		wantCode ErrorCode
		wantID   uint64
	}{
		{"unsupported", unhex(t, "84 01 18 2a 18 63 a0"), CodeUnsupported, 42},
		{"version", unhex(t, "84 02 07 07 a0"), CodeUnsupportedVersion, 7},
		{"malformed", unhex(t, "84 01 05 07 a1 01 f6"), CodeMalformed, 5},
		{"header unreadable", unhex(t, "a0"), CodeMalformed, 0},
		{"too deep", heartbeatWithExtra(nestedArrays(8)), CodeTooLarge, 5},
		{"wrong direction", unhex(t, "84 01 02 0b a1 01 61 61"), CodeUnexpected, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Decode(tt.in)
			reply, ok := ReplyTo(err)
			if !ok {
				t.Fatalf("ReplyTo(%v): got no reply", err)
			}
			m, isErr := reply.Message.(*Error)
			if !isErr {
				t.Fatalf("got reply %T, want *Error", reply.Message)
			}
			if m.Code != tt.wantCode {
				t.Errorf("code: got %v, want %v", m.Code, tt.wantCode)
			}
			if reply.MessageID != tt.wantID || reply.Version != Version {
				t.Errorf("reply header: got version %d id %d, want %d %d", reply.Version, reply.MessageID, Version, tt.wantID)
			}
		})
	}
	if _, ok := ReplyTo(errors.New("connection reset")); ok {
		t.Error("ReplyTo(I/O error): got a reply, want none")
	}
	_, err := c.Decode(unhex(t, "84 01 02 02 a0")) // Error without a code
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("malformed Error: got %v, want ErrMalformed", err)
	}
	if _, ok := ReplyTo(err); ok {
		t.Error("ReplyTo(malformed Error): got a reply, want none")
	}
	if _, ok := ReplyTo(nil); ok {
		t.Error("ReplyTo(nil): got a reply, want none")
	}
}

func TestDirection(t *testing.T) {
	deploy := Envelope{Version, 2, &Deploy{App: "a", Sequence: 1, Artifact: []byte{1}}}
	heartbeat := Envelope{Version, 1, &Heartbeat{}}
	disconnect := Envelope{Version, 3, &Disconnect{Reason: DisconnectShutdown}}
	tests := []struct {
		side    Side
		env     Envelope
		wantErr bool
	}{
		{Gateway, heartbeat, false},
		{Gateway, deploy, true},
		{Gateway, disconnect, false},
		{Device, deploy, false},
		{Device, heartbeat, true},
		{Device, disconnect, false},
		{Either, deploy, false},
		{Either, heartbeat, false},
	}
	for _, tt := range tests {
		name := tt.side.String() + " receives " + tt.env.Message.Type().String()
		t.Run(name, func(t *testing.T) {
			c := mustCodec(t, tt.side, Limits{})
			b, err := Encode(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Decode(b)
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("Decode error: got %v, want error %t", err, tt.wantErr)
			}
			if !tt.wantErr {
				return
			}
			var de *DirectionError
			if !errors.As(err, &de) || !errors.Is(err, ErrWrongDirection) {
				t.Fatalf("got %v, want *DirectionError", err)
			}
			if de.Sender != tt.side.peer() || de.Type != tt.env.Message.Type() || de.MessageID != tt.env.MessageID {
				t.Errorf("got %+v, want sender %v type %v id %d", de, tt.side.peer(), tt.env.Message.Type(), tt.env.MessageID)
			}
		})
	}
}

func TestNewCodecRejectsBadLimits(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
	}{
		{"nesting below minimum", Limits{MaxNestedLevels: 3}},
		{"array elements below minimum", Limits{MaxArrayElements: 15}},
		{"map pairs below minimum", Limits{MaxMapPairs: 8}},
		{"negative frame size", Limits{MaxFrameSize: -1}},
		{"frame size above prefix range", Limits{MaxFrameSize: 1 << 32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCodec(Either, tt.lim); err == nil {
				t.Errorf("NewCodec(%+v): got nil error, want one", tt.lim)
			}
		})
	}
	c := mustCodec(t, Either, Limits{})
	want := Limits{DefaultMaxFrameSize, DefaultMaxNestedLevels, DefaultMaxArrayElements, DefaultMaxMapPairs}
	if got := c.Limits(); got != want {
		t.Errorf("default limits: got %+v, want %+v", got, want)
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		env  Envelope
	}{
		{"nil message", Envelope{MessageID: 1}},
		{"deploy without app", Envelope{MessageID: 2, Message: &Deploy{Artifact: []byte{1}}}},
		{"error without code", Envelope{MessageID: 2, Message: &Error{}}},
		{"enroll request without key", Envelope{MessageID: 1, Message: &EnrollRequest{KeyAlgorithm: KeyEd25519, DeviceType: "esp32", CSR: []byte{0x30}}}},
		{"enroll request without csr", Envelope{MessageID: 1, Message: &EnrollRequest{PublicKey: []byte{1}, KeyAlgorithm: KeyEd25519, DeviceType: "esp32"}}},
		{"enroll request with oversized csr", Envelope{MessageID: 1, Message: &EnrollRequest{PublicKey: []byte{1}, KeyAlgorithm: KeyEd25519, DeviceType: "esp32",
			CSR: make([]byte, MaxCSRSize+1)}}},
		{"sealing key without proof", Envelope{MessageID: 1, Message: &EnrollRequest{PublicKey: []byte{1}, KeyAlgorithm: KeyEd25519, DeviceType: "esp32",
			CSR: []byte{0x30}, SealingKey: make([]byte, 32)}}},
		{"proof without sealing key", Envelope{MessageID: 1, Message: &EnrollRequest{PublicKey: []byte{1}, KeyAlgorithm: KeyEd25519, DeviceType: "esp32",
			CSR: []byte{0x30}, SealingKeyProof: make([]byte, 64)}}},
		{"oversized proof", Envelope{MessageID: 1, Message: &EnrollRequest{PublicKey: []byte{1}, KeyAlgorithm: KeyEd25519, DeviceType: "esp32",
			CSR: []byte{0x30}, SealingKey: make([]byte, 32), SealingKeyProof: make([]byte, MaxProofSize+1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Encode(tt.env); err == nil {
				t.Errorf("Encode: got %x, want error", b)
			}
		})
	}
}

// TestUnknownKeysIgnored checks forward compatibility: a newer peer may add
// optional keys to a body.
func TestUnknownKeysIgnored(t *testing.T) {
	c := mustCodec(t, Gateway, Limits{})
	in := heartbeatWithExtra(unhex(t, "a1 01 82 01 02")) // key 9: {1: [1, 2]}
	env, err := c.Decode(in)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if _, ok := env.Message.(*Heartbeat); !ok {
		t.Fatalf("got %T, want *Heartbeat", env.Message)
	}
	out, err := Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "84 01 05 07 a4 01 00 02 00 03 00 04 82 00 00"); !bytes.Equal(out, want) {
		t.Errorf("re-encoded: got %x, want %x", out, want)
	}
}

// TestDecodeDoesNotAlias checks that decoded messages own their bytes, so a
// Reader may reuse its buffer.
func TestDecodeDoesNotAlias(t *testing.T) {
	c := mustCodec(t, Device, Limits{})
	in, err := Encode(Envelope{Version, 2, &Deploy{App: "a", Sequence: 1, Artifact: []byte("wasm"), Sealed: []byte("seal")}})
	if err != nil {
		t.Fatal(err)
	}
	env, err := c.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	clear(in)
	d := env.Message.(*Deploy)
	if string(d.Artifact) != "wasm" || string(d.Sealed) != "seal" || d.App != "a" {
		t.Errorf("got %+v after clearing the input, want artifact wasm, sealed seal", d)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{TypeHeartbeat.String(), "Heartbeat"},
		{Type(99).String(), "Type(99)"},
		{CodeRateLimited.String(), "rate limited"},
		{ErrorCode(77).String(), "ErrorCode(77)"},
		{StateLimitExceeded.String(), "limit exceeded"},
		{ReasonReplay.String(), "replay"},
		{ResourceStack.String(), "stack"},
		{DisconnectEnrolled.String(), "enrolled"},
		{KeyEd25519.String(), "ed25519"},
		{Gateway.String(), "gateway"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
