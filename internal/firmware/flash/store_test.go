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

// TestStorePowerCutEveryStep runs workloads with puts, deletes, multi-key
// batches, large values and compaction — one roomy, one so full that
// commits compact constantly and some fail for lack of space — and cuts
// power at every write step of every commit in turn, with both tear modes.
// After each cut it remounts and checks that the store holds exactly the
// state before the interrupted commit or exactly the state after it, and
// that the recovered store accepts the commit again.
func TestStorePowerCutEveryStep(t *testing.T) {
	workloads := []struct {
		name   string
		geo    Geometry
		keys   int
		maxVal int
		steps  int
	}{
		{"roomy", testGeo, 5, 1500, 150},
		{"full", Geometry{PageSize: 256, BlockSize: 1024, Blocks: 10}, 4, 1100, 120},
	}
	apply := func(before map[string][]byte, b *Batch) map[string][]byte {
		after := maps.Clone(before)
		for _, op := range b.ops {
			if op.del {
				delete(after, op.key)
			} else {
				after[op.key] = op.value
			}
		}
		return after
	}
	for _, w := range workloads {
		rng := rand.New(rand.NewPCG(7, 9))
		batches := make([]Batch, w.steps)
		for i := range batches {
			for range 1 + rng.IntN(3) {
				k := fmt.Sprintf("key-%d", rng.IntN(w.keys))
				if rng.IntN(4) == 0 {
					batches[i].Delete(k)
				} else {
					batches[i].Put(k, pattern(i, rng.IntN(w.maxVal)))
				}
			}
		}
		for _, tear := range []Tear{TearNone, TearHalf} {
			t.Run(fmt.Sprintf("%s/tear%d", w.name, tear), func(t *testing.T) {
				base, _ := NewMem(w.geo)
				s := mustMount(t, base)
				before := map[string][]byte{}
				cuts, full := 0, 0
				for i := range batches {
					b := &batches[i]
					after := apply(before, b)
					for n := int64(0); ; n++ {
						img := base.Clone()
						f := NewFaulty(img)
						f.SetTear(tear)
						s := mustMount(t, f)
						f.FailAfter(n)
						err := s.Commit(b)
						cut := f.Off()
						f.PowerOn()
						if !cut {
							break
						}
						cuts++
						if !errors.Is(err, ErrPowerCut) {
							t.Fatalf("step %d cut %d: got %v, want ErrPowerCut", i, n, err)
						}
						remounted := mustMount(t, img)
						if st := remounted.Stats(); st.CorruptRecords != 0 || st.TornRecords > 1 {
							t.Fatalf("step %d cut %d: stats %+v, want only a torn last write", i, n, st)
						}
						got := contents(t, remounted)
						if !equalContents(got, before) && !equalContents(got, after) {
							t.Fatalf("step %d cut at write %d: state is neither before nor after the commit", i, n)
						}
						again := mustMount(t, img)
						err = again.Commit(b)
						want := after
						if errors.Is(err, ErrNoSpace) {
							want = before
						} else if err != nil {
							t.Fatalf("step %d cut %d: recommit: %v", i, n, err)
						}
						if !equalContents(got, before) {
							want = after // the cut commit had landed
						}
						if got := contents(t, mustMount(t, img)); !equalContents(got, want) {
							t.Logf("log:\n%s", dump(img))
							t.Fatalf("step %d cut %d: recommit gave wrong state", i, n)
						}
					}
					switch err := s.Commit(b); {
					case errors.Is(err, ErrNoSpace):
						full++
						if got := contents(t, mustMount(t, base)); !equalContents(got, before) {
							t.Fatalf("step %d: failed commit changed the store", i)
						}
					case err != nil:
						t.Fatalf("step %d: %v", i, err)
					default:
						before = after
					}
				}
				if s.Stats().Compactions == 0 {
					t.Fatal("workload never compacted; test does not cover compaction")
				}
				t.Logf("%d power cuts checked, %d commits refused for space, %d compactions", cuts, full, s.Stats().Compactions)
			})
		}
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
		// Damage to the last record of the log cannot be told from a torn
		// write; either way it must be reported.
		if len(s.Keys("")) < len(want) && st.CorruptRecords+st.TornRecords+st.InvalidBlocks == 0 {
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

func TestMountSurvivesTailBeyondBlocks(t *testing.T) {
	m, _ := NewMem(testGeo)
	s := mustMount(t, m)
	if err := s.Put("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	// Forge a commit naming a tail far above every block.
	s.tail = 1000
	if err := s.Put("b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	s2 := mustMount(t, m)
	if err := s2.Put("c", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if got := mustMount(t, m).Keys(""); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("got keys %v, want [c]: writes after the bad tail must survive", got)
	}
}
