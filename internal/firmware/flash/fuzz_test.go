package flash

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the checked-in fuzz seed corpora")

// fuzzGeo is small so that fuzzed images cover whole chips.
var fuzzGeo = Geometry{PageSize: 256, BlockSize: 1024, Blocks: 8}

// imageChip returns a chip whose contents are img (padded with erased
// bytes), written without NOR rules.
func imageChip(img []byte) *MemChip {
	m, _ := NewMem(fuzzGeo)
	bs := fuzzGeo.BlockSize
	for b := range fuzzGeo.Blocks {
		if b*bs >= len(img) {
			break
		}
		blk := bytes.Repeat([]byte{0xFF}, bs)
		copy(blk, img[b*bs:])
		m.blocks[int32(b)] = blk
	}
	return m
}

func chipImage(m *MemChip) []byte {
	img := make([]byte, m.geo.Capacity())
	_, _ = m.ReadAt(img, 0)
	for len(img) > 0 && img[len(img)-1] == 0xFF {
		img = img[:len(img)-1]
	}
	return img
}

// fuzzSeeds are chip images: empty, a store with values spanning blocks,
// the same after compaction, and torn in the middle of a commit.
func fuzzSeeds(t testing.TB) [][]byte {
	m, _ := NewMem(fuzzGeo)
	s := mustMount(t, m)
	seeds := [][]byte{nil}
	for i := range 4 {
		if err := s.Put(fmt.Sprint("k", i), pattern(i, 200*i)); err != nil {
			t.Fatal(err)
		}
	}
	seeds = append(seeds, chipImage(m))
	for i := range 12 {
		if err := s.Put(fmt.Sprint("k", i%3), pattern(i, 400)); err != nil {
			t.Fatal(err)
		}
	}
	seeds = append(seeds, chipImage(m))
	torn := m.Clone()
	f := NewFaulty(torn)
	f.SetTear(TearHalf)
	ts := mustMount(t, f)
	f.FailAfter(3)
	_ = ts.Put("torn", pattern(9, 900))
	return append(seeds, chipImage(torn))
}

func headerSeeds() [][]byte {
	var put, commit [recHdrSize]byte
	recHdr{kind: kindPut, keyLen: 3, dataLen: 10, a: 10, txn: 5, ver: 5}.encode(put[:])
	recHdr{kind: kindCommit, a: 2, b: 1, txn: 9}.encode(commit[:])
	return [][]byte{put[:], commit[:], bytes.Repeat([]byte{0xFF}, recHdrSize)}
}

var corruptSeeds = [][]byte{{0, 20, 1}, {0, 60, 0x80, 4, 0, 0xFF}, {1, 0, 0x10, 2, 10, 0x01, 3, 0xF0, 0x40}}

func TestFuzzSeedCorpus(t *testing.T) {
	for name, seeds := range map[string][][]byte{
		"FuzzMount": fuzzSeeds(t), "FuzzRecordHeader": headerSeeds(), "FuzzCorrupt": corruptSeeds,
	} {
		dir := filepath.Join("testdata", "fuzz", name)
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for i, s := range seeds {
				body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) < len(seeds) {
			t.Fatalf("seed corpus in %s has %d files, want %d (run with -update): %v", dir, len(entries), len(seeds), err)
		}
	}
}

// FuzzMount mounts arbitrary chip images. Mount must never fail or panic
// on a readable chip; every listed key must read back or report
// ErrCorrupt; and a commit that succeeds must be found by the next mount.
func FuzzMount(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, img []byte) {
		m := imageChip(img)
		s, err := Mount(m, Options{})
		if err != nil {
			t.Fatalf("mount: %v", err)
		}
		for _, k := range s.Keys("") {
			if _, err := s.Get(k); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("get %q: %v", k, err)
			}
		}
		want := pattern(7, 700)
		switch err := s.Put("fuzz", want); {
		case errors.Is(err, ErrNoSpace):
			return
		case err != nil:
			t.Fatalf("put on mounted image: %v", err)
		}
		again, err := Mount(m, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := again.Get("fuzz"); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("committed value after remount: %v", err)
		}
	})
}

// FuzzRecordHeader decodes arbitrary record headers; any header that
// decodes re-encodes to the same bytes.
func FuzzRecordHeader(f *testing.F) {
	for _, s := range headerSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, ok := decodeHdr(in)
		if !ok {
			return
		}
		var out [recHdrSize]byte
		h.encode(out[:])
		if !bytes.Equal(out[:], in[:recHdrSize]) {
			t.Fatalf("re-encoded %x, want %x", out, in[:recHdrSize])
		}
	})
}

// FuzzCorrupt flips bits of a valid store image (each 3 input bytes are a
// 16-bit offset and an XOR mask) and checks that mount survives, and that
// every value it returns without error is one that was committed.
func FuzzCorrupt(f *testing.F) {
	for _, s := range corruptSeeds {
		f.Add(s)
	}
	m, _ := NewMem(fuzzGeo)
	s := mustMount(f, m)
	committed := map[string][][]byte{}
	for i := range 14 {
		k := fmt.Sprint("k", i%3)
		v := pattern(i, 150+40*i)
		if err := s.Put(k, v); err != nil {
			f.Fatal(err)
		}
		committed[k] = append(committed[k], v)
	}
	f.Fuzz(func(t *testing.T, flips []byte) {
		c := m.Clone()
		for i := 0; i+2 < len(flips); i += 3 {
			off := int64(flips[i])<<8 | int64(flips[i+1])
			c.Corrupt(off%fuzzGeo.Capacity(), flips[i+2])
		}
		s, err := Mount(c, Options{})
		if err != nil {
			t.Fatalf("mount: %v", err)
		}
		for _, k := range s.Keys("") {
			v, err := s.Get(k)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("get %q: %v", k, err)
				}
				continue
			}
			found := false
			for _, w := range committed[k] {
				found = found || bytes.Equal(v, w)
			}
			if !found {
				t.Fatalf("key %q returned %d bytes that were never committed", k, len(v))
			}
		}
	})
}
