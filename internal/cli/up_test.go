package cli

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/wasmbed/wasmbed/internal/platform"
)

// TestUpScripts runs testdata/script/up_*.txtar: `wasmbed up` as a user runs
// it, with the embedded kubectl against it.
func TestUpScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "up_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no up scripts found")
	}
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Cmds:                map[string]func(*testscript.TestScript, bool, []string){"waitup": cmdWaitUp, "busyport": cmdBusyPort},
	})
}

// cmdWaitUp implements `waitup DATADIR`: waits until `wasmbed up` on DATADIR
// is up, devices and sample application included: it writes endpoints.json
// last.
func cmdWaitUp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitup DATADIR")
	}
	path := filepath.Join(ts.MkAbs(args[0]), "endpoints.json")
	var lastErr error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 3*time.Minute, true,
		func(context.Context) (bool, error) {
			data, err := os.ReadFile(path)
			if err != nil {
				lastErr = err
				return false, nil
			}
			var e platform.Endpoints
			if err := json.Unmarshal(data, &e); err != nil {
				lastErr = err
				return false, nil
			}
			return len(e.Gateways) > 0, nil
		})
	if err != nil {
		ts.Fatalf("waitup %s: %v (last error: %v)", args[0], err, lastErr)
	}
}

// cmdBusyPort implements `busyport VAR`: listens on a free loopback port for
// the rest of the script and sets VAR to it.
func cmdBusyPort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: busyport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	ts.Defer(func() { _ = ln.Close() })
	ts.Setenv(args[0], strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}
