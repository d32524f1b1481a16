package cli

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/rogpeppe/go-internal/testscript"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
	"github.com/wasmbed/wasmbed/internal/issuer"
)

// TestControllerScripts runs testdata/script/controller_*.txtar: `wasmbed
// controller` against the control plane of `wasmbed up`.
func TestControllerScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "script", "controller_*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no controller scripts found")
	}
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Cmds:                map[string]func(*testscript.TestScript, bool, []string){"waitup": cmdWaitUp, "waitissuer": cmdWaitIssuer},
	})
}

// cmdWaitIssuer implements `waitissuer DATADIR`: waits until the issuer
// ConfigMap of the default system namespace holds valid keys.
func cmdWaitIssuer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitissuer DATADIR")
	}
	ctrllog.SetLogger(logr.Discard())
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(ts.MkAbs(args[0]), "kubeconfig"))
	ts.Check(err)
	scheme, err := controlplanetest.NewScheme()
	ts.Check(err)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	ts.Check(err)
	var lastErr error
	err = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		cm := &corev1.ConfigMap{}
		if lastErr = c.Get(ctx, client.ObjectKey{Namespace: wasmbedv1.DefaultSystemNamespace, Name: wasmbedv1.IssuerConfigMap}, cm); lastErr != nil {
			return false, nil
		}
		_, lastErr = issuer.ParsePublicData(cm.Data)
		return lastErr == nil, nil
	})
	if err != nil {
		ts.Fatalf("waitissuer: %v (last error: %v)", err, lastErr)
	}
}
