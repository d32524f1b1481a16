//go:build !linux

package procmem

import (
	"fmt"
	"runtime/metrics"
)

// Self returns the calling process's memory. Without /proc, both figures
// are the Go runtime's count of the memory it holds from the operating
// system ([SourceGoRuntime]).
func Self() (Usage, error) {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	for _, m := range s {
		if m.Value.Kind() != metrics.KindUint64 {
			return Usage{}, fmt.Errorf("%w: runtime metric %s unavailable", ErrUnsupported, m.Name)
		}
	}
	held := s[0].Value.Uint64() - s[1].Value.Uint64()
	return Usage{Resident: held, Private: held, Source: SourceGoRuntime}, nil
}

// Of returns ErrUnsupported: another process's memory is read from /proc,
// which only Linux has.
func Of(pid int) (Usage, error) {
	return Usage{}, fmt.Errorf("%w: memory of process %d", ErrUnsupported, pid)
}
