package procmem

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Source names where a [Usage] was read from.
type Source string

// Sources of a [Usage].
const (
	// SourceSmapsRollup is /proc/PID/smaps_rollup.
	SourceSmapsRollup Source = "smaps_rollup"
	// SourceSmaps is the sum over the mappings of /proc/PID/smaps.
	SourceSmaps Source = "smaps"
	// SourceGoRuntime is the Go runtime's count of the memory it holds
	// (runtime/metrics /memory/classes/total:bytes less released heap),
	// used where the operating system's figures cannot be read.
	SourceGoRuntime Source = "go-runtime"
)

// Usage is a process's memory at one moment, in bytes.
type Usage struct {
	// Resident is the resident set size (smaps Rss).
	Resident uint64
	// Private is the resident anonymous memory (smaps Anonymous).
	Private uint64
	// Source says where the figures come from.
	Source Source
}

// Sub returns u - v field by field, as signed differences.
func (u Usage) Sub(v Usage) Delta {
	return Delta{Resident: int64(u.Resident) - int64(v.Resident), Private: int64(u.Private) - int64(v.Private)} //nolint:gosec // memory sizes of a process, far below 2^63
}

// String renders the usage in MiB with its source.
func (u Usage) String() string {
	return fmt.Sprintf("resident=%.1fMiB private=%.1fMiB (%s)", mib(u.Resident), mib(u.Private), u.Source)
}

// Delta is the difference between two usages, in bytes.
type Delta struct {
	Resident, Private int64
}

// Per divides the delta by n (devices, sessions, ...), in bytes each.
func (d Delta) Per(n int) (resident, private float64) {
	if n <= 0 {
		return 0, 0
	}
	return float64(d.Resident) / float64(n), float64(d.Private) / float64(n)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// ErrUnsupported is returned where the figures of a process cannot be read
// on this platform.
var ErrUnsupported = errors.New("procmem: not supported on this platform")

// ErrFormat is wrapped by the errors of [Parse] for input that is not in
// the smaps format.
var ErrFormat = errors.New("procmem: malformed smaps")

// maxLine bounds one line of smaps input; the kernel's longest lines (a
// mapping header with a long path) stay far below it.
const maxLine = 8 << 10

// Parse reads text in the format of /proc/PID/smaps or
// /proc/PID/smaps_rollup and returns the sums of its Rss and Anonymous
// fields. Mapping header lines and other fields are skipped; a field of
// interest whose value is not "N kB" is an error wrapping [ErrFormat], as
// is input without any Rss field.
func Parse(r io.Reader, src Source) (Usage, error) {
	u := Usage{Source: src}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLine)
	seen := false
	for line := 1; sc.Scan(); line++ {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.ContainsAny(key, " \t") {
			continue // mapping header ("addr-addr perms offset dev inode path") or blank
		}
		var dst *uint64
		switch key {
		case "Rss":
			dst, seen = &u.Resident, true
		case "Anonymous":
			dst = &u.Private
		default:
			continue
		}
		n, err := parseKB(val)
		if err != nil {
			return Usage{}, fmt.Errorf("%w: line %d: %s: %w", ErrFormat, line, key, err)
		}
		if *dst > math.MaxUint64-n {
			return Usage{}, fmt.Errorf("%w: line %d: %s: sum overflows", ErrFormat, line, key)
		}
		*dst += n
	}
	if err := sc.Err(); err != nil {
		return Usage{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if !seen {
		return Usage{}, fmt.Errorf("%w: no Rss field", ErrFormat)
	}
	return u, nil
}

// parseKB parses "   1234 kB" into bytes.
func parseKB(s string) (uint64, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || strings.TrimSpace(unit) != "kB" {
		return 0, fmt.Errorf("value %q: want \"N kB\"", strings.TrimSpace(s))
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("value %q: %w", num, err)
	}
	if n > math.MaxUint64/1024 {
		return 0, fmt.Errorf("value %d kB overflows", n)
	}
	return n * 1024, nil
}
