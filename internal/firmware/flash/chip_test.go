package flash

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

var testGeo = Geometry{PageSize: 256, BlockSize: 1024, Blocks: 16}

func chips(t *testing.T) map[string]Chip {
	t.Helper()
	m, err := NewMem(testGeo)
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(filepath.Join(t.TempDir(), "dev.flash"), testGeo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return map[string]Chip{"mem": m, "file": f}
}

func TestChipNORSemantics(t *testing.T) {
	for name, c := range chips(t) {
		t.Run(name, func(t *testing.T) {
			buf := make([]byte, 8)
			if _, err := c.ReadAt(buf, 100); err != nil {
				t.Fatal(err)
			}
			if !allFF(buf) {
				t.Fatalf("fresh chip read %x, want all ff", buf)
			}
			steps := []struct {
				name string
				do   func() error
				want error
			}{
				{"program erased", func() error { return c.Program(10, []byte{1, 2, 3}) }, nil},
				{"program again", func() error { return c.Program(10, []byte{1}) }, ErrNotErased},
				{"program across page", func() error { return c.Program(250, make([]byte, 10)) }, ErrPageBoundary},
				{"program past end", func() error { return c.Program(testGeo.Capacity()-1, []byte{1, 2}) }, ErrOutOfRange},
				{"erase out of range", func() error { return c.Erase(testGeo.Blocks) }, ErrOutOfRange},
				{"erase block 0", func() error { return c.Erase(0) }, nil},
				{"program after erase", func() error { return c.Program(10, []byte{7}) }, nil},
			}
			for _, s := range steps {
				if err := s.do(); !errors.Is(err, s.want) {
					t.Fatalf("%s: got %v, want %v", s.name, err, s.want)
				}
			}
			got := make([]byte, 4)
			if _, err := c.ReadAt(got, 9); err != nil {
				t.Fatal(err)
			}
			if want := []byte{0xFF, 7, 0xFF, 0xFF}; !bytes.Equal(got, want) {
				t.Fatalf("got %x, want %x", got, want)
			}
		})
	}
}

func TestGeometryValidate(t *testing.T) {
	tests := []struct {
		name string
		g    Geometry
		ok   bool
	}{
		{"default", GeometryFor(1 << 20), true},
		{"test", testGeo, true},
		{"page not pow2", Geometry{PageSize: 100, BlockSize: 4096, Blocks: 16}, false},
		{"block too small", Geometry{PageSize: 256, BlockSize: 512, Blocks: 16}, false},
		{"page over block", Geometry{PageSize: 8192, BlockSize: 4096, Blocks: 16}, false},
		{"too few blocks", Geometry{PageSize: 256, BlockSize: 4096, Blocks: 4}, false},
		{"too large", Geometry{PageSize: 256, BlockSize: 65536, Blocks: 65536}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.g.Validate(); (err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestFaultyTears(t *testing.T) {
	tests := []struct {
		name string
		tear Tear
		op   func(f *Faulty) error
		want []byte // bytes 0..8 of block 1 afterwards
	}{
		{"program none", TearNone, func(f *Faulty) error { return f.Program(1024, []byte{1, 2, 3, 4}) }, bytes.Repeat([]byte{0xFF}, 8)},
		{"program half", TearHalf, func(f *Faulty) error { return f.Program(1024, []byte{1, 2, 3, 4}) }, []byte{1, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := NewMem(testGeo)
			if err := m.Program(1024, []byte{0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
				t.Fatal(err)
			}
			if err := m.Erase(1); err != nil {
				t.Fatal(err)
			}
			f := NewFaulty(m)
			f.SetTear(tt.tear)
			f.FailAfter(0)
			if err := tt.op(f); !errors.Is(err, ErrPowerCut) {
				t.Fatalf("got %v, want ErrPowerCut", err)
			}
			if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrPowerCut) {
				t.Fatalf("read while off: got %v, want ErrPowerCut", err)
			}
			f.PowerOn()
			got := make([]byte, 8)
			if _, err := f.ReadAt(got, 1024); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, want %x", got, tt.want)
			}
		})
	}
	t.Run("erase half", func(t *testing.T) {
		m, _ := NewMem(testGeo)
		for o := int64(0); o < 1024; o += 256 {
			if err := m.Program(1024+o, bytes.Repeat([]byte{0x11}, 256)); err != nil {
				t.Fatal(err)
			}
		}
		f := NewFaulty(m)
		f.SetTear(TearHalf)
		f.OnWrite(func(op Op) bool { return op.Kind == OpErase })
		if err := f.Erase(1); !errors.Is(err, ErrPowerCut) {
			t.Fatalf("got %v, want ErrPowerCut", err)
		}
		f.PowerOn()
		got := make([]byte, 1024)
		if _, err := f.ReadAt(got, 1024); err != nil {
			t.Fatal(err)
		}
		if !allFF(got[:512]) || got[512] != 0x11 || got[1023] != 0x11 {
			t.Fatalf("got first %x last %x, want first half erased, second kept", got[:4], got[1020:])
		}
	})
}

// TestFileChipPowerCut runs the every-step power cut check on the
// file-backed chip, whose torn writes go through the file.
func TestFileChipPowerCut(t *testing.T) {
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.flash")
	base, err := OpenFile(basePath, testGeo)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Mount(base, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Repeat([]byte("old"), 500)
	if err := s.Put("k", old); err != nil {
		t.Fatal(err)
	}
	if err := base.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	neu := bytes.Repeat([]byte("new"), 700)
	for n := int64(0); ; n++ {
		path := filepath.Join(dir, "cut.flash")
		if err := os.WriteFile(path, img, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := OpenFile(path, testGeo)
		if err != nil {
			t.Fatal(err)
		}
		f := NewFaulty(c)
		f.SetTear(TearHalf)
		s, err := Mount(f, Options{})
		if err != nil {
			t.Fatal(err)
		}
		f.FailAfter(n)
		var b Batch
		b.Put("k", neu)
		b.Put("k2", []byte("x"))
		err = s.Commit(&b)
		cut := f.Off()
		f.PowerOn()
		after, merr := Mount(c, Options{})
		if merr != nil {
			t.Fatal(merr)
		}
		got, gerr := after.Get("k")
		_, has2 := after.Size("k2")
		switch {
		case gerr != nil:
			t.Fatalf("cut %d: %v", n, gerr)
		case bytes.Equal(got, old) && !has2, bytes.Equal(got, neu) && has2:
		default:
			t.Fatalf("cut %d: neither the old nor the new state", n)
		}
		_ = c.Close()
		if !cut {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}
