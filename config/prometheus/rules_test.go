// Package prometheus holds the Prometheus alert rules shipped with Wasmbed;
// its test checks them with promtool.
package prometheus

import (
	"os/exec"
	"testing"
)

// TestAlertRules runs `promtool check rules` and `promtool test rules`.
// promtool comes with Debian's prometheus package, which hack/ensure-tools.sh
// installs; without it (a user who is not root) the test is skipped, saying
// why.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus): alert rules not checked")
	}
	for _, args := range [][]string{
		{"check", "rules", "wasmbed-alerts.yaml"},
		{"test", "rules", "wasmbed-alerts_test.yaml"},
	} {
		out, err := exec.CommandContext(t.Context(), promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
