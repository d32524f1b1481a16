//go:build unix

package sim

import (
	"fmt"
	"syscall"
)

// checkFileLimit refuses a fleet whose flash files and sockets would not
// fit the process's file descriptor limit: each device with a data
// directory keeps its flash file open and, when connected, one socket.
func checkFileLimit(devices int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil //nolint:nilerr // best effort: no limit known
	}
	need := uint64(2*devices + 64) //nolint:gosec // a device count, positive
	if need > lim.Cur {
		return fmt.Errorf("sim: %d devices with a data directory need about %d file descriptors, the limit is %d: raise it (ulimit -n) or run with in-memory flash", devices, need, lim.Cur)
	}
	return nil
}
