package cli

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/wasmbed/wasmbed/internal/modcheck"
)

// TestMain lets testscript scripts run the real command tree as `wasmbed`,
// and runs the controller's module checks when the test binary is started
// as their child (the in-process platform of the fleet tests).
func TestMain(m *testing.M) {
	if modcheck.IsChild() {
		os.Exit(modcheck.RunChild(context.Background()))
	}
	testscript.Main(m, map[string]func(){
		"wasmbed": func() { os.Exit(Main()) },
	})
}

// TestPKIScripts runs testdata/script/pki_*.txtar.
func TestPKIScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "pki_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no pki scripts found")
	}
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Cmds:                map[string]func(*testscript.TestScript, bool, []string){"perm": cmdPerm},
	})
}

// cmdPerm implements `perm FILE MODE`: FILE's permission bits are MODE (octal).
func cmdPerm(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: perm FILE MODE")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	if err != nil {
		ts.Fatalf("perm: mode %q: %v", args[1], err)
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := uint64(fi.Mode().Perm())
	if (got == want) == neg {
		ts.Fatalf("perm %s: got %o, want %s%o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}
