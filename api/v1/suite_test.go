package v1_test

import (
	"os"
	"testing"

	"github.com/wasmbed/wasmbed/internal/controlplane/controlplanetest"
)

// env is the real control plane shared by this package's tests.
var env *controlplanetest.Env

func TestMain(m *testing.M) { os.Exit(controlplanetest.Run(m, &env)) }
