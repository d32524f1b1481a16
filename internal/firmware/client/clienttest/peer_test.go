package clienttest_test

import (
	"errors"
	"testing"

	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
)

func TestSendFrameRefusesWhatIsNotOneFrame(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"short prefix", []byte{0, 0, 1}},
		{"prefix longer than the body", []byte{0, 0, 0, 5, 0x84}},
		{"prefix shorter than the body", []byte{0, 0, 0, 1, 0x84, 0x01}},
	}
	var p clienttest.Peer // the frame is checked before the session is used
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := p.SendFrame(t.Context(), 1000, tt.frame); !errors.Is(err, clienttest.ErrBadFrame) {
				t.Errorf("got %v, want ErrBadFrame", err)
			}
		})
	}
}
