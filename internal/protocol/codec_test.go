package protocol

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func mustCodec(t testing.TB, side Side, lim Limits) *Codec {
	t.Helper()
	c, err := NewCodec(side, lim)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := mustCodec(t, Either, Limits{})
	for _, s := range samples() {
		t.Run(s.name, func(t *testing.T) {
			b, err := Encode(s.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := c.Decode(b)
			if err != nil {
				t.Fatalf("Decode(%x): %v", b, err)
			}
			if !reflect.DeepEqual(got, s.env) {
				t.Errorf("got %#v, want %#v", got, s.env)
			}
		})
	}
}

func TestEnvelopeLogValue(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	log.Info("received", "msg", Envelope{Version, 5, &Deploy{App: "secret", Artifact: []byte{1}}})
	if got, want := buf.String(), "level=INFO msg=received msg.type=Deploy msg.id=5\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
