package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// ChildEnv is the environment variable that tells a binary started by Start
// to run RunChild (its value is "1").
const ChildEnv = "WASMBED_LOADGEN_CHILD"

// IsChild reports whether this process was started by Start.
func IsChild() bool { return os.Getenv(ChildEnv) == "1" }

// maxCommandTime bounds one command in a child.
const maxCommandTime = 10 * time.Minute

// RunChild serves a Fleet over in and out until in ends: the first line is
// the Setup, every further line a Command, each answered with one Result
// line. It returns nil at the end of in. Each command runs under ctx and at
// most maxCommandTime.
func RunChild(ctx context.Context, in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	enc := json.NewEncoder(out)
	if !sc.Scan() {
		return errors.New("loadgen child: no setup")
	}
	var setup Setup
	if err := json.Unmarshal(sc.Bytes(), &setup); err != nil {
		return fmt.Errorf("loadgen child: setup: %w", err)
	}
	f, err := NewFleet(setup)
	if err != nil {
		_ = enc.Encode(Result{Err: err.Error()})
		return err
	}
	defer f.Close()
	if err := enc.Encode(Result{}); err != nil {
		return fmt.Errorf("loadgen child: %w", err)
	}
	for sc.Scan() {
		var cmd Command
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			r.Err = err.Error()
		} else {
			ctx, cancel := context.WithTimeout(ctx, maxCommandTime)
			r = f.Do(ctx, cmd)
			cancel()
		}
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("loadgen child: %w", err)
		}
	}
	return sc.Err()
}

// Process is a Fleet running in a child process.
type Process struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	mu  sync.Mutex
}

// Start runs exe (with args, typically the test binary and "-test.run=^$")
// as a child with ChildEnv set, and sets its Fleet up. The child's standard
// error goes to ours; it is killed when ctx ends.
func Start(ctx context.Context, exe string, args []string, setup Setup) (*Process, error) {
	cmd := exec.CommandContext(ctx, exe, args...) //nolint:gosec // the caller's own binary
	cmd.Env = append(os.Environ(), ChildEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: start child: %w", err)
	}
	p := &Process{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	p.out.Buffer(make([]byte, 64<<10), 1<<20)
	line, err := json.Marshal(setup)
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	r, err := p.exchange(line)
	if err == nil && r.Err != "" {
		err = errors.New(r.Err)
	}
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("loadgen: child setup: %w", err)
	}
	return p, nil
}

// Pid returns the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Do sends cmd to the child and waits for its Result.
func (p *Process) Do(cmd Command) (Result, error) {
	line, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, fmt.Errorf("loadgen: %w", err)
	}
	return p.exchange(line)
}

func (p *Process) exchange(line []byte) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.in.Write(append(line, '\n')); err != nil {
		return Result{}, fmt.Errorf("loadgen: to child: %w", err)
	}
	if !p.out.Scan() {
		return Result{}, fmt.Errorf("loadgen: child ended: %w", errors.Join(p.out.Err(), io.ErrUnexpectedEOF))
	}
	var r Result
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
		return Result{}, fmt.Errorf("loadgen: from child: %w", err)
	}
	return r, nil
}

// Close ends the child (closing its devices' connections) and waits for
// it.
func (p *Process) Close() {
	_ = p.in.Close()
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}
