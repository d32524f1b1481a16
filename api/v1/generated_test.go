package v1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedFilesUpToDate runs controller-gen, pinned in go.mod, into a
// temporary directory and fails when the checked-in deepcopy code, CRD
// manifests or the controller's RBAC differ from what it produces. Fix with
// `make generate`.
func TestGeneratedFilesUpToDate(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to run controller-gen: %v", err)
	}
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), goBin, "tool", "controller-gen",
		"object:headerFile=hack/boilerplate.go.txt", "paths=./api/...",
		"output:object:dir="+out,
		"crd", "output:crd:dir="+filepath.Join(out, "crd"))
	cmd.Dir = filepath.Join("..", "..")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, msg)
	}
	rbac := exec.CommandContext(t.Context(), goBin, "tool", "controller-gen",
		"rbac:roleName=wasmbed-controller", "paths=./internal/controller/...",
		"output:rbac:dir="+filepath.Join(out, "rbac"))
	rbac.Dir = cmd.Dir
	if msg, err := rbac.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen rbac: %v\n%s", err, msg)
	}
	files := map[string]string{
		"zz_generated.deepcopy.go":         "zz_generated.deepcopy.go",
		filepath.Join("rbac", "role.yaml"): filepath.Join("..", "..", "config", "rbac", "role.yaml"),
	}
	generated, err := filepath.Glob(filepath.Join(out, "crd", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) == 0 {
		t.Fatal("controller-gen produced no CRD manifests")
	}
	for _, g := range generated {
		files[filepath.Join("crd", filepath.Base(g))] = filepath.Join("..", "..", "config", "crd", filepath.Base(g))
	}
	for gen, checkedIn := range files {
		want, err := os.ReadFile(filepath.Join(out, gen))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(checkedIn)
		if err != nil {
			t.Errorf("%s: %v (run make generate)", checkedIn, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make generate and commit the result", checkedIn)
		}
	}
}
