//go:build unix

package modcheck

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// limitCPU caps the child's CPU time, a backstop for the parent's timeout.
func limitCPU(seconds uint64) {
	_ = syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: seconds, Max: seconds})
}

// limitAddressSpace caps the child's address space at what it has mapped now
// plus a multiple of the memory budget: a backstop for the watchdog, which
// samples, against an allocation burst between two samples. The Go runtime
// reserves address space in large arenas, hence the headroom.
func limitAddressSpace(budget uint64) {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return
	}
	fields := strings.Fields(string(raw))
	if len(fields) == 0 {
		return
	}
	pages, err := strconv.ParseUint(fields[0], 10, 64)
	if err != nil {
		return
	}
	limit := pages*uint64(os.Getpagesize()) + 4*budget + 1<<30 //nolint:gosec // the page size is positive
	_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: limit, Max: limit})
}
