package wasm

import (
	"bytes"
	"unicode/utf8"
)

// reader is a cursor over a byte slice with a sticky error. After the
// first error every read returns zero and the cursor sits at the end, so
// loops bounded by the input always terminate.
type reader struct {
	b   []byte
	off int
	err error // *ModuleError or *BoundError
}

func (r *reader) fail(sentinel error, format string, args ...any) {
	if r.err == nil {
		r.err = modErr(sentinel, r.off, format, args...)
	}
	r.off = len(r.b)
}

// failBound records a structural bound the input exceeds.
func (r *reader) failBound(what Bound, value, limit uint64) {
	if r.err == nil {
		r.err = &BoundError{Bound: what, Value: value, Limit: limit, Offset: r.off}
	}
	r.off = len(r.b)
}

func (r *reader) eof() bool { return r.off >= len(r.b) }

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.fail(ErrInvalidModule, "unexpected end of input")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// peek returns the next byte without consuming it, or false at the end.
func (r *reader) peek() (byte, bool) {
	if r.off >= len(r.b) {
		return 0, false
	}
	return r.b[r.off], true
}

func (r *reader) bytes(n uint32) []byte {
	if uint64(n) > uint64(r.remaining()) { //nolint:gosec // remaining is never negative
		r.fail(ErrInvalidModule, "length %d past end of input", n)
		return nil
	}
	s := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

// u32 reads an unsigned LEB128 of at most 5 bytes.
func (r *reader) u32() uint32 {
	var v uint32
	for i := range 5 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if i == 4 && c&0xf0 != 0 {
			r.fail(ErrInvalidModule, "invalid u32 leb128")
			return 0
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(ErrInvalidModule, "u32 leb128 too long")
	return 0
}

// signed reads a signed LEB128 of bits width.
func (r *reader) signed(bits uint) int64 {
	var v int64
	var shift uint
	maxBytes := int((bits + 6) / 7)
	for i := range maxBytes {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if i == maxBytes-1 {
			// The unused bits of the last byte must be a sign extension.
			used := bits - shift // bits carried by this byte
			if used < 7 {
				rest := int8(c<<1) >> used //nolint:gosec // sign extension of the last byte's unused bits, on purpose
				if c&0x80 != 0 || (rest != 0 && rest != -1) {
					r.fail(ErrInvalidModule, "invalid s%d leb128", bits)
					return 0
				}
			}
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
	r.fail(ErrInvalidModule, "s%d leb128 too long", bits)
	return 0
}

func (r *reader) name() string {
	n := r.u32()
	b := r.bytes(n)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		r.fail(ErrInvalidModule, "name is not valid utf-8")
		return ""
	}
	return string(b)
}

// count reads a vector length and checks it against the bytes left (at
// least minSize per element) and against limit (0: none), so that callers
// may allocate count elements. what names the bound for the error.
func (r *reader) count(minSize int, what Bound, limit int) uint32 {
	n := r.u32()
	if r.err != nil {
		return 0
	}
	if uint64(n)*uint64(minSize) > uint64(r.remaining()) { //nolint:gosec // remaining is never negative
		r.fail(ErrInvalidModule, "vector length %d past end of input", n)
		return 0
	}
	if limit > 0 && uint64(n) > uint64(limit) {
		r.failBound(what, uint64(n), uint64(limit))
		return 0
	}
	return n
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

// appendU32Padded appends v as a five-byte unsigned LEB128, so that it can
// be patched in place later (see patchU32Padded).
func appendU32Padded(b []byte, v uint32) []byte {
	return append(b, byte(v)|0x80, byte(v>>7)|0x80, byte(v>>14)|0x80, byte(v>>21)|0x80, byte(v>>28)&0x0f) //nolint:gosec // LEB128 encoding: keeping the low bits is the point
}

// patchU32Padded overwrites the five-byte LEB128 at b[0:5]. A value below
// 2^31 is also a valid five-byte signed LEB128 (i32.const).
func patchU32Padded(b []byte, v uint32) {
	b[0], b[1], b[2], b[3], b[4] = byte(v)|0x80, byte(v>>7)|0x80, byte(v>>14)|0x80, byte(v>>21)|0x80, byte(v>>28)&0x0f //nolint:gosec // LEB128 encoding: keeping the low bits is the point
}

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...) //nolint:gosec // a length within a module, whose size is held under Bounds
}

// appendSection appends a section with its id and size.
func appendSection(b []byte, id byte, payload []byte) []byte {
	b = appendU32(append(b, id), uint32(len(payload))) //nolint:gosec // a length within a module, whose size is held under Bounds
	return append(b, payload...)
}

// Value types.
const (
	valI32       = 0x7f
	valI64       = 0x7e
	valF32       = 0x7d
	valF64       = 0x7c
	valV128      = 0x7b
	valFuncref   = 0x70
	valExternref = 0x6f
)

func isValType(b byte) bool {
	switch b {
	case valI32, valI64, valF32, valF64, valFuncref, valExternref:
		return true
	}
	return false // v128 is refused: SIMD is not offered on devices.
}

func isRefType(b byte) bool { return b == valFuncref || b == valExternref }

type funcType struct {
	params, results []byte
}

func (t funcType) equal(params, results []byte) bool {
	return bytes.Equal(t.params, params) && bytes.Equal(t.results, results)
}

func typeString(t funcType) string {
	var sb bytes.Buffer
	sb.WriteByte('(')
	for i, v := range t.params {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(valTypeName(v))
	}
	sb.WriteString(")->")
	if len(t.results) != 1 {
		sb.WriteByte('(')
	}
	for i, v := range t.results {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(valTypeName(v))
	}
	if len(t.results) != 1 {
		sb.WriteByte(')')
	}
	return sb.String()
}

func valTypeName(v byte) string {
	switch v {
	case valI32:
		return "i32"
	case valI64:
		return "i64"
	case valF32:
		return "f32"
	case valF64:
		return "f64"
	case valV128:
		return "v128"
	case valFuncref:
		return "funcref"
	case valExternref:
		return "externref"
	}
	return "?"
}
