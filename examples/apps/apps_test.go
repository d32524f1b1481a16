package apps

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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

// TestReproducible rebuilds every app with hack/build-apps.sh and checks
// the checked-in modules are byte-identical to the rebuilt ones.
func TestReproducible(t *testing.T) {
	for _, tool := range []string{"clang", "wasm-ld", "wat2wasm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install clang lld wabt): cannot rebuild the sample apps", tool)
		}
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "bash", "../../hack/build-apps.sh", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-apps.sh: %v\n%s", err, b)
	}
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
			ver, _ := exec.CommandContext(t.Context(), "clang", "--version").Output()
			t.Errorf("%s.wasm: rebuilt module (%d bytes) differs from the checked-in one (%d bytes); "+
				"run hack/build-apps.sh and commit, or check the toolchain (built with clang/lld 14.0.6, wabt 1.0.32; have %s)",
				n, len(got), len(want), bytes.TrimSpace(ver))
		}
	}
}
