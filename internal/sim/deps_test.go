package sim_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoKubernetesDependencies keeps the firmware and simulator free of
// Kubernetes and controller-runtime: they must build fast and run on
// devices.
func TestNoKubernetesDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	pkgs := []string{
		"github.com/wasmbed/wasmbed/internal/sim",
		"github.com/wasmbed/wasmbed/internal/firmware/device",
		"github.com/wasmbed/wasmbed/internal/firmware/client",
		"github.com/wasmbed/wasmbed/internal/firmware/link",
	}
	out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") || strings.HasPrefix(dep, "sigs.k8s.io/") {
			t.Errorf("forbidden dependency %s", dep)
		}
	}
}
