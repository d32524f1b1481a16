package wasm

import (
	"errors"
	"testing"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// tickModule assembles a module with one ()->() function exported as
// wasmbed_tick whose body (after the locals) is code.
func tickModule(code ...byte) []byte {
	sec := func(id byte, payload ...byte) []byte {
		return append(appendU32([]byte{id}, uint32(len(payload))), payload...)
	}
	body := append([]byte{0}, code...)
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, sec(secType, 1, 0x60, 0, 0)...)
	b = append(b, sec(secFunction, 1, 0)...)
	b = append(b, sec(secExport, append(appendName([]byte{1}, ExportTick), 0, 0)...)...)
	b = append(b, sec(secCode, append(appendU32([]byte{1}, uint32(len(body))), body...)...)...)
	return b
}

// TestInjectedIndicesUnreachable checks that guest code cannot name the
// globals and functions the instrumenter adds, by using indices just past
// the original module's ranges (invalid in the original module, valid
// names of injected items in the instrumented one).
func TestInjectedIndicesUnreachable(t *testing.T) {
	tests := []struct {
		name string
		bin  []byte
	}{
		{"global.set of the stack limit", tickModule(0x41, 0x7f, 0x24, 1, 0x0b)},    // i32.const -1; global.set 1
		{"global.get of the stack pointer", tickModule(0x23, 0, 0x1a, 0x0b)},        // global.get 0; drop
		{"call of the thunk", tickModule(0x10, 1, 0x0b)},                            // call 1
		{"ref.func of the thunk", tickModule(0xd2, 1, 0x1a, 0x0b)},                  // ref.func 1; drop
		{"call_indirect with injected type", tickModule(0x41, 0, 0x11, 1, 0, 0x0b)}, // type 1
		{"block type index past the types", tickModule(0x02, 1, 0x0b, 0x0b)},        // block (type 1)
		{"stack underflow", tickModule(0x1a, 0x0b)},                                 // drop on empty stack
		{"tail call", tickModule(0x12, 0, 0x0b)},                                    // return_call 0
		{"atomics", tickModule(0xfe, 0x03, 0x0b)},                                   // atomic.fence
	}
	e := newEngine(t, ModeInterpreter)
	if _, err := e.Compile(t.Context(), tickModule(0x0b), sandbox.Limits{}, Bounds{}); err != nil {
		t.Fatalf("Compile(empty tick): %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.Compile(t.Context(), tt.bin, sandbox.Limits{}, Bounds{})
			var me *ModuleError
			if !errors.As(err, &me) {
				t.Fatalf("Compile: got %v, want a *ModuleError", err)
			}
			if !errors.Is(err, ErrInvalidModule) && !errors.Is(err, ErrUnsupportedFeature) {
				t.Errorf("Compile: got %v, want ErrInvalidModule or ErrUnsupportedFeature", err)
			}
		})
	}
}

func TestLEB128(t *testing.T) {
	tests := []struct {
		in   []byte
		bits uint
		want int64
		ok   bool
	}{
		{[]byte{0x00}, 32, 0, true},
		{[]byte{0x7f}, 32, -1, true},
		{[]byte{0x80, 0x7f}, 32, -128, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x07}, 32, 0x7fffffff, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x78}, 32, -0x80000000, true},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 32, 0, false}, // unused bits not a sign extension
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 32, 0, false},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f}, 64, -1 << 63, true},
		{[]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, 64, 0, false},
		{[]byte{0x80}, 32, 0, false},
	}
	for _, tt := range tests {
		r := &reader{b: tt.in}
		got := r.signed(tt.bits)
		if ok := r.err == nil; ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("s%d % x: got %d ok=%v, want %d ok=%v", tt.bits, tt.in, got, ok, tt.want, tt.ok)
		}
		if tt.ok {
			if enc := appendS64(nil, tt.want); tt.bits == 32 && len(enc) <= len(tt.in) && string(enc) != string(tt.in[:len(enc)]) {
				t.Errorf("appendS64(%d): got % x, want prefix of % x", tt.want, enc, tt.in)
			}
		}
	}
	for _, v := range []uint32{0, 1, 127, 128, 1 << 20, 0xffffffff} {
		r := &reader{b: appendU32(nil, v)}
		if got := r.u32(); got != v || r.err != nil || !r.eof() {
			t.Errorf("u32 round trip %d: got %d err=%v", v, got, r.err)
		}
	}
}

func requireTyped(t *testing.T, err error) {
	t.Helper()
	var me *ModuleError
	var ie *ImportError
	var le *LimitError
	var be *BoundError
	if !errors.As(err, &me) && !errors.As(err, &ie) && !errors.As(err, &le) && !errors.As(err, &be) {
		t.Fatalf("untyped refusal %T: %v", err, err)
	}
}

// TestRewriterChecksWhatItRewrites checks that the decoder, not only the
// app model, refuses the indices the rewriter relies on, and that an
// imported memory is an unsupported feature to the instrumenter rather
// than an invalid module.
func TestRewriterChecksWhatItRewrites(t *testing.T) {
	typ := sec(secType, 1, 0x60, 0, 0)
	fn := sec(secFunction, 1, 0)
	code := sec(secCode, 1, 2, 0, 0x0b)
	memImport := sec(secImport, cat([]byte{1}, appendName(nil, "env"), appendName(nil, "memory"), []byte{byte(ExternMemory), 0, 1})...)
	growBody := []byte{0, 0x41, 1, 0x40, 0, 0x1a, 0x0b} // memory.grow 1; drop
	tests := []struct {
		name string
		bin  []byte
		want error
	}{
		{"export of a function past the module's", wasmModule(typ, fn, sec(secExport, cat([]byte{1}, appendName(nil, "f"), []byte{0, 1})...), code), ErrInvalidModule},
		{"export of a global past the module's", wasmModule(typ, fn, sec(secExport, cat([]byte{1}, appendName(nil, "g"), []byte{3, 0})...), code), ErrInvalidModule},
		{"start past the module's functions", wasmModule(typ, fn, sec(secStart, 1), code), ErrInvalidModule},
		{"imported memory with memory.grow", wasmModule(typ, memImport, fn,
			sec(secCode, cat([]byte{1, byte(len(growBody))}, growBody)...)), ErrUnsupportedFeature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := decode(tt.bin, Bounds{})
			if err == nil {
				_, err = m.instrument(maxPages)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("decode and instrument: got %v, want %v", err, tt.want)
			}
			if tt.want != ErrInvalidModule && errors.Is(err, ErrInvalidModule) {
				t.Errorf("got %v, also an invalid module", err)
			}
		})
	}
}
