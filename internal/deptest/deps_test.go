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

// clienttest is the firmware's test gateway, which has a rule of its own.
const clienttest = module + "internal/firmware/client/clienttest"

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
		exclude []string // packages matched by pattern that have a rule of their own
	}{
		{"./internal/protocol/...", cbor, nil},
		{"./internal/edkey/...", nil, nil},
		{"./internal/pki/...", []string{module + "internal/edkey"}, nil},
		{"./internal/procmem/...", nil, nil},
		{"./internal/seal/...", cbor, nil},
		{"./internal/sandbox/...", nil, nil},
		{"./internal/artifact/...", append([]string{module + "internal/seal", module + "internal/sandbox", module + "internal/edkey"}, cbor...), nil},
		{"./internal/firmware/...", concat(cbor, wazero, deviceSafe), []string{clienttest}},
		{"./internal/sim/...", concat(cbor, wazero, deviceSafe), nil},
		// The session core serves both the product gateway and the
		// firmware's test gateway: no Kubernetes, Prometheus's client only.
		{"./internal/session/...", concat(cbor, prometheus, []string{
			module + "internal/protocol", module + "internal/pki", module + "internal/edkey",
		}), nil},
		// The firmware's test gateway is the gateway side of the firmware's
		// tests, never on a device: it runs the session core.
		{"./internal/firmware/client/clienttest", concat(cbor, deviceSafe, prometheus, []string{module + "internal/session"}), nil},
		{"./examples/apps/...", nil, nil},
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	for _, rule := range rules {
		t.Run(rule.pattern, func(t *testing.T) {
			pkgs := []string{"../../" + strings.TrimPrefix(rule.pattern, "./")}
			if len(rule.exclude) > 0 {
				out, err := exec.CommandContext(t.Context(), goBin, "list", pkgs[0]).Output()
				if err != nil {
					t.Fatalf("go list %s: %v", rule.pattern, err)
				}
				pkgs = slices.DeleteFunc(strings.Fields(string(out)), func(p string) bool { return slices.Contains(rule.exclude, p) })
			}
			args := append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)
			out, err := exec.CommandContext(t.Context(), goBin, args...).Output()
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
