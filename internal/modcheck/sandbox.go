package modcheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Environment of the child process.
const (
	childEnv  = "WASMBED_MODCHECK_CHILD"
	memoryEnv = "WASMBED_MODCHECK_MEMORY"
	cpuEnv    = "WASMBED_MODCHECK_CPU_SECONDS"
)

// Exit codes of the child process.
const (
	exitOK        = 0
	exitBadInput  = 2
	exitMemory    = 3
	maxStdin      = 4 << 20
	maxStdout     = 1 << 20
	maxStderr     = 4 << 10
	watchInterval = 2 * time.Millisecond
)

// Sandbox defaults.
const (
	// DefaultTimeout is the time budget of one check.
	DefaultTimeout = 10 * time.Second
	// DefaultMemoryBytes is the memory budget of one check, above the child
	// process's footprint when it starts.
	DefaultMemoryBytes = 256 << 20
	// DefaultMaxConcurrent is how many checks run at once.
	DefaultMaxConcurrent = 2
	// DefaultCacheSize is how many verdicts are remembered.
	DefaultCacheSize = 256
)

// SandboxOptions configure a Sandbox. Zero values give the defaults.
type SandboxOptions struct {
	// Executable is the program run as the child; it must call RunChild
	// when IsChild reports true. Empty means this process's executable.
	Executable string
	// Timeout is the time budget of one check: the child is killed when it
	// runs out.
	Timeout time.Duration
	// MemoryBytes is the memory budget of one check, counted from the
	// child's footprint when it starts.
	MemoryBytes uint64
	// MaxConcurrent bounds the checks running at once; callers beyond it
	// wait (or give up with their context).
	MaxConcurrent int
	// CacheSize bounds the verdicts remembered by module hash, limits and
	// profiles.
	CacheSize int
}

// Sandbox runs admission checks in child processes under a time and memory
// budget, and remembers their verdicts. It is safe for concurrent use.
type Sandbox struct {
	opts SandboxOptions
	sem  chan struct{}

	mu    sync.Mutex
	cache map[string]Verdict
	order []string
	runs  int
}

// NewSandbox returns a Sandbox.
func NewSandbox(opts SandboxOptions) *Sandbox {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MemoryBytes == 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = DefaultMaxConcurrent
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	return &Sandbox{opts: opts, sem: make(chan struct{}, opts.MaxConcurrent), cache: map[string]Verdict{}}
}

// Runs returns how many child processes the Sandbox has started.
func (s *Sandbox) Runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs
}

func cacheKey(req Request) string {
	sum := sha256.Sum256(req.Module)
	return fmt.Sprintf("%x/%s/%d/%d/%d/%s", sum, req.App, req.Limits.MemoryLimit, req.Limits.ExecutionTimeout, req.Limits.MaxStackSize, strings.Join(req.Profiles, ","))
}

// Check returns the verdict on req, from the cache or from a child process.
// A module that exhausts a budget is refused (ReasonTimeBudget,
// ReasonMemoryBudget) like an invalid one. The error reports what is not the
// module's doing: the child could not start, or ctx ended.
func (s *Sandbox) Check(ctx context.Context, req Request) (Verdict, error) {
	key := cacheKey(req)
	s.mu.Lock()
	v, ok := s.cache[key]
	s.mu.Unlock()
	if ok {
		return v, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return Verdict{}, fmt.Errorf("modcheck: wait for a check slot: %w", ctx.Err())
	}
	defer func() { <-s.sem }()
	v, err := s.run(ctx, req)
	if err != nil {
		return Verdict{}, err
	}
	s.mu.Lock()
	if _, ok := s.cache[key]; !ok {
		if len(s.order) >= s.opts.CacheSize {
			delete(s.cache, s.order[0])
			s.order = s.order[1:]
		}
		s.cache[key] = v
		s.order = append(s.order, key)
	}
	s.mu.Unlock()
	return v, nil
}

func (s *Sandbox) run(ctx context.Context, req Request) (Verdict, error) {
	in, err := json.Marshal(req)
	if err != nil {
		return Verdict{}, fmt.Errorf("modcheck: encode request: %w", err)
	}
	if len(in) > maxStdin {
		return Verdict{Invalid: &Refusal{Reason: ReasonInvalidModule, Message: fmt.Sprintf("module of %d bytes is too large to check", len(req.Module))}}, nil
	}
	exe := s.opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return Verdict{}, fmt.Errorf("modcheck: find own executable: %w", err)
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, exe) //nolint:gosec // the controller's own executable (SandboxOptions.Executable)
	cmd.Env = append(os.Environ(),
		childEnv+"=1",
		memoryEnv+"="+strconv.FormatUint(s.opts.MemoryBytes, 10),
		cpuEnv+"="+strconv.FormatInt(int64(s.opts.Timeout/time.Second)+1, 10),
	)
	cmd.Stdin = bytes.NewReader(in)
	stdout := &capped{limit: maxStdout}
	stderr := &capped{limit: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return Verdict{}, fmt.Errorf("modcheck: start check process %s: %w", exe, err)
	}
	s.mu.Lock()
	s.runs++
	s.mu.Unlock()
	err = cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return Verdict{}, fmt.Errorf("modcheck: check interrupted: %w", ctx.Err())
	case runCtx.Err() != nil:
		return Verdict{Invalid: &Refusal{Reason: ReasonTimeBudget, Message: fmt.Sprintf("checking the module took more than %s", s.opts.Timeout)}}, nil
	case err == nil:
		var v Verdict
		if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
			return Verdict{Invalid: &Refusal{Reason: ReasonCheckFailed, Message: "unreadable verdict: " + err.Error()}}, nil
		}
		return v, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == exitMemory || strings.Contains(stderr.String(), "out of memory") {
		return Verdict{Invalid: &Refusal{Reason: ReasonMemoryBudget, Message: fmt.Sprintf("checking the module needed more than %d MiB", s.opts.MemoryBytes>>20)}}, nil
	}
	return Verdict{Invalid: &Refusal{Reason: ReasonCheckFailed, Message: fmt.Sprintf("check process: %v: %s", err, lastLine(stderr.String()))}}, nil
}

// capped is a buffer that keeps the first limit bytes written to it.
type capped struct {
	bytes.Buffer
	limit int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.limit - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// IsChild reports whether this process was started by a Sandbox to run a
// check; main (and TestMain of packages that use a Sandbox) must then call
// RunChild and exit with its result before doing anything else.
func IsChild() bool { return os.Getenv(childEnv) == "1" }

// RunChild runs one check in a child process: it reads the Request on
// standard input, enforces the memory budget, runs FirmwareChecker and writes
// the Verdict on standard output. It returns the process exit code. The
// check runs under ctx; the parent bounds it in any case by killing the
// child when the time budget runs out.
func RunChild(ctx context.Context) int {
	return runChild(ctx, os.Stdin, os.Stdout, os.Stderr, FirmwareChecker{})
}

func runChild(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, checker Checker) int {
	budget, err := strconv.ParseUint(os.Getenv(memoryEnv), 10, 64)
	if err != nil || budget == 0 {
		fmt.Fprintf(stderr, "module check child: bad %s\n", memoryEnv)
		return exitBadInput
	}
	if cpu, err := strconv.ParseUint(os.Getenv(cpuEnv), 10, 64); err == nil && cpu > 0 {
		limitCPU(cpu)
	}
	limit := residentBytes() + budget
	limitAddressSpace(budget)
	debug.SetMemoryLimit(int64(min(limit, 1<<62))) //nolint:gosec // bounded
	go watchMemory(limit, stderr)

	in, err := io.ReadAll(io.LimitReader(stdin, maxStdin+1))
	if err != nil || len(in) > maxStdin {
		fmt.Fprintf(stderr, "module check child: read request: %v (%d bytes)\n", err, len(in))
		return exitBadInput
	}
	var req Request
	if err := json.Unmarshal(in, &req); err != nil {
		fmt.Fprintf(stderr, "module check child: decode request: %v\n", err)
		return exitBadInput
	}
	v := checker.Check(ctx, req)
	if err := json.NewEncoder(stdout).Encode(v); err != nil {
		fmt.Fprintf(stderr, "module check child: write verdict: %v\n", err)
		return exitBadInput
	}
	return exitOK
}

// residentBytes is the memory the Go runtime holds from the OS: everything
// it mapped read-write, minus the heap it released.
func residentBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	total, released := s[0].Value.Uint64(), s[1].Value.Uint64()
	if released > total {
		return 0
	}
	return total - released
}

// watchMemory ends the process with exitMemory once it holds more than limit
// bytes.
func watchMemory(limit uint64, stderr io.Writer) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for range t.C {
		if used := residentBytes(); used > limit {
			fmt.Fprintf(stderr, "module check child: memory budget exceeded: %d bytes held, limit %d\n", used, limit)
			os.Exit(exitMemory) //nolint:revive // the child's watchdog: ending the process at once is its job
		}
	}
}
