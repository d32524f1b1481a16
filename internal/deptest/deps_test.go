package deptest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/wasmbed/wasmbed/"

// cbor is the CBOR library with the one package it needs.
var cbor = []string{"github.com/fxamacker/cbor/v2", "github.com/x448/float16"}

// wazero is the WebAssembly runtime with the one module it needs.
var wazero = []string{"github.com/tetratelabs/wazero", "golang.org/x/sys"}

// prometheus is Prometheus's Go client with the modules it needs.
var prometheus = []string{
	"github.com/prometheus/client_golang", "github.com/prometheus/client_model", "github.com/prometheus/common",
	"github.com/prometheus/procfs", "github.com/beorn7/perks", "github.com/cespare/xxhash/v2",
	"github.com/munnerz/goautoneg", "google.golang.org/protobuf", "golang.org/x/sys",
}

// deviceSafe are the project's packages that firmware may build on.
var deviceSafe = []string{
	module + "internal/sandbox",
	module + "internal/protocol",
	module + "internal/pki",
	module + "internal/edkey",
	module + "internal/artifact",
	module + "internal/seal",
	module + "internal/firmware/",
	module + "examples/apps",
}

func TestDeviceSidePackagesStayLight(t *testing.T) {
	rules := []struct {
		pattern string
		allowed []string
	}{
		{"./internal/protocol/...", cbor},
		{"./internal/edkey/...", nil},
		{"./internal/pki/...", []string{module + "internal/edkey"}},
		{"./internal/procmem/...", nil},
		{"./internal/seal/...", cbor},
		{"./internal/sandbox/...", nil},
		{"./internal/artifact/...", append([]string{module + "internal/seal", module + "internal/sandbox", module + "internal/edkey"}, cbor...)},
		{"./internal/firmware/...", concat(cbor, wazero, deviceSafe)},
		{"./internal/sim/...", concat(cbor, wazero, deviceSafe)},
		// The session core serves both the product gateway and the
		// firmware's test gateway: no Kubernetes, Prometheus's client only.
		{"./internal/session/...", concat(cbor, prometheus, []string{
			module + "internal/protocol", module + "internal/pki", module + "internal/edkey",
		})},
		{"./examples/apps/...", nil},
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, rule := range rules {
		t.Run(rule.pattern, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), goBin, "list", "-deps", "-f",
				"{{if not .Standard}}{{.ImportPath}}{{end}}", "../../"+strings.TrimPrefix(rule.pattern, "./"))
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("go list %s: %v", rule.pattern, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasPrefix(dep, module+strings.TrimSuffix(strings.TrimPrefix(rule.pattern, "./"), "/...")) {
					continue // the packages under test themselves
				}
				if !allowed(dep, rule.allowed) {
					t.Errorf("%s depends on %s; allowed: the standard library and %v", rule.pattern, dep, rule.allowed)
				}
			}
		})
	}
}

func allowed(dep string, prefixes []string) bool {
	for _, p := range prefixes {
		if dep == p || strings.HasPrefix(dep, p+"/") || (strings.HasSuffix(p, "/") && strings.HasPrefix(dep, p)) {
			return true
		}
	}
	return false
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// TestBinaryLinksKubectlCatalogueLoader checks that the wasmbed binary
// links internal/cli/kubectli18n, whose init keeps kubectl from parsing its
// English message catalogue at every start (docs/benchmarks.md).
func TestBinaryLinksKubectlCatalogueLoader(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.CommandContext(t.Context(), goBin, "list", "-deps", "../../cmd/wasmbed").Output()
	if err != nil {
		t.Fatalf("go list ./cmd/wasmbed: %v", err)
	}
	const want = module + "internal/cli/kubectli18n"
	if !slices.Contains(strings.Fields(string(out)), want) {
		t.Errorf("./cmd/wasmbed does not link %s", want)
	}
}
