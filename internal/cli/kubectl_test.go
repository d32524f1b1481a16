package cli

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/wasmbed/wasmbed/internal/cli/kubectli18n"
)

// TestKubectlCatalogueNotLoadedAtInit checks that, in a program linking
// every command, the kubectl catalogue loader is replaced before kubectl's
// packages first translate a message, and that kubectl's help still
// reads in English without a catalogue.
func TestKubectlCatalogueNotLoadedAtInit(t *testing.T) {
	if err := kubectli18n.Err(); err != nil {
		t.Fatalf("kubectl loaded its catalogue before the replacement loader was registered: %v", err)
	}
	if !kubectli18n.English(os.Getenv) {
		t.Skip("the test environment's locale is not English: the catalogue is loaded by design")
	}
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"kubectl", "--kubeconfig", "/nonexistent", "get", "--help"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("kubectl get --help: %v\n%s", err, out.String())
	}
	if want := "Display one or many resources"; !strings.Contains(out.String(), want) {
		t.Errorf("kubectl get --help: output lacks %q:\n%.500s", want, out.String())
	}
	if kubectli18n.Loaded() {
		t.Error("a catalogue was loaded for an English locale")
	}
}
