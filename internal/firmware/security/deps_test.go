package security

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the device-side managers on the standard library,
// the CBOR library and the project's own device-safe packages: nothing from
// Kubernetes, controller-runtime or the control plane may creep in.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	pkgs := []string{"../flash", "../appmgr", "../security", "../monitor"}
	out, err := exec.CommandContext(t.Context(), goBin, append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{
		"github.com/wasmbed/wasmbed/internal/firmware/",
		"github.com/wasmbed/wasmbed/internal/protocol",
		"github.com/wasmbed/wasmbed/internal/artifact",
		"github.com/wasmbed/wasmbed/internal/seal",
		"github.com/wasmbed/wasmbed/internal/pki",
		"github.com/fxamacker/cbor/",
		"github.com/x448/float16",
	}
	for _, dep := range strings.Fields(string(out)) {
		ok := false
		for _, a := range allowed {
			ok = ok || strings.HasPrefix(dep, a)
		}
		if !ok {
			t.Errorf("firmware managers depend on %s", dep)
		}
	}
}
