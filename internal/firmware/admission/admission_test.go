package admission_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/admission"
	"github.com/wasmbed/wasmbed/internal/firmware/profile"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm/wasmtest"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

func board(t *testing.T, name string) profile.Profile {
	t.Helper()
	p, err := profile.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	esp32, hifive1 := board(t, "esp32"), board(t, "hifive1")
	small := sandbox.Limits{MaxStackSize: 2048}
	blinky := apps.MustLoad(apps.Blinky)
	tests := []struct {
		name      string
		bin       []byte
		board     profile.Profile
		lim       sandbox.Limits
		installed []profile.Usage
		reason    protocol.Reason // 0: admitted
		is        error
	}{
		{name: "blinky on esp32", bin: blinky, board: esp32},
		{name: "blinky on hifive1, small stack", bin: blinky, board: hifive1, lim: small},
		{name: "blinky on hifive1, default stack", bin: blinky, board: hifive1, reason: protocol.ReasonNoSpace, is: profile.ErrDoesNotFit},
		{name: "second app on hifive1", bin: blinky, board: hifive1, lim: small, installed: []profile.Usage{{App: "other", RAMBytes: 1}},
			reason: protocol.ReasonNoSpace, is: profile.ErrDoesNotFit},
		{name: "module above the board's size", bin: make([]byte, 256<<10+1), board: hifive1, reason: protocol.ReasonNoSpace, is: profile.ErrDoesNotFit},
		{name: "stack limit above the runtime's", bin: blinky, board: esp32, lim: sandbox.Limits{MaxStackSize: 1 << 40},
			reason: protocol.ReasonLimitsUnsupported, is: wasm.ErrLimit},
		{name: "declared memory above its limit", bin: apps.MustLoad(apps.BigMem), board: esp32, lim: sandbox.Limits{MemoryLimit: 64 << 10},
			reason: protocol.ReasonInvalidModule, is: wasm.ErrLimit},
		{name: "forbidden import", bin: apps.MustLoad(apps.Forbidden), board: esp32, reason: protocol.ReasonInvalidModule, is: wasm.ErrForbiddenImport},
		{name: "not wasm", bin: []byte("#!/bin/sh\n"), board: esp32, reason: protocol.ReasonInvalidModule, is: wasm.ErrInvalidModule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := admission.Check(t.Context(), tt.bin, tt.board, tt.lim, admission.Options{App: "app", Installed: tt.installed})
			if tt.reason == 0 {
				if err != nil {
					t.Fatalf("Check: got %v, want admitted", err)
				}
				if v.Usage.RAMBytes == 0 || v.Usage.FlashBytes != uint64(len(tt.bin)) {
					t.Errorf("usage: got %+v, want RAM and the module's %d bytes of flash", v.Usage, len(tt.bin))
				}
				return
			}
			var r *admission.Refusal
			if !errors.As(err, &r) || r.Reason != tt.reason || !errors.Is(err, tt.is) {
				t.Fatalf("Check: got %v, want a refusal for %s matching %v", err, tt.reason, tt.is)
			}
			if r.PeerMessage() == "" || r.ProtocolReason() != tt.reason {
				t.Errorf("refusal reports %q %v", r.PeerMessage(), r.ProtocolReason())
			}
		})
	}
}

// TestCheckSurvivesHostileModules runs every hostile module through the
// admission of each board, as a controller would before sending it, and
// bounds what checking each allocates.
func TestCheckSurvivesHostileModules(t *testing.T) {
	for _, name := range profile.Names() {
		b := board(t, name)
		for _, h := range wasmtest.HostileModules() {
			t.Run(name+"/"+h.Name, func(t *testing.T) {
				var err error
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, err = admission.Check(t.Context(), h.Bin, b, sandbox.Limits{MaxStackSize: 2048}, admission.Options{})
				runtime.ReadMemStats(&after)
				if h.Admitted {
					if err != nil {
						t.Fatalf("Check: got %v, want admitted (its harm is at run time)", err)
					}
				} else {
					var r *admission.Refusal
					if !errors.As(err, &r) || r.Reason != protocol.ReasonInvalidModule {
						t.Fatalf("Check: got %v, want a refusal as an invalid module", err)
					}
				}
				if got := after.TotalAlloc - before.TotalAlloc; got > 8<<20 {
					t.Errorf("checking allocated %d bytes, want at most 8 MiB", got)
				}
			})
		}
	}
}

func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := admission.Check(ctx, apps.MustLoad(apps.Blinky), board(t, "esp32"), sandbox.Limits{}, admission.Options{})
	var r *admission.Refusal
	if !errors.As(err, &r) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Check: got %v, want a refusal wrapping context.Canceled", err)
	}
}
