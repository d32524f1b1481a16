package pairing_test

import (
	"errors"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/pairing"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func TestWindowOpenAt(t *testing.T) {
	w, err := pairing.Open(t0, 10*time.Minute, "admin", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at   time.Time
		want bool
	}{
		{t0, true},
		{t0.Add(9*time.Minute + 59*time.Second), true},
		{t0.Add(10 * time.Minute), false},
		{t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		if got := w.OpenAt(tt.at); got != tt.want {
			t.Errorf("OpenAt(%v) = %v, want %v", tt.at, got, tt.want)
		}
	}
	if (pairing.Window{}).OpenAt(t0) {
		t.Error("the zero window is open")
	}
}

func TestOpenBounds(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, pairing.MaxDuration + time.Second} {
		if _, err := pairing.Open(t0, d, "", nil); err == nil {
			t.Errorf("Open with duration %v: got nil error", d)
		}
	}
	w, err := pairing.Open(t0, 0, "", nil)
	if err != nil || !w.OpenUntil.Equal(t0.Add(pairing.DefaultDuration)) {
		t.Errorf("default duration: got %v, %v", w.OpenUntil, err)
	}
	if _, err := pairing.Open(t0, time.Minute, "", make([]byte, pairing.MaxTokenSize+1)); err == nil {
		t.Error("oversized token accepted")
	}
}

func TestTokenMatches(t *testing.T) {
	open, _ := pairing.Open(t0, time.Minute, "", nil)
	if !open.TokenMatches(nil) || !open.TokenMatches([]byte("anything")) {
		t.Error("a window without a token refuses tokens")
	}
	w, _ := pairing.Open(t0, time.Minute, "", []byte("s3cret"))
	tests := []struct {
		token string
		want  bool
	}{
		{"s3cret", true},
		{"", false},
		{"s3cre", false},
		{"s3cret ", false},
	}
	for _, tt := range tests {
		if got := w.TokenMatches([]byte(tt.token)); got != tt.want {
			t.Errorf("TokenMatches(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
}

func TestDataRoundTrip(t *testing.T) {
	w, _ := pairing.Open(t0, 5*time.Minute, "system:admin", []byte("tok"))
	got, err := pairing.Parse(w.Data())
	if err != nil {
		t.Fatal(err)
	}
	if !got.OpenUntil.Equal(w.OpenUntil) || !got.OpenedAt.Equal(w.OpenedAt) || got.OpenedBy != w.OpenedBy || !got.TokenMatches([]byte("tok")) {
		t.Errorf("round trip: got %+v, want %+v", got, w)
	}
	closed, err := pairing.Parse(nil)
	if err != nil || closed.OpenAt(t0) {
		t.Errorf("Parse(nil) = %+v, %v; want a closed window", closed, err)
	}
}

func TestParseMalformed(t *testing.T) {
	for name, data := range map[string]map[string]string{
		"bad time":     {pairing.KeyOpenUntil: "tomorrow"},
		"bad openedAt": {pairing.KeyOpenedAt: "x"},
		"short hash":   {pairing.KeyTokenSHA256: "abcd"},
		"not hex":      {pairing.KeyTokenSHA256: "zz"},
	} {
		if _, err := pairing.Parse(data); !errors.Is(err, pairing.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}
