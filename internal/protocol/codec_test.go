package protocol

import (
	"reflect"
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
