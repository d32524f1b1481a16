package kubectli18n_test

import (
	"testing"

	"k8s.io/kubectl/pkg/util/i18n"

	"github.com/wasmbed/wasmbed/internal/cli/kubectli18n"
)

func TestEnglish(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"unset", nil, true},
		{"C", map[string]string{"LANG": "C"}, true},
		{"C.UTF-8", map[string]string{"LANG": "C.UTF-8"}, true},
		{"en_US", map[string]string{"LANG": "en_US.UTF-8"}, true},
		{"en_GB", map[string]string{"LANG": "en_GB.UTF-8"}, true},
		{"German", map[string]string{"LANG": "de_DE.UTF-8"}, false},
		{"LC_ALL wins", map[string]string{"LC_ALL": "en_US.UTF-8", "LANG": "de_DE.UTF-8"}, true},
		{"LC_MESSAGES before LANG", map[string]string{"LC_MESSAGES": "fr_FR.UTF-8", "LANG": "en_US.UTF-8"}, false},
		{"two dots", map[string]string{"LANG": "de_DE.UTF-8.x"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := kubectli18n.English(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Errorf("English(%v): got %v, want %v", tt.env, got, tt.want)
			}
		})
	}
}

// TestOtherLanguagesLoadTheCatalogue checks the path for a language kubectl
// translates: the catalogue is loaded as kubectl would. Nothing in this
// test binary translates before it, so it decides the one load.
func TestOtherLanguagesLoadTheCatalogue(t *testing.T) {
	t.Setenv("LC_ALL", "de_DE.UTF-8")
	if err := kubectli18n.Err(); err != nil {
		t.Fatal(err)
	}
	const msg, want = "Display one or many resources", "Zeige eine oder mehrere Resourcen"
	if got := i18n.T(msg); got != want {
		t.Errorf("i18n.T(%q) under de_DE: got %q, want %q", msg, got, want)
	}
	if !kubectli18n.Loaded() {
		t.Error("Loaded: got false after a German translation")
	}
}
