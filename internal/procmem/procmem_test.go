package procmem_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/wasmbed/wasmbed/internal/procmem"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		text    string
		src     procmem.Source
		want    procmem.Usage
		wantErr bool
	}{
		{name: "rollup", file: "testdata/smaps_rollup.txt", src: procmem.SourceSmapsRollup,
			want: procmem.Usage{Resident: 149504 << 10, Private: 17408 << 10, Source: procmem.SourceSmapsRollup}},
		{name: "smaps sums mappings", file: "testdata/smaps.txt", src: procmem.SourceSmaps,
			want: procmem.Usage{Resident: 27628 << 10, Private: 21524 << 10, Source: procmem.SourceSmaps}},
		{name: "no anonymous field", text: "Rss: 8 kB\n", src: procmem.SourceSmaps,
			want: procmem.Usage{Resident: 8 << 10, Source: procmem.SourceSmaps}},
		{name: "empty", text: "", wantErr: true},
		{name: "no rss", text: "Anonymous: 4 kB\n", wantErr: true},
		{name: "wrong unit", text: "Rss: 4 MB\n", wantErr: true},
		{name: "no unit", text: "Rss: 4\n", wantErr: true},
		{name: "not a number", text: "Rss: x kB\n", wantErr: true},
		{name: "negative", text: "Rss: -4 kB\n", wantErr: true},
		{name: "value overflows", text: "Rss: 18014398509481984 kB\n", wantErr: true},
		{name: "sum overflows", text: "Rss: 18014398509481983 kB\nRss: 18014398509481983 kB\n", wantErr: true},
		{name: "line too long", text: "Rss: 1 kB\n" + strings.Repeat("x", 9000) + "\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.text
			if tt.file != "" {
				b, err := os.ReadFile(tt.file)
				if err != nil {
					t.Fatal(err)
				}
				text = string(b)
			}
			got, err := procmem.Parse(strings.NewReader(text), tt.src)
			if tt.wantErr {
				if !errors.Is(err, procmem.ErrFormat) {
					t.Fatalf("got %+v, %v; want an error wrapping ErrFormat", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSelfSeesTouchedMemory checks that the figures follow memory the
// process writes to: 64 MiB of touched pages appear in both.
func TestSelfSeesTouchedMemory(t *testing.T) {
	before, err := procmem.Self()
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	buf := make([]byte, size)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	after, err := procmem.Self()
	runtime.KeepAlive(buf)
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	// Most of the pages, not necessarily all: the runtime may have had some
	// of them resident already.
	const want = size * 3 / 4
	if d.Private < want || d.Resident < want {
		t.Errorf("after touching %d MiB: got %+v (from %v to %v), want both to grow by at least %d MiB",
			size>>20, d, before, after, want>>20)
	}
	if after.Private > after.Resident && after.Source != procmem.SourceGoRuntime {
		t.Errorf("private %d exceeds resident %d", after.Private, after.Resident)
	}
}

func TestOfSelfMatchesSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		_, err := procmem.Of(os.Getpid())
		if !errors.Is(err, procmem.ErrUnsupported) {
			t.Fatalf("Of on %s: got %v, want ErrUnsupported", runtime.GOOS, err)
		}
		return
	}
	u, err := procmem.Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.Resident == 0 || u.Private == 0 || u.Source != procmem.SourceSmapsRollup && u.Source != procmem.SourceSmaps {
		t.Errorf("Of(own pid): got %+v, want non-zero figures from smaps", u)
	}
	if _, err := procmem.Of(0); err == nil {
		t.Error("Of(0): got no error")
	}
}

func TestDeltaPer(t *testing.T) {
	d := procmem.Usage{Resident: 3000, Private: 2000}.Sub(procmem.Usage{Resident: 1000, Private: 2500})
	if d != (procmem.Delta{Resident: 2000, Private: -500}) {
		t.Fatalf("Sub: got %+v", d)
	}
	if r, p := d.Per(4); r != 500 || p != -125 {
		t.Errorf("Per(4): got %v, %v; want 500, -125", r, p)
	}
	if r, p := d.Per(0); r != 0 || p != 0 {
		t.Errorf("Per(0): got %v, %v; want 0, 0", r, p)
	}
}

// FuzzParse checks that Parse never panics and that what it returns reads
// back the same from its canonical rendering.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/smaps_rollup.txt", "testdata/smaps.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Rss: 4 kB\nAnonymous: 4 kB\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := procmem.Parse(strings.NewReader(string(b)), procmem.SourceSmaps)
		if err != nil {
			if !errors.Is(err, procmem.ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		canon := fmt.Sprintf("Rss: %d kB\nAnonymous: %d kB\n", u.Resident>>10, u.Private>>10)
		again, err := procmem.Parse(strings.NewReader(canon), procmem.SourceSmaps)
		if err != nil || again != u {
			t.Fatalf("canonical form %q: got %+v, %v; want %+v", canon, again, err, u)
		}
	})
}
