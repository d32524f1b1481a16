package apps

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	names := Names()
	want := []string{BadPtr, BigMem, Blinky, Compute, DivZero, Forbidden, Loop, MemHog, Recursion, Sensor}
	if len(names) != len(want) {
		t.Fatalf("got %d apps %v, want %d %v", len(names), names, len(want), want)
	}
	for i, n := range want {
		if names[i] != n {
			t.Errorf("app %d: got %q, want %q", i, names[i], n)
		}
		b, err := Load(n)
		if err != nil {
			t.Fatalf("Load(%q): %v", n, err)
		}
		if !bytes.HasPrefix(b, []byte("\x00asm")) {
			t.Errorf("Load(%q): not a wasm module", n)
		}
	}
	if _, err := Load("nope"); err == nil {
		t.Errorf("Load(nope): got nil error, want one")
	}
}

// toolchain is what hack/build-apps.sh --tools reports: the tools it would
// use, their versions, and the versions the checked-in modules come from.
type toolchain map[string]string

// findToolchain asks hack/build-apps.sh which tools it would use; it skips
// the test, naming what to install, when some are missing.
func findToolchain(t *testing.T) toolchain {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", "../../hack/build-apps.sh", "--tools")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		t.Skipf("cannot rebuild the sample apps: %s (hack/ensure-tools.sh installs them, see README)",
			strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		t.Fatalf("build-apps.sh --tools: %v\n%s", err, stderr.Bytes())
	}
	tc := toolchain{}
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			tc[k] = v
		}
	}
	return tc
}

// TestReproducible rebuilds every app with hack/build-apps.sh and checks
// the checked-in modules are byte-identical to the rebuilt ones. With a
// toolchain of other versions than the modules were built with, different
// bytes are expected and the test skips, naming the versions.
func TestReproducible(t *testing.T) {
	tc := findToolchain(t)
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "bash", "../../hack/build-apps.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-apps.sh: %v\n%s", err, b)
	}
	sameVersions := tc["clang_version"] == tc["repro_clang"] && tc["wabt_version"] == tc["repro_wabt"]
	var differ []string
	for _, n := range Names() {
		want, err := Load(n)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, n+".wasm"))
		if err != nil {
			t.Fatalf("rebuilt %s: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			differ = append(differ, fmt.Sprintf("%s.wasm (%d bytes rebuilt, %d checked in)", n, len(got), len(want)))
		}
	}
	switch {
	case len(differ) == 0:
	case !sameVersions:
		t.Skipf("rebuilt with clang %s and wabt %s, the checked-in modules come from clang/lld %s and wabt %s: "+
			"%s differ, as other compiler versions may make them", tc["clang_version"], tc["wabt_version"],
			tc["repro_clang"], tc["repro_wabt"], strings.Join(differ, ", "))
	default:
		t.Errorf("rebuilt with clang %s (%s), wasm-ld %s, wabt %s, the versions of the checked-in modules: %s differ; "+
			"run hack/build-apps.sh and commit", tc["clang_version"], tc["clang"], tc["wasm_ld"], tc["wabt_version"],
			strings.Join(differ, ", "))
	}
}
