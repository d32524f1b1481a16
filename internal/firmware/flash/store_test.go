package flash

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

func mustMount(t testing.TB, c Chip) *Store {
	t.Helper()
	s, err := Mount(c, Options{})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	return s
}

// contents reads every key of s.
func contents(t testing.TB, s *Store) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, k := range s.Keys("") {
		v, err := s.Get(k)
		if err != nil {
			t.Fatalf("get %q: %v", k, err)
		}
		m[k] = v
	}
	return m
}

func equalContents(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, bytes.Equal)
}

func pattern(seed, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seed*31 + i*7 + i>>8)
	}
	return p
}

func TestStoreBasics(t *testing.T) {
	for name, c := range chips(t) {
		t.Run(name, func(t *testing.T) {
			s := mustMount(t, c)
			want := map[string][]byte{}
			steps := []struct {
				name string
				ops  func(b *Batch)
			}{
				{"small", func(b *Batch) { b.Put("a", []byte("alpha")) }},
				{"empty value", func(b *Batch) { b.Put("e", nil) }},
				{"spans blocks", func(b *Batch) { b.Put("big", pattern(1, 3000)) }},
				{"overwrite and delete", func(b *Batch) { b.Put("a", []byte("again")); b.Delete("e") }},
				{"last op wins", func(b *Batch) {
					b.Put("x", []byte("1"))
					b.Delete("x")
					b.Put("y", []byte("2"))
					b.Put("y", []byte("3"))
				}},
				{"delete missing", func(b *Batch) { b.Delete("nope") }},
			}
			for _, st := range steps {
				var b Batch
				st.ops(&b)
				if err := s.Commit(&b); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
			}
			want["a"] = []byte("again")
			want["big"] = pattern(1, 3000)
			want["y"] = []byte("3")
			if got := contents(t, s); !equalContents(got, want) {
				t.Fatalf("got keys %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			if _, err := s.Get("e"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get deleted: got %v, want ErrNotFound", err)
			}
			s2 := mustMount(t, c)
			if got := contents(t, s2); !equalContents(got, want) {
				t.Fatalf("after remount got keys %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			if st := s2.Stats(); st.CorruptRecords != 0 || st.DroppedTxns != 0 {
				t.Fatalf("clean remount stats %+v, want no corruption", st)
			}
		})
	}
}

func TestStoreLimits(t *testing.T) {
	m, _ := NewMem(testGeo)
	s, err := Mount(m, Options{MaxValue: 2000})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		key   string
		value []byte
		want  error
	}{
		{"empty key", "", []byte("x"), ErrTooLarge},
		{"long key", string(make([]byte, MaxKey+1)), []byte("x"), ErrTooLarge},
		{"value over max", "k", make([]byte, 2001), ErrTooLarge},
		{"fits", "k", make([]byte, 2000), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Put(tt.key, tt.value); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("full", func(t *testing.T) {
		var err error
		i := 0
		for ; i < 100 && err == nil; i++ {
			err = s.Put(fmt.Sprintf("fill%d", i), make([]byte, 1500))
		}
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("got %v after %d puts, want ErrNoSpace", err, i)
		}
		before := contents(t, s)
		// Overwriting an existing key still works once old data is reclaimed.
		if err := s.Delete("fill0"); err != nil {
			t.Fatal(err)
		}
		if err := s.Put("fill1", make([]byte, 1000)); err != nil {
			t.Fatalf("overwrite after delete: %v", err)
		}
		after := mustMount(t, m)
		delete(before, "fill0")
		before["fill1"] = make([]byte, 1000)
		if got := contents(t, after); !equalContents(got, before) {
			t.Fatal("remounted contents differ from committed state")
		}
	})
}

func TestStoreCompaction(t *testing.T) {
	m, _ := NewMem(testGeo)
	s := mustMount(t, m)
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string][]byte{}
	for i := range 2000 {
		k := fmt.Sprintf("k%d", rng.IntN(6))
		if rng.IntN(5) == 0 {
			delete(want, k)
			if err := s.Delete(k); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			continue
		}
		v := pattern(i, rng.IntN(900))
		want[k] = v
		if err := s.Put(k, v); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
	}
	if st := s.Stats(); st.Compactions == 0 {
		t.Fatalf("got 0 compactions after 2000 writes on %d blocks", st.Blocks)
	}
	if got := contents(t, s); !equalContents(got, want) {
		t.Fatal("contents differ from model")
	}
	if got := contents(t, mustMount(t, m)); !equalContents(got, want) {
		t.Fatal("remounted contents differ from model")
	}
}

// TestStorePowerCutEveryStep runs a workload with puts, deletes, multi-key
// batches, large values and compaction, and cuts power at every write step
// of every commit in turn, with both tear modes. After each cut it remounts
// and checks that the store holds exactly the state before the interrupted
// commit or exactly the state after it.
func TestStorePowerCutEveryStep(t *testing.T) {
	type step struct {
		batch Batch
		after map[string][]byte
	}
	rng := rand.New(rand.NewPCG(7, 9))
	model := map[string][]byte{}
	var steps []step
	for i := range 150 {
		var b Batch
		for range 1 + rng.IntN(3) {
			k := fmt.Sprintf("key-%d", rng.IntN(5))
			if rng.IntN(4) == 0 {
				b.Delete(k)
				delete(model, k)
			} else {
				v := pattern(i, rng.IntN(1500))
				b.Put(k, v)
				model[k] = v
			}
		}
		steps = append(steps, step{batch: b, after: maps.Clone(model)})
	}
	for _, tear := range []Tear{TearNone, TearHalf} {
		t.Run(fmt.Sprintf("tear%d", tear), func(t *testing.T) {
			base, _ := NewMem(testGeo)
			s := mustMount(t, base)
			before := map[string][]byte{}
			cuts := 0
			for i, st := range steps {
				for n := int64(0); ; n++ {
					img := base.Clone()
					f := NewFaulty(img)
					f.SetTear(tear)
					s := mustMount(t, f)
					f.FailAfter(n)
					err := s.Commit(&st.batch)
					f.PowerOn()
					if err == nil {
						break
					}
					cuts++
					if !errors.Is(err, ErrPowerCut) {
						t.Fatalf("step %d cut %d: got %v, want ErrPowerCut", i, n, err)
					}
					got := contents(t, mustMount(t, img))
					if !equalContents(got, before) && !equalContents(got, st.after) {
						t.Fatalf("step %d cut at write %d: state is neither before nor after the commit", i, n)
					}
					// The recovered store must accept the commit again.
					pre := dump(img)
					again := mustMount(t, img)
					if err := again.Commit(&st.batch); err != nil {
						t.Fatalf("step %d cut %d: recommit: %v", i, n, err)
					}
					if got := contents(t, mustMount(t, img)); !equalContents(got, st.after) {
						for k := range st.after {
							if !bytes.Equal(got[k], st.after[k]) {
								t.Logf("key %s: got %d bytes want %d", k, len(got[k]), len(st.after[k]))
							}
						}
						t.Logf("got keys %v want %v; stats %+v; again %+v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(st.after)), mustMount(t, img).Stats(), again.Stats())
						t.Logf("before recommit:\n%s\nafter:\n%s", pre, dump(img))
						t.Fatalf("step %d cut %d: recommit gave wrong state", i, n)
					}
				}
				if err := s.Commit(&st.batch); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				before = st.after
			}
			if s.Stats().Compactions == 0 {
				t.Fatal("workload never compacted; test does not cover compaction")
			}
			t.Logf("%d power cuts checked", cuts)
		})
	}
}

func TestStoreCorruptionDetected(t *testing.T) {
	m, _ := NewMem(testGeo)
	s := mustMount(t, m)
	want := map[string][]byte{"a": pattern(1, 100), "b": pattern(2, 1500), "c": pattern(3, 10)}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if err := s.Put(k, want[k]); err != nil {
			t.Fatal(err)
		}
	}
	used := int64(testGeo.BlockSize * 3)
	for off := int64(0); off < used; off += 7 {
		c := m.Clone()
		c.Corrupt(off, 0x5A)
		s, err := Mount(c, Options{})
		if err != nil {
			t.Fatalf("flip at %d: mount: %v", off, err)
		}
		st := s.Stats()
		for _, k := range s.Keys("") {
			v, err := s.Get(k)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("flip at %d: get %q: got %v, want ErrCorrupt", off, k, err)
				}
				continue
			}
			if !bytes.Equal(v, want[k]) {
				t.Fatalf("flip at %d: key %q returned wrong bytes without an error", off, k)
			}
		}
		if len(s.Keys("")) < len(want) && st.CorruptRecords+st.InvalidBlocks == 0 {
			t.Fatalf("flip at %d: lost keys without reporting corruption", off)
		}
	}
	t.Run("typed error", func(t *testing.T) {
		c := m.Clone()
		c.Corrupt(blockHdrSize+recHdrSize+2, 0xFF) // body of the first record
		s := mustMount(t, c)
		errs := s.Corruptions()
		if len(errs) == 0 || s.Stats().CorruptRecords == 0 {
			t.Fatalf("got %v, want a corruption reported", errs)
		}
		var err error = &errs[0]
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want errors.Is ErrCorrupt", err)
		}
		if s.Has("a") {
			t.Fatal("corrupt record applied")
		}
	})
	t.Run("after mount", func(t *testing.T) {
		c := m.Clone()
		s := mustMount(t, c)
		c.Corrupt(blockHdrSize+recHdrSize+2, 0xFF)
		if _, err := s.Get("a"); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
	})
}

func TestStoreFailedNeedsRemount(t *testing.T) {
	m, _ := NewMem(testGeo)
	f := NewFaulty(m)
	s := mustMount(t, f)
	f.FailAfter(1)
	if err := s.Put("a", []byte("x")); !errors.Is(err, ErrPowerCut) {
		t.Fatalf("got %v, want ErrPowerCut", err)
	}
	f.PowerOn()
	if err := s.Put("a", []byte("x")); !errors.Is(err, ErrFailed) {
		t.Fatalf("got %v, want ErrFailed", err)
	}
	if err := mustMount(t, f).Put("a", []byte("x")); err != nil {
		t.Fatalf("after remount: %v", err)
	}
}

func TestFileChipPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.flash")
	c, err := OpenFile(path, testGeo)
	if err != nil {
		t.Fatal(err)
	}
	if err := mustMount(t, c).Put("id", []byte("device-1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = OpenFile(path, testGeo)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := mustMount(t, c).Get("id")
	if err != nil || string(got) != "device-1" {
		t.Fatalf("got %q, %v, want device-1", got, err)
	}
	if _, err := OpenFile(path, GeometryFor(1<<20)); err == nil {
		t.Fatal("reopen with another geometry: got nil error")
	}
}
