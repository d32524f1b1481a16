package flash

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFormatGolden pins the on-flash format: the bytes of the first block
// after a fixed sequence of commits. A change here breaks every device's
// stored state and needs a format version bump.
func TestFormatGolden(t *testing.T) {
	m, _ := NewMem(testGeo)
	s := mustMount(t, m)
	var b Batch
	b.Put("id", []byte("dev-1"))
	b.Put("seq", []byte{0, 0, 0, 7})
	if err := s.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("seq"); err != nil {
		t.Fatal(err)
	}
	blk := make([]byte, testGeo.BlockSize)
	if _, err := m.ReadAt(blk, 0); err != nil {
		t.Fatal(err)
	}
	end := len(blk)
	for end > 0 && blk[end-1] == 0xFF {
		end--
	}
	got := hex.Dump(blk[:end]) + "\n" + dump(m)
	path := filepath.Join("testdata", "format.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Fatalf("on-flash format changed:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(got, "WBF1") {
		t.Fatal("block magic missing")
	}
}
