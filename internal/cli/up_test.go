package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/rogpeppe/go-internal/testscript"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
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
		Cmds:                map[string]func(*testscript.TestScript, bool, []string){"waitup": cmdWaitUp},
	})
}

// cmdWaitUp implements `waitup DATADIR`: waits until the control plane of
// DATADIR serves the Device API through the kubeconfig it wrote.
func cmdWaitUp(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitup DATADIR")
	}
	kubeconfig := filepath.Join(ts.MkAbs(args[0]), "kubeconfig")
	ctrllog.SetLogger(logr.Discard())
	scheme, err := controlplanetest.NewScheme()
	ts.Check(err)
	var lastErr error
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true,
		func(ctx context.Context) (bool, error) {
			if _, err := os.Stat(kubeconfig); err != nil {
				lastErr = err
				return false, nil
			}
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				lastErr = err
				return false, nil
			}
			c, err := client.New(cfg, client.Options{Scheme: scheme})
			if err != nil {
				lastErr = err
				return false, nil
			}
			lastErr = c.List(ctx, &wasmbedv1.DeviceList{})
			return lastErr == nil, nil
		})
	if err != nil {
		ts.Fatalf("waitup %s: %v (last error: %v)", args[0], err, lastErr)
	}
}
