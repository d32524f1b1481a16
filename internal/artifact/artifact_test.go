package artifact

import (
	"bytes"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, confidential := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "confidential"}[confidential], func(t *testing.T) {
			f := newFixture(t)
			data := f.sign(t, manifest(), confidential)
			a, err := f.verifier.Verify(data, store{})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(a.Module, module) {
				t.Errorf("got module of %d bytes, want the %d signed", len(a.Module), len(module))
			}
			if got, want := a.Manifest.Confidential, confidential; got != want {
				t.Errorf("got Confidential %t, want %t", got, want)
			}
			if got, want := a.Manifest.KeyID, f.signer.KeyID(); got != want {
				t.Errorf("got key id %s, want %s", got, want)
			}
			if got := a.Manifest.Sequence; got != 7 {
				t.Errorf("got sequence %d, want 7", got)
			}
		})
	}
}
