// Package procmem reads how much memory a process uses as the operating
// system counts it, the figures a user sees in top, ps or
// /proc/PID/smaps_rollup:
//
//   - resident memory (smaps "Rss"): the process's pages in RAM, including
//     the shared file pages of its binary and libraries;
//   - private memory (smaps "Anonymous"): the anonymous pages in RAM — Go
//     heap, goroutine stacks, runtime structures, buffers — which is what
//     the process costs on top of a binary other processes may share.
//
// Go's own statistics (runtime.MemStats) count live objects and what the
// runtime has mapped, not what the kernel keeps resident: a heap that has
// just been collected still holds its pages until the scavenger returns
// them, and the binary's text is resident without being heap. Figures
// reported to users come from here, named by the metric they are.
//
// Usage:
//
//	u, err := procmem.Self()
//	if err != nil { ... }
//	fmt.Printf("resident %d B, private %d B (%s)\n", u.Resident, u.Private, u.Source)
//
// On Linux, [Self] and [Of] read /proc/PID/smaps_rollup (Linux 4.14 and
// later) and fall back to summing /proc/PID/smaps. Elsewhere, [Self] falls
// back to the Go runtime's own count of the memory it holds from the
// operating system (runtime/metrics), reported as both figures with
// [SourceGoRuntime], which undercounts (no binary text, no memory of C
// code); [Of] returns [ErrUnsupported].
package procmem
