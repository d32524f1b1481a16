//go:build !linux

package loadgen

import (
	"syscall"
	"time"
)

func setBindNoPort(syscall.RawConn) error { return nil }

// ProcessCPU returns the process's CPU time where it can be read; zero
// elsewhere.
func ProcessCPU() time.Duration { return 0 }
