package wasm

import (
	"bytes"
)

// This file decodes a module far enough to check and instrument it before
// wazero sees it. Every section is walked in full: each declared count and
// length is checked against the bytes actually present and against the
// Bounds before anything is allocated for it, and every index the
// instrumenter relies on (functions, globals, types, exports, start) is
// checked against the original module. It is strict where a lax reading
// could make our view of a module differ from wazero's (LEB128 encodings,
// section order, counts). Function bodies are walked by the instrumenter
// (code.go), which applies the per-function bounds.

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

// sectionOrder lists the known sections in the order the binary format
// requires.
var sectionOrder = [...]byte{
	secType, secImport, secFunction, secTable, secMemory, secGlobal,
	secExport, secStart, secElement, secDataCount, secCode, secData,
}

// sectionRank orders the known sections as the binary format requires.
var sectionRank = func() [13]int {
	var r [13]int
	for i, id := range sectionOrder {
		r[id] = i + 1
	}
	return r
}()

const maxPages = 65536

// section is one section of the input: id and payload bounds in module.b.
type section struct {
	id         byte
	start, end int
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

// limits are the limits of a memory or table.
type limits struct {
	min, max uint32
	hasMax   bool
}

type tableDecl struct {
	elem     byte
	lim      limits
	imported bool
}

// module is a decoded module: what Inspect reports plus what the
// instrumenter needs.
type module struct {
	b        []byte
	bounds   Bounds
	sections []section // known sections, in order; custom sections are dropped
	info     ModuleInfo
	shape    Shape

	types       []funcType
	funcTypes   []uint32 // type index of every function, imports first
	nImpFuncs   uint32
	nImpGlobals uint32
	nGlobals    uint32 // defined globals
	tables      []tableDecl
	mem         limits
	hasMem      bool // a memory, defined or imported
	memImported bool
	startFunc   uint32
	nFuncDecl   uint32 // function section count
	haveFuncSec bool
	dataCount   uint32
	haveDataCnt bool
	bodies      []section // function bodies (payload bounds), defined functions only
}

// decode parses and checks b against the binary format and bounds.
func decode(b []byte, bounds Bounds) (*module, error) {
	m := &module{b: b, bounds: bounds.WithDefaults()}
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return nil, modErr(ErrInvalidModule, 0, "missing \\0asm magic")
	}
	if !bytes.Equal(b[4:8], []byte{1, 0, 0, 0}) {
		return nil, modErr(ErrInvalidModule, 4, "unsupported binary version %x", b[4:8])
	}
	r := &reader{b: b, off: 8}
	lastRank := 0
	for !r.eof() {
		id := r.byte()
		size := r.u32()
		start := r.off
		r.bytes(size)
		if r.err != nil {
			return nil, r.err
		}
		s := section{id: id, start: start, end: r.off}
		sr := &reader{b: b[:s.end], off: start}
		switch {
		case id == secCustom:
			m.decodeCustom(sr)
		case int(id) < len(sectionRank) && sectionRank[id] != 0:
			if sectionRank[id] <= lastRank {
				return nil, modErr(ErrInvalidModule, start-1, "section %d out of order or duplicated", id)
			}
			lastRank = sectionRank[id]
			m.decodeSection(id, sr)
			m.sections = append(m.sections, s)
		default:
			return nil, modErr(ErrUnsupportedFeature, start-1, "unknown section id %d", id)
		}
		if sr.err != nil {
			return nil, sr.err
		}
		if sr.off != s.end {
			return nil, modErr(ErrInvalidModule, sr.off, "section %d: %d trailing bytes", id, s.end-sr.off)
		}
	}
	if err := m.finish(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *module) decodeSection(id byte, r *reader) {
	switch id {
	case secType:
		m.decodeTypes(r)
	case secImport:
		m.decodeImports(r)
	case secFunction:
		m.decodeFunctions(r)
	case secTable:
		m.decodeTables(r)
	case secMemory:
		m.decodeMemory(r)
	case secGlobal:
		m.decodeGlobals(r)
	case secExport:
		m.decodeExports(r)
	case secStart:
		m.decodeStart(r)
	case secElement:
		m.walkElements(r, nil, nil)
	case secDataCount:
		m.dataCount, m.haveDataCnt = r.u32(), true
	case secCode:
		m.decodeCode(r)
	case secData:
		m.decodeData(r)
	}
}

// decodeCustom reads a custom section's name and, for the ABI section,
// its version. Custom sections are not passed on to the compiler.
func (m *module) decodeCustom(r *reader) {
	if r.name() == abiSectionName && r.err == nil {
		m.info.ABIVersion = r.u32()
		if r.err == nil && m.info.ABIVersion == 0 {
			r.fail(ErrInvalidModule, "abi version 0 in %s section", abiSectionName)
		}
	}
	if r.err == nil {
		r.off = len(r.b)
	}
}

func (m *module) decodeTypes(r *reader) {
	n := r.count(3, BoundTypes, m.bounds.MaxTypes)
	m.types = make([]funcType, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		if f := r.byte(); f != 0x60 {
			r.fail(ErrUnsupportedFeature, "type %d: form %#x (only function types)", i, f)
			return
		}
		var t funcType
		t.params = m.valTypes(r, i)
		t.results = m.valTypes(r, i)
		m.types = append(m.types, t)
	}
	m.shape.Types = len(m.types)
}

func (m *module) valTypes(r *reader, typeIdx uint32) []byte {
	n := r.count(1, "", 0)
	vs := r.bytes(n)
	for _, v := range vs {
		if !isValType(v) {
			r.fail(ErrUnsupportedFeature, "type %d: value type %#x", typeIdx, v)
			return nil
		}
	}
	return vs
}

func (m *module) decodeImports(r *reader) {
	n := r.count(4, BoundImports, m.bounds.MaxImports)
	for i := uint32(0); i < n && r.err == nil; i++ {
		imp := Import{Module: r.name(), Name: r.name(), Kind: ExternKind(r.byte())}
		switch imp.Kind {
		case ExternFunc:
			ti := r.u32()
			if r.err == nil && ti >= uint32(len(m.types)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
				r.fail(ErrInvalidModule, "import %q.%q: type index %d out of range", imp.Module, imp.Name, ti)
				return
			}
			if r.err == nil {
				imp.Type = typeString(m.types[ti])
			}
			m.funcTypes = append(m.funcTypes, ti)
			m.nImpFuncs++
			if len(m.funcTypes) > m.bounds.MaxFunctions {
				r.failBound(BoundFunctions, uint64(len(m.funcTypes)), uint64(m.bounds.MaxFunctions)) //nolint:gosec // counts and bounds are non-negative
			}
		case ExternTable:
			m.decodeTable(r, true)
		case ExternMemory:
			if m.hasMem {
				r.fail(ErrUnsupportedFeature, "import %q.%q: a second memory (multiple memories)", imp.Module, imp.Name)
				return
			}
			m.mem = readLimits(r, true)
			m.hasMem, m.memImported = true, true
		case ExternGlobal:
			if vt := r.byte(); r.err == nil && !isValType(vt) {
				r.fail(ErrUnsupportedFeature, "import %q.%q: global of type %#x", imp.Module, imp.Name, vt)
			}
			if mut := r.byte(); mut > 1 {
				r.fail(ErrInvalidModule, "import %q.%q: bad mutability %d", imp.Module, imp.Name, mut)
			}
			m.nImpGlobals++
		default:
			r.fail(ErrInvalidModule, "import %q.%q: bad kind %d", imp.Module, imp.Name, imp.Kind)
		}
		m.info.Imports = append(m.info.Imports, imp)
	}
	m.shape.Imports = len(m.info.Imports)
}

func (m *module) decodeFunctions(r *reader) {
	n := r.count(1, BoundFunctions, m.bounds.MaxFunctions)
	if r.err == nil && uint64(n)+uint64(m.nImpFuncs) > uint64(m.bounds.MaxFunctions) { //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
		r.failBound(BoundFunctions, uint64(n)+uint64(m.nImpFuncs), uint64(m.bounds.MaxFunctions)) //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
	}
	m.haveFuncSec, m.nFuncDecl = true, n
	for i := uint32(0); i < n && r.err == nil; i++ {
		ti := r.u32()
		if r.err == nil && ti >= uint32(len(m.types)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
			r.fail(ErrInvalidModule, "function %d: type index %d out of range", i, ti)
		}
		m.funcTypes = append(m.funcTypes, ti)
	}
}

func (m *module) decodeTables(r *reader) {
	n := r.count(3, BoundTableElements, 0)
	for i := uint32(0); i < n && r.err == nil; i++ {
		m.decodeTable(r, false)
	}
}

// decodeTable reads a table type and adds its minimum to the elements
// counted against MaxTableElements.
func (m *module) decodeTable(r *reader, imported bool) {
	elem := r.byte()
	if r.err == nil && !isRefType(elem) {
		r.fail(ErrInvalidModule, "table %d: element type %#x", len(m.tables), elem)
		return
	}
	lim := readLimits(r, false)
	if r.err != nil {
		return
	}
	total := uint64(m.shape.TableElements) + uint64(lim.min)
	if total > uint64(m.bounds.MaxTableElements) {
		r.failBound(BoundTableElements, total, uint64(m.bounds.MaxTableElements))
		return
	}
	m.shape.TableElements = uint32(total) //nolint:gosec // total is at most MaxTableElements, checked above
	m.tables = append(m.tables, tableDecl{elem: elem, lim: lim, imported: imported})
}

func (m *module) decodeMemory(r *reader) {
	n := r.count(2, "", 0)
	if n > 1 || n == 1 && m.hasMem {
		r.fail(ErrUnsupportedFeature, "%d memories (multiple memories)", n+boolU32(m.hasMem))
		return
	}
	if n == 1 {
		m.mem = readLimits(r, true)
		m.hasMem = true
		m.info.HasMemory = true
	}
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

func readLimits(r *reader, memory bool) limits {
	var l limits
	flag := r.byte()
	switch flag {
	case 0:
		l.min = r.u32()
	case 1:
		l.min, l.max, l.hasMax = r.u32(), r.u32(), true
	case 2, 3:
		if memory {
			r.fail(ErrUnsupportedFeature, "shared memory (threads)")
		} else {
			r.fail(ErrInvalidModule, "bad limits flag %d", flag)
		}
	default:
		r.fail(ErrUnsupportedFeature, "limits flag %#x (memory64, table64 or custom page sizes)", flag)
	}
	if memory && r.err == nil && (l.min > maxPages || l.hasMax && l.max > maxPages) {
		r.fail(ErrInvalidModule, "memory limits above 4 GiB")
	}
	if r.err == nil && l.hasMax && l.max < l.min {
		r.fail(ErrInvalidModule, "limits max %d below min %d", l.max, l.min)
	}
	return l
}

func (m *module) decodeGlobals(r *reader) {
	n := r.count(3, BoundGlobals, m.bounds.MaxGlobals)
	if r.err == nil && uint64(n)+uint64(m.nImpGlobals) > uint64(m.bounds.MaxGlobals) { //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
		r.failBound(BoundGlobals, uint64(n)+uint64(m.nImpGlobals), uint64(m.bounds.MaxGlobals)) //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
	}
	m.nGlobals = n
	for i := uint32(0); i < n && r.err == nil; i++ {
		vt := r.byte()
		if r.err == nil && !isValType(vt) {
			r.fail(ErrUnsupportedFeature, "global %d: value type %#x", i, vt)
		}
		if mut := r.byte(); mut > 1 {
			r.fail(ErrInvalidModule, "global %d: bad mutability %d", i, mut)
		}
		m.constExpr(r, nil, nil)
	}
	m.shape.Globals = int(m.nImpGlobals + m.nGlobals)
}

func (m *module) decodeExports(r *reader) {
	n := r.count(3, BoundExports, m.bounds.MaxExports)
	seen := make(map[string]struct{}, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		e := Export{Name: r.name(), Kind: ExternKind(r.byte()), Index: r.u32()}
		if r.err != nil {
			return
		}
		if _, dup := seen[e.Name]; dup {
			r.fail(ErrInvalidModule, "duplicate export %q", e.Name)
			return
		}
		seen[e.Name] = struct{}{}
		var count uint32
		switch e.Kind {
		case ExternFunc:
			count = uint32(len(m.funcTypes)) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		case ExternTable:
			count = uint32(len(m.tables)) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		case ExternMemory:
			count = boolU32(m.hasMem)
		case ExternGlobal:
			count = m.nImpGlobals + m.nGlobals
		default:
			r.fail(ErrInvalidModule, "export %q: bad kind %d", e.Name, e.Kind)
			return
		}
		if e.Index >= count {
			r.fail(ErrInvalidModule, "export %q: %s index %d out of range", e.Name, e.Kind, e.Index)
			return
		}
		m.info.Exports = append(m.info.Exports, e)
	}
	m.shape.Exports = len(m.info.Exports)
}

func (m *module) decodeStart(r *reader) {
	m.info.HasStart = true
	m.startFunc = r.u32()
	if r.err == nil && m.startFunc >= uint32(len(m.funcTypes)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		r.fail(ErrInvalidModule, "start function index %d out of range", m.startFunc)
	}
}

func (m *module) decodeCode(r *reader) {
	n := r.count(1, BoundFunctions, m.bounds.MaxFunctions)
	if r.err == nil && n != m.nFuncDecl {
		r.fail(ErrInvalidModule, "code section has %d bodies, function section declares %d", n, m.nFuncDecl)
		return
	}
	m.bodies = make([]section, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		sz := r.u32()
		if r.err == nil && uint64(sz) > uint64(m.bounds.MaxFunctionBytes) { //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
			r.failBound(BoundFunctionBytes, uint64(sz), uint64(m.bounds.MaxFunctionBytes)) //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
			return
		}
		st := r.off
		r.bytes(sz)
		m.bodies = append(m.bodies, section{id: secCode, start: st, end: st + int(sz)})
		m.shape.MaxFunctionBytes = max(m.shape.MaxFunctionBytes, int(sz))
	}
}

// decodeData checks the data segments: counts, memory index, and that an
// active segment fits the memory's initial size, which instantiation
// would otherwise fail on.
func (m *module) decodeData(r *reader) {
	n := r.count(2, BoundSegments, m.bounds.MaxSegments)
	if r.err == nil && m.haveDataCnt && n != m.dataCount {
		r.fail(ErrInvalidModule, "data section has %d segments, data count section declares %d", n, m.dataCount)
		return
	}
	m.shape.Segments = max(m.shape.Segments, int(n))
	for i := uint32(0); i < n && r.err == nil; i++ {
		flag := r.u32()
		var offset int64
		var constant bool
		switch flag {
		case 0, 2:
			if flag == 2 {
				if mi := r.u32(); r.err == nil && mi != 0 {
					r.fail(ErrUnsupportedFeature, "data segment %d: memory %d (multiple memories)", i, mi)
					return
				}
			}
			if r.err == nil && !m.hasMem {
				r.fail(ErrInvalidModule, "data segment %d: no memory", i)
				return
			}
			offset, constant = m.offsetExpr(r, valI32)
		case 1:
		default:
			r.fail(ErrInvalidModule, "data segment %d: flag %d", i, flag)
			return
		}
		size := r.u32()
		at := r.off
		r.bytes(size)
		// An imported memory may be larger than its import declares.
		if r.err == nil && flag != 1 && constant && !m.memImported {
			end := uint64(uint32(offset)) + uint64(size)
			if have := uint64(m.mem.min) * PageSize; end > have {
				r.err = modErr(ErrUninstantiable, at, "data segment %d covers bytes [%d, %d) of a %d-byte memory", i, uint32(offset), end, have)
				r.off = len(r.b)
			}
		}
	}
}

// offsetExpr reads an active segment's offset and returns its value when
// it is a constant of type vt.
func (m *module) offsetExpr(r *reader, vt byte) (int64, bool) {
	start := r.off
	m.constExpr(r, nil, nil)
	if r.err != nil {
		return 0, false
	}
	e := &reader{b: r.b[:r.off], off: start}
	if op := e.byte(); vt == valI32 && op == 0x41 {
		v := e.signed(32)
		if e.byte() == 0x0b && e.err == nil {
			return v, true
		}
	}
	return 0, false
}

// walkElements walks the element section. With out nil it only checks it
// (counts, indices, that active segments fit their tables); otherwise it
// appends the section's payload to out with function indices mapped
// through fn.
func (m *module) walkElements(r *reader, out *[]byte, fn func(uint32) uint32) {
	emit := func(b ...byte) {
		if out != nil {
			*out = append(*out, b...)
		}
	}
	emitU32 := func(v uint32) {
		if out != nil {
			*out = appendU32(*out, v)
		}
	}
	n := r.count(2, BoundSegments, m.bounds.MaxSegments)
	m.shape.Segments = max(m.shape.Segments, int(n))
	emitU32(n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flag := r.u32()
		emitU32(flag)
		if flag > 7 {
			r.fail(ErrInvalidModule, "element segment %d: flag %d", i, flag)
			return
		}
		active, explicitTable, exprs := flag&1 == 0, flag&2 != 0, flag&4 != 0
		table := uint32(0)
		var offset int64
		var constant bool
		if active && explicitTable {
			table = r.u32()
			emitU32(table)
		}
		if active {
			if r.err == nil && table >= uint32(len(m.tables)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
				r.fail(ErrInvalidModule, "element segment %d: table %d out of range", i, table)
				return
			}
			start := r.off
			offset, constant = m.offsetExpr(r, valI32)
			if r.err == nil {
				emit(r.b[start:r.off]...)
			}
		}
		if !active || explicitTable {
			k := r.byte() // element kind (0x00: funcref) or reference type
			emit(k)
		}
		count := m.elemVector(r, exprs, out, fn)
		if r.err == nil && active && constant && !m.tables[table].imported {
			if end := uint64(uint32(offset)) + uint64(count); end > uint64(m.tables[table].lim.min) {
				r.err = modErr(ErrUninstantiable, r.off, "element segment %d covers elements [%d, %d) of a table of %d", i, uint32(offset), end, m.tables[table].lim.min)
				r.off = len(r.b)
			}
		}
	}
}

// elemVector walks the vector of an element segment: function indices or
// constant expressions.
func (m *module) elemVector(r *reader, exprs bool, out *[]byte, fn func(uint32) uint32) uint32 {
	k := r.count(1, "", 0)
	if out != nil {
		*out = appendU32(*out, k)
	}
	for j := uint32(0); j < k && r.err == nil; j++ {
		if exprs {
			m.constExpr(r, out, fn)
			continue
		}
		x := r.u32()
		if r.err == nil && x >= uint32(len(m.funcTypes)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
			r.fail(ErrInvalidModule, "element function index %d out of range", x)
		}
		if out != nil && fn != nil {
			*out = appendU32(*out, fn(x))
		}
	}
	return k
}

// constExpr reads a constant expression up to its end opcode, checking
// global and function indices against the original module. If out is not
// nil the expression is appended to it, with ref.func indices mapped
// through fn when fn is not nil.
func (m *module) constExpr(r *reader, out *[]byte, fn func(uint32) uint32) {
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
			if g := r.u32(); r.err == nil && g >= m.nImpGlobals+m.nGlobals {
				r.fail(ErrInvalidModule, "global index %d out of range", g)
			}
		case 0xd0:
			if t := r.byte(); r.err == nil && !isRefType(t) {
				r.fail(ErrInvalidModule, "ref.null type %#x", t)
			}
		case 0xd2:
			at := r.off - 1
			idx := r.u32()
			if r.err == nil && idx >= uint32(len(m.funcTypes)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
				r.fail(ErrInvalidModule, "function index %d out of range", idx)
			}
			if out != nil && fn != nil && r.err == nil {
				flush(at)
				*out = appendU32(append(*out, 0xd2), fn(idx))
				start = r.off
			}
		default:
			r.fail(ErrUnsupportedFeature, "opcode %#x in constant expression", op)
		}
	}
}

// finish checks what spans sections.
func (m *module) finish() error {
	if m.haveFuncSec && len(m.bodies) != int(m.nFuncDecl) {
		return modErr(ErrInvalidModule, -1, "function section declares %d functions, code section has %d bodies", m.nFuncDecl, len(m.bodies))
	}
	if m.haveDataCnt && m.find(secData) == nil && m.dataCount != 0 {
		return modErr(ErrInvalidModule, -1, "data count section declares %d segments, there is no data section", m.dataCount)
	}
	m.shape.Functions = len(m.funcTypes)
	m.info.Size = len(m.b)
	m.info.Functions = len(m.bodies)
	if m.info.HasMemory {
		m.info.MemoryMinPages, m.info.MemoryMaxPages, m.info.HasMemoryMax = m.mem.min, m.mem.max, m.mem.hasMax
	}
	return nil
}

func (m *module) find(id byte) *section {
	for i := range m.sections {
		if m.sections[i].id == id {
			return &m.sections[i]
		}
	}
	return nil
}

// payload returns a reader over section id's payload, or nil.
func (m *module) payload(id byte) *reader {
	s := m.find(id)
	if s == nil {
		return nil
	}
	return &reader{b: m.b[:s.end], off: s.start}
}
