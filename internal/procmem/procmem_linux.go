package procmem

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// Self returns the calling process's memory.
func Self() (Usage, error) { return read("self") }

// Of returns the memory of process pid.
func Of(pid int) (Usage, error) {
	if pid <= 0 {
		return Usage{}, fmt.Errorf("procmem: invalid pid %d", pid)
	}
	return read(strconv.Itoa(pid))
}

func read(pid string) (Usage, error) {
	u, err := readFile("/proc/"+pid+"/smaps_rollup", SourceSmapsRollup)
	if errors.Is(err, fs.ErrNotExist) {
		// Kernels before 4.14 have no rollup: sum the mappings.
		u, err = readFile("/proc/"+pid+"/smaps", SourceSmaps)
	}
	return u, err
}

func readFile(path string, src Source) (Usage, error) {
	f, err := os.Open(path) //nolint:gosec // a /proc path built from a numeric pid
	if err != nil {
		return Usage{}, fmt.Errorf("procmem: %w", err)
	}
	defer f.Close()
	u, err := Parse(f, src)
	if err != nil {
		return Usage{}, fmt.Errorf("%s: %w", path, err)
	}
	return u, nil
}
