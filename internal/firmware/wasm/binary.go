package wasm

import (
	"bytes"
	"unicode/utf8"
)

// This file decodes the parts of the WebAssembly binary format the runtime
// needs to check and instrument a module before wazero compiles it. It is
// strict where a lax reading could make our view of a module differ from
// wazero's (LEB128 encodings, section order, counts), and it never
// allocates in proportion to a count it has not yet checked against the
// remaining input.

const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

// sectionRank orders the known sections as the binary format requires.
var sectionRank = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5, secGlobal: 6,
	secExport: 7, secStart: 8, secElement: 9, secDataCount: 10, secCode: 11, secData: 12,
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

// reader is a cursor over a byte slice with a sticky error. After the
// first error every read returns zero and the cursor sits at the end, so
// loops bounded by the input always terminate.
type reader struct {
	b   []byte
	off int
	err *ModuleError
}

func (r *reader) fail(sentinel error, format string, args ...any) {
	if r.err == nil {
		r.err = modErr(sentinel, r.off, format, args...)
	}
	r.off = len(r.b)
}

func (r *reader) eof() bool { return r.off >= len(r.b) }

func (r *reader) byte() byte {
	if r.off >= len(r.b) {
		r.fail(ErrInvalidModule, "unexpected end of input")
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

func (r *reader) bytes(n uint32) []byte {
	if uint64(n) > uint64(len(r.b)-r.off) {
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
	for i := 0; i < 5; i++ {
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
	for i := 0; i < maxBytes; i++ {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if i == maxBytes-1 {
			// The unused bits of the last byte must be a sign extension.
			used := bits - shift // bits carried by this byte
			if used < 7 {
				rest := int8(c<<1) >> used
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

// count reads a vector length and checks that at least minSize bytes per
// element remain, so callers may allocate count elements.
func (r *reader) count(minSize int) uint32 {
	n := r.u32()
	if r.err == nil && uint64(n)*uint64(minSize) > uint64(len(r.b)-r.off) {
		r.fail(ErrInvalidModule, "vector length %d past end of input", n)
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

type funcType struct {
	params, results []byte
}

func (t funcType) equal(params, results []byte) bool {
	return bytes.Equal(t.params, params) && bytes.Equal(t.results, results)
}

// section is one section of the input: id and payload bounds in module.b.
type section struct {
	id         byte
	start, end int
	name       string // custom sections only
}

// Import is one import of a module.
type Import struct {
	Module, Name string
	Kind         ExternKind
	// Type is the function signature for ExternFunc imports, e.g.
	// "(i32,i32)->i32".
	Type string
}

// Export is one export of a module.
type Export struct {
	Name  string
	Kind  ExternKind
	Index uint32
}

// module is a decoded module: what Inspect reports plus what the
// instrumenter needs.
type module struct {
	b        []byte
	sections []section
	info     ModuleInfo

	types      []funcType
	funcTypes  []uint32 // type index of every function, imports first
	nImpFuncs  uint32
	nImpGlobal uint32
	nGlobals   uint32 // defined globals
	memLimits  struct {
		min, max uint32
		hasMax   bool
	}
	bodies []section // function bodies (payload bounds), defined functions only
}

// decode parses b far enough to check and instrument it. Function bodies
// are decoded later, by the instrumenter.
func decode(b []byte) (*module, error) {
	m := &module{b: b}
	r := &reader{b: b}
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, modErr(ErrInvalidModule, 0, "missing \\0asm magic")
	}
	if !bytes.Equal(b[4:8], []byte{1, 0, 0, 0}) {
		return nil, modErr(ErrInvalidModule, 4, "unsupported binary version %x", b[4:8])
	}
	r.off = 8
	lastRank := 0
	var nFuncDecl uint32
	haveFuncSec := false
	for !r.eof() && r.err == nil {
		id := r.byte()
		size := r.u32()
		start := r.off
		payload := r.bytes(size)
		if r.err != nil {
			break
		}
		s := section{id: id, start: start, end: start + len(payload)}
		sr := &reader{b: b[:s.end], off: start}
		switch {
		case id == secCustom:
			s.name = sr.name()
			if sr.err == nil && s.name == abiSectionName {
				m.info.ABIVersion = sr.u32()
				if m.info.ABIVersion == 0 {
					sr.fail(ErrInvalidModule, "abi version 0 in %s section", abiSectionName)
				}
			}
			sr.off = s.end
		case int(id) < len(sectionRank) && sectionRank[id] != 0:
			if sectionRank[id] <= lastRank {
				return nil, modErr(ErrInvalidModule, start-1, "section %d out of order or duplicated", id)
			}
			lastRank = sectionRank[id]
			switch id {
			case secType:
				m.decodeTypes(sr)
			case secImport:
				m.decodeImports(sr)
			case secFunction:
				haveFuncSec = true
				n := sr.count(1)
				nFuncDecl = n
				for i := uint32(0); i < n && sr.err == nil; i++ {
					ti := sr.u32()
					if sr.err == nil && ti >= uint32(len(m.types)) {
						sr.fail(ErrInvalidModule, "function %d: type index %d out of range", i, ti)
					}
					m.funcTypes = append(m.funcTypes, ti)
				}
			case secMemory:
				n := sr.count(2)
				if n > 1 {
					sr.fail(ErrUnsupportedFeature, "%d memories (multiple memories)", n)
				}
				if n == 1 {
					m.info.HasMemory = true
					m.memLimits.min, m.memLimits.max, m.memLimits.hasMax = readLimits(sr, true)
				}
			case secGlobal:
				n := sr.count(3)
				m.nGlobals = n
				for i := uint32(0); i < n && sr.err == nil; i++ {
					vt := sr.byte()
					if !isValType(vt) {
						sr.fail(ErrUnsupportedFeature, "global %d: value type %#x", i, vt)
					}
					if mut := sr.byte(); mut > 1 {
						sr.fail(ErrInvalidModule, "global %d: bad mutability %d", i, mut)
					}
					m.constExpr(sr, nil, nil)
				}
			case secExport:
				n := sr.count(3)
				for i := uint32(0); i < n && sr.err == nil; i++ {
					e := Export{Name: sr.name(), Kind: ExternKind(sr.byte()), Index: sr.u32()}
					if e.Kind > ExternGlobal {
						sr.fail(ErrInvalidModule, "export %q: bad kind %d", e.Name, e.Kind)
					}
					m.info.Exports = append(m.info.Exports, e)
				}
			case secStart:
				m.info.HasStart = true
				sr.u32()
			case secCode:
				n := sr.count(1)
				if haveFuncSec && n != nFuncDecl || !haveFuncSec && n != 0 {
					sr.fail(ErrInvalidModule, "code section has %d bodies, function section declares %d", n, nFuncDecl)
				}
				for i := uint32(0); i < n && sr.err == nil; i++ {
					sz := sr.u32()
					st := sr.off
					sr.bytes(sz)
					m.bodies = append(m.bodies, section{start: st, end: st + int(sz)})
				}
			default:
				// Tables, elements, data, data count: checked by wazero and
				// rewritten (elements) by the instrumenter.
				sr.off = s.end
			}
		default:
			return nil, modErr(ErrUnsupportedFeature, start-1, "unknown section id %d", id)
		}
		if sr.err != nil {
			return nil, sr.err
		}
		if sr.off != s.end {
			return nil, modErr(ErrInvalidModule, sr.off, "section %d: %d trailing bytes", id, s.end-sr.off)
		}
		m.sections = append(m.sections, s)
	}
	if r.err != nil {
		return nil, r.err
	}
	if haveFuncSec && len(m.bodies) != int(nFuncDecl) {
		return nil, modErr(ErrInvalidModule, -1, "function section declares %d functions, code section has %d bodies", nFuncDecl, len(m.bodies))
	}
	m.info.Size = len(b)
	m.info.Functions = len(m.bodies)
	m.info.MemoryMinPages = m.memLimits.min
	m.info.MemoryMaxPages = m.memLimits.max
	m.info.HasMemoryMax = m.memLimits.hasMax
	return m, nil
}

func readLimits(r *reader, memory bool) (min, max uint32, hasMax bool) {
	flag := r.byte()
	switch flag {
	case 0:
		min = r.u32()
	case 1:
		min, max, hasMax = r.u32(), r.u32(), true
	case 2, 3:
		if memory {
			r.fail(ErrUnsupportedFeature, "shared memory (threads)")
		} else {
			r.fail(ErrInvalidModule, "bad limits flag %d", flag)
		}
	default:
		r.fail(ErrUnsupportedFeature, "limits flag %#x (memory64 or custom page sizes)", flag)
	}
	if memory && r.err == nil && (min > maxPages || hasMax && max > maxPages) {
		r.fail(ErrInvalidModule, "memory limits above 4 GiB")
	}
	if r.err == nil && hasMax && max < min {
		r.fail(ErrInvalidModule, "limits max %d below min %d", max, min)
	}
	return
}

const maxPages = 65536

func (m *module) decodeTypes(r *reader) {
	n := r.count(3)
	m.types = make([]funcType, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		if f := r.byte(); f != 0x60 {
			r.fail(ErrUnsupportedFeature, "type %d: form %#x (only function types)", i, f)
			return
		}
		var t funcType
		for k := 0; k < 2; k++ {
			np := r.count(1)
			vs := r.bytes(np)
			for _, v := range vs {
				if !isValType(v) {
					r.fail(ErrUnsupportedFeature, "type %d: value type %#x", i, v)
					return
				}
			}
			if k == 0 {
				t.params = vs
			} else {
				t.results = vs
			}
		}
		m.types = append(m.types, t)
	}
}

func (m *module) decodeImports(r *reader) {
	n := r.count(4)
	for i := uint32(0); i < n && r.err == nil; i++ {
		imp := Import{Module: r.name(), Name: r.name(), Kind: ExternKind(r.byte())}
		switch imp.Kind {
		case ExternFunc:
			ti := r.u32()
			if r.err == nil && ti >= uint32(len(m.types)) {
				r.fail(ErrInvalidModule, "import %q.%q: type index %d out of range", imp.Module, imp.Name, ti)
				return
			}
			if r.err == nil {
				imp.Type = typeString(m.types[ti])
			}
			m.funcTypes = append(m.funcTypes, ti)
			m.nImpFuncs++
		case ExternTable:
			r.byte()
			readLimits(r, false)
		case ExternMemory:
			readLimits(r, true)
		case ExternGlobal:
			r.byte()
			r.byte()
			m.nImpGlobal++
		default:
			r.fail(ErrInvalidModule, "import %q.%q: bad kind %d", imp.Module, imp.Name, imp.Kind)
		}
		m.info.Imports = append(m.info.Imports, imp)
	}
}

// constExpr reads a constant expression up to its end opcode, checking
// global and function indices against the original module. If out is not
// nil the expression is appended to it, with ref.func indices mapped
// through remap when remap is not nil.
func (m *module) constExpr(r *reader, out *[]byte, remap func(uint32) uint32) {
	start := r.off
	flush := func(upTo int) {
		if out != nil {
			*out = append(*out, r.b[start:upTo]...)
		}
	}
	for r.err == nil {
		op := r.byte()
		switch op {
		case 0x0b:
			flush(r.off)
			return
		case 0x41:
			r.signed(32)
		case 0x42:
			r.signed(64)
		case 0x43:
			r.bytes(4)
		case 0x44:
			r.bytes(8)
		case 0x23:
			if g := r.u32(); r.err == nil && g >= m.nImpGlobal+m.nGlobals {
				r.fail(ErrInvalidModule, "global index %d out of range", g)
			}
		case 0xd0:
			r.byte()
		case 0xd2:
			at := r.off - 1
			idx := r.u32()
			if r.err == nil && idx >= uint32(len(m.funcTypes)) {
				r.fail(ErrInvalidModule, "function index %d out of range", idx)
			}
			if out != nil && remap != nil && r.err == nil {
				flush(at)
				*out = append(*out, 0xd2)
				*out = appendU32(*out, remap(idx))
				start = r.off
			}
		default:
			r.fail(ErrUnsupportedFeature, "opcode %#x in constant expression", op)
		}
	}
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
