package artifact

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestDependencies keeps the package (it runs on devices) on the standard
// library and the CBOR library only.
func TestDependencies(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.CommandContext(t.Context(), gobin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	allowed := map[string]bool{
		"github.com/wasmbed/wasmbed/internal/artifact": true,
		"github.com/wasmbed/wasmbed/internal/seal":     true,
		"github.com/fxamacker/cbor/v2":                 true,
		"github.com/x448/float16":                      true, // required by fxamacker/cbor
	}
	for _, dep := range strings.Fields(string(out)) {
		if !allowed[dep] {
			t.Errorf("got dependency %s, want only the standard library and fxamacker/cbor", dep)
		}
	}
}
