package flash

import (
	"fmt"
	"path/filepath"
	"testing"
)

// benchGeo is a 1 MiB data partition with the default 4 KiB sectors.
var benchGeo = GeometryFor(1 << 20)

func BenchmarkCommit(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 32 << 10} {
		for _, backend := range []string{"mem", "file"} {
			b.Run(fmt.Sprintf("%s/%dB", backend, size), func(b *testing.B) {
				var chip Chip
				if backend == "mem" {
					chip, _ = NewMem(benchGeo)
				} else {
					fc, err := OpenFile(filepath.Join(b.TempDir(), "bench.flash"), benchGeo)
					if err != nil {
						b.Fatal(err)
					}
					defer fc.Close()
					chip = fc
				}
				s := mustMount(b, chip)
				v := pattern(1, size)
				keys := [8]string{}
				for i := range keys {
					keys[i] = fmt.Sprint("app/", i)
				}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := s.Put(keys[i%len(keys)], v); err != nil {
						b.Fatal(err)
					}
					i++
				}
				st := s.Stats()
				b.ReportMetric(float64(st.Compactions)/float64(i), "compactions/op")
			})
		}
	}
}

func BenchmarkGet(b *testing.B) {
	m, _ := NewMem(benchGeo)
	s := mustMount(b, m)
	v := pattern(1, 16<<10)
	if err := s.Put("module", v); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Get("module"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMount measures recovery: mounting a partition holding n values
// of 8 KiB (two slots' worth of modules for n/2 applications) after churn.
func BenchmarkMount(b *testing.B) {
	for _, n := range []int{0, 10, 50} {
		b.Run(fmt.Sprintf("values=%d", n), func(b *testing.B) {
			m, _ := NewMem(benchGeo)
			s := mustMount(b, m)
			for round := range 3 {
				for i := range n {
					if err := s.Put(fmt.Sprint("k", i), pattern(round+i, 8<<10)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Mount(m, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(m.Footprint()), "flash-bytes-used")
		})
	}
}
