package cli

import (
	"os"
	"testing"

	"k8s.io/kubectl/pkg/util/i18n"

	"github.com/wasmbed/wasmbed/internal/cli/kubectli18n"
)

// TestKubectlCatalogueNotLoadedAtInit checks that, in a program linking
// every command, the kubectl catalogue loader is replaced before kubectl's
// packages first translate a message, and that messages still read in
// English without a catalogue.
func TestKubectlCatalogueNotLoadedAtInit(t *testing.T) {
	if err := kubectli18n.Err(); err != nil {
		t.Fatalf("kubectl loaded its catalogue before the replacement loader was registered: %v", err)
	}
	if !kubectli18n.English(os.Getenv) {
		t.Skip("the test environment's locale is not English: the catalogue is loaded by design")
	}
	const msg = "Display one or many resources"
	if got := i18n.T(msg); got != msg {
		t.Errorf("i18n.T(%q): got %q", msg, got)
	}
	if kubectli18n.Loaded() {
		t.Error("a catalogue was loaded for an English locale")
	}
}
