//go:build linux

// Command memfigures prints what a wasmbed binary costs a user: its size on
// disk and the resident and private memory (smaps Rss and Anonymous, see
// package procmem) of light subcommands once they are idle.
//
//	go run ./hack/memfigures [-runs 3] [-settle 3s] bin/wasmbed
//
// "wasmbed version" is measured after it has initialised every package and
// run its command: its standard output is a pipe filled beforehand, so it
// waits in its write until memfigures has read its memory and drains the
// pipe. "wasmbed device run" is measured after -settle while it retries a
// gateway that refuses connections (127.0.0.1:1), with a fresh state
// directory and a throwaway CA, then interrupted. Each figure is the median
// of -runs runs. `make figures` builds the binary and runs this.
//
// Before each run the binary's pages are dropped from the page cache
// (fsync, then posix_fadvise DONTNEED on that one file), so it is read
// from disk as after a reboot: a file just written — by the Go linker or
// by cp — can sit in the page cache in large folios that the kernel maps
// whole, which adds tens of MiB of shared, file-backed resident memory
// (smaps FilePmdMapped) and makes resident figures depend on the file's
// history. -warm keeps the page cache as it is. Private memory does not
// depend on it. Linux only.
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wasmbed/wasmbed/internal/procmem"
)

func main() {
	runs := flag.Int("runs", 3, "runs per subcommand; the median is printed")
	settle := flag.Duration("settle", 3*time.Second, "how long a long-running subcommand runs before it is measured")
	warm := flag.Bool("warm", false, "keep the binary's pages in the page cache between runs")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: memfigures [flags] WASMBED-BINARY")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *runs < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *runs, *settle, *warm); err != nil {
		fmt.Fprintln(os.Stderr, "memfigures:", err)
		os.Exit(1)
	}
}

func run(bin string, runs int, settle time.Duration, warm bool) error {
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	fmt.Printf("%-20s %7.1f MiB  %s\n", "binary size", float64(st.Size())/(1<<20), bin)
	dir, err := os.MkdirTemp("", "memfigures")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca := filepath.Join(dir, "ca.crt")
	if err := writeCA(ca); err != nil {
		return err
	}
	cases := []struct {
		name    string
		measure func(int) (procmem.Usage, error)
	}{
		{"wasmbed version", func(int) (procmem.Usage, error) { return measureBlocked(bin, "version") }},
		{"wasmbed device run", func(i int) (procmem.Usage, error) {
			state := filepath.Join(dir, fmt.Sprintf("state-%d", i))
			return measureRunning(bin, settle, "--log-level", "error", "device", "run", "--state-dir", state,
				"--gateway", "127.0.0.1:1", "--ca", ca)
		}},
	}
	for _, c := range cases {
		var us []procmem.Usage
		for i := range runs {
			if !warm {
				if err := dropCache(bin); err != nil {
					return err
				}
			}
			u, err := c.measure(i)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			us = append(us, u)
		}
		med := median(us)
		fmt.Printf("%-20s resident %6.1f MiB  private %5.1f MiB  (smaps Rss / Anonymous from %s, median of %d)\n",
			c.name, float64(med.Resident)/(1<<20), float64(med.Private)/(1<<20), med.Source, runs)
	}
	return nil
}

// median returns the median of each figure on its own.
func median(us []procmem.Usage) procmem.Usage {
	rs := make([]uint64, len(us))
	ps := make([]uint64, len(us))
	for i, u := range us {
		rs[i], ps[i] = u.Resident, u.Private
	}
	slices.Sort(rs)
	slices.Sort(ps)
	return procmem.Usage{Resident: rs[len(rs)/2], Private: ps[len(ps)/2], Source: us[0].Source}
}

// measureBlocked runs bin with args, its standard output a full pipe, and
// measures it once it has waited there for a second.
func measureBlocked(bin string, args ...string) (procmem.Usage, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return procmem.Usage{}, err
	}
	defer r.Close()
	filled, err := fill(w)
	if err != nil {
		w.Close()
		return procmem.Usage{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // the binary the operator named on the command line, with fixed arguments
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	err = cmd.Start()
	w.Close()
	if err != nil {
		return procmem.Usage{}, err
	}
	time.Sleep(time.Second)
	u, merr := procmem.Of(cmd.Process.Pid)
	out, _ := io.ReadAll(r)
	werr := cmd.Wait()
	if merr != nil {
		return procmem.Usage{}, merr
	}
	if werr != nil {
		return procmem.Usage{}, werr
	}
	if len(out) <= filled || !bytes.HasPrefix(out[filled:], []byte("wasmbed ")) {
		return procmem.Usage{}, fmt.Errorf("unexpected output %q", out[min(filled, len(out)):])
	}
	return u, nil
}

// fill writes to w until its pipe buffer is full and returns how many
// bytes it wrote; w is left blocking.
func fill(w *os.File) (int, error) {
	fd := int(w.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		return 0, err
	}
	buf := make([]byte, 4096)
	n := 0
	for {
		m, err := syscall.Write(fd, buf)
		if m > 0 {
			n += m
		}
		if errors.Is(err, syscall.EAGAIN) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, syscall.SetNonblock(fd, false)
}

// measureRunning runs bin with args for settle, measures it and
// interrupts it.
func measureRunning(bin string, settle time.Duration, args ...string) (procmem.Usage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), settle+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // the binary the operator named on the command line, with fixed arguments
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return procmem.Usage{}, err
	}
	time.Sleep(settle)
	u, merr := procmem.Of(cmd.Process.Pid)
	_ = cmd.Process.Signal(os.Interrupt)
	werr := cmd.Wait()
	if merr != nil {
		return procmem.Usage{}, fmt.Errorf("%w (stderr: %s)", merr, stderr.Bytes())
	}
	if werr != nil {
		return procmem.Usage{}, fmt.Errorf("%w (stderr: %s)", werr, stderr.Bytes())
	}
	return u, nil
}

// dropCache evicts path's pages from the page cache.
func dropCache(path string) error {
	f, err := os.Open(path) //nolint:gosec // the binary the operator named on the command line
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop %s from the page cache: %w", path, err)
	}
	return nil
}

// writeCA writes a throwaway self-signed Ed25519 CA certificate to path.
func writeCA(path string) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "memfigures root"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}
