package cli

import (
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestBenchScripts runs `wasmbed bench` on a small fleet: its gateways run as
// child processes of the same binary.
func TestBenchScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "bench_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no bench scripts found")
	}
	testscript.Run(t, testscript.Params{Files: files, RequireExplicitExec: true})
}
