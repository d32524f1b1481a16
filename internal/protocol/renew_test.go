package protocol

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestRenewRoundTrip encodes and decodes renewal messages at the edges of
// their bounds.
func TestRenewRoundTrip(t *testing.T) {
	chain := make([][]byte, MaxChainLength)
	for i := range chain {
		chain[i] = bytes.Repeat([]byte{byte(i + 1)}, MaxCertSize)
	}
	tests := []struct {
		name string
		side Side
		msg  Message
	}{
		{"request", Gateway, &RenewRequest{CSR: []byte{0x30, 0x01, 0x00}}},
		{"request at max csr size", Gateway, &RenewRequest{CSR: bytes.Repeat([]byte{0x30}, MaxCSRSize)}},
		{"response one cert", Device, &RenewResponse{CertChain: [][]byte{{0x30, 0x00}}}},
		{"response at max chain", Device, &RenewResponse{CertChain: chain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCodec(t, tt.side, Limits{})
			in := Envelope{Version: Version, MessageID: 9, Message: tt.msg}
			b, err := Encode(in)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := c.Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, in) {
				t.Errorf("got %#v, want %#v", got, in)
			}
		})
	}
}

// TestRenewDecodeRejects checks the decoder's validation of renewal
// messages: required fields, size bounds and direction.
func TestRenewDecodeRejects(t *testing.T) {
	big := bytes.Repeat([]byte{0x30}, MaxCertSize+1)
	tooMany := make([][]byte, MaxChainLength+1)
	for i := range tooMany {
		tooMany[i] = []byte{0x30, 0x00}
	}
	tests := []struct {
		name     string
		side     Side
		msg      Message
		wantIs   error
		wantCode ErrorCode
		wantText string
	}{
		{"empty csr", Gateway, &RenewRequest{CSR: []byte{}}, ErrMalformed, CodeMalformed, "csr"},
		{"csr too large", Gateway, &RenewRequest{CSR: bytes.Repeat([]byte{0x30}, MaxCSRSize+1)}, ErrMalformed, CodeMalformed, "csr is 8193 bytes"},
		{"empty chain", Device, &RenewResponse{CertChain: [][]byte{}}, ErrMalformed, CodeMalformed, "certificate chain"},
		{"empty certificate", Device, &RenewResponse{CertChain: [][]byte{{0x30}, {}}}, ErrMalformed, CodeMalformed, "certificate 1 is empty"},
		{"certificate too large", Device, &RenewResponse{CertChain: [][]byte{big}}, ErrMalformed, CodeMalformed, "certificate 0 is 8193 bytes"},
		{"chain too long", Device, &RenewResponse{CertChain: tooMany}, ErrMalformed, CodeMalformed, "9 certificates"},
		{"request sent by gateway", Device, &RenewRequest{CSR: []byte{0x30}}, ErrWrongDirection, CodeUnexpected, ""},
		{"response sent by device", Gateway, &RenewResponse{CertChain: [][]byte{{0x30}}}, ErrWrongDirection, CodeUnexpected, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeUnchecked(t, 21, tt.msg)
			c := mustCodec(t, tt.side, Limits{})
			env, err := c.Decode(b)
			if err == nil {
				t.Fatalf("Decode succeeded with %#v, want error matching %v", env.Message, tt.wantIs)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("got error %v, want one matching %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("got error %q, want it to mention %q", err, tt.wantText)
			}
			reply, ok := ReplyTo(err)
			if !ok {
				t.Fatalf("ReplyTo(%v): got no reply", err)
			}
			if reply.MessageID != 21 {
				t.Errorf("reply id: got %d, want 21", reply.MessageID)
			}
			if got := reply.Message.(*Error).Code; got != tt.wantCode {
				t.Errorf("reply code: got %s, want %s", got, tt.wantCode)
			}
			if _, err := Encode(Envelope{MessageID: 21, Message: tt.msg}); err == nil && tt.wantIs == ErrMalformed {
				t.Errorf("Encode accepted a message the decoder refuses")
			}
		})
	}
}

// TestRenewKnownToOldPeers documents compatibility: renewal types are
// within the version 1 range and leave Version unchanged.
func TestRenewKnownToOldPeers(t *testing.T) {
	if Version != 1 {
		t.Errorf("Version: got %d, want 1", Version)
	}
	for _, typ := range []Type{TypeRenewRequest, TypeRenewResponse} {
		if typ > 23 {
			t.Errorf("%s: got tag %d, want a one-byte tag (<= 23)", typ, uint32(typ))
		}
	}
	if got, want := TypeRenewRequest.Sender(), Device; got != want {
		t.Errorf("RenewRequest sender: got %s, want %s", got, want)
	}
	if got, want := TypeRenewResponse.Sender(), Gateway; got != want {
		t.Errorf("RenewResponse sender: got %s, want %s", got, want)
	}
}

// encodeUnchecked encodes msg without the required-field checks of Encode,
// to build envelopes a conforming sender would not produce.
func encodeUnchecked(t *testing.T, id uint64, msg Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write(appendHeader(nil, header{version: Version, id: id, typ: msg.Type()}))
	if err := encMode.MarshalToBuffer(msg, &buf); err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return buf.Bytes()
}
