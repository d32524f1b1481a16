package wasm

// The instrumenter rewrites a checked module before wazero compiles it, so
// that the per-app limits hold whatever the engine (compiler or
// interpreter) does, at a small and linear cost in code size:
//
//   - Stack: every defined function f starts with a prologue that
//     subtracts f's frame cost from an injected global $sp_left and ends
//     with an epilogue adding it back; the body is wrapped in a block of
//     f's result type and every return becomes a branch to it, so the
//     epilogue runs on every way out. The host sets $sp_left to
//     maxStackSize before each execution; a prologue that takes it below
//     zero calls $slow, which sets $stack_trap and traps. Because the
//     callee accounts for itself, calls through tables, from the host and
//     from exports need no thunks and the function count grows by two or
//     three.
//   - Time: the same prologue subtracts the function's loop-free
//     instruction count from an injected global $fuel, and every loop
//     header subtracts the loop body's instruction count from a local
//     batch, refilled from $fuel by $refill. When $fuel goes below zero,
//     $slow calls the host's poll function (import "__wasmbed" "poll"),
//     which compares the clock with the execution's deadline and the
//     caller's context, and either refills $fuel or stops the execution
//     (the guest then traps). So the clock is read once per fuel quantum,
//     in loops and in loop-free call trees alike.
//   - Memory: the memory section's maximum becomes min(declared max,
//     memoryLimit pages), and every memory.grow is replaced by a call to
//     $grow, which performs it and sets $grow_failed when it returns -1.
//   - Tables: every table.grow is replaced by a call to a helper for its
//     table, which refuses (returns -1, as the spec allows) a growth that
//     would take all tables together past the bound on table elements,
//     tracked in an injected global, and sets $table_grow_failed when a
//     growth fails.
//
// The injected globals are exported under reserved names (see
// reservedExportPrefix) for the host to read and reset; the original code
// cannot name them, nor the injected functions and types, since its
// indices were checked against the original module's ranges. Custom
// sections (names, debug information) are not passed on.
//
// Frame cost of f, in bytes (see docs/app-abi.md):
//
//	cost(f) = 8*(params + locals + 3 + maxOperandHeight + 2) + 16
//
// where maxOperandHeight is computed by simulating f's operand stack, the
// 3 are the injected locals and the 2 extra slots cover the values the
// instrumentation pushes.

const (
	reservedExportPrefix = "__wasmbed"
	exportSP             = "__wasmbed_sp_left"
	exportFuel           = "__wasmbed_fuel"
	exportStackTrap      = "__wasmbed_stack_trap"
	exportGrowFailed     = "__wasmbed_grow_failed"
	exportTableGrow      = "__wasmbed_table_grow_failed"

	// runtimeModule is the import module of the runtime's own host
	// function, poll. Guest imports are checked against HostModule, so a
	// guest cannot import it.
	runtimeModule = "__wasmbed"
	runtimePoll   = "poll"

	slotBytes          = 8
	frameOverheadBytes = 16
	maxFrameCost       = 1 << 30

	// refillBatch is how much fuel a loop takes from $fuel at a time.
	refillBatch = 1024
	// initialStackLeft and initialFuel are the injected globals' values at
	// instantiation; the host sets both before every execution.
	initialStackLeft = 1 << 30
	initialFuel      = 1 << 20
)

type instrumented struct {
	bin []byte
	// maxFrame and minFrame are the largest and smallest frame costs.
	maxFrame, minFrame uint32
	usesGrow           bool
	// tableElements are the elements the tables may hold.
	tableElements uint32
}

// layout says where the instrumenter puts what it adds: after the
// imports, the poll import; after the defined functions, $slow, $refill,
// one table grow helper per table and, last, $grow if the code uses
// memory.grow; after the globals, the injected ones.
type layout struct {
	nImp               uint32 // imported functions of the original module
	poll               uint32
	slow, refill, grow uint32
	tgrow              uint32 // the first table grow helper
	gSP, gFuel, gTrap  uint32
	gGrow, gTGrow      uint32
	gTableElems        uint32 // not exported: the tables' elements
	types              []funcType
}

// injectedGlobals is how many globals the instrumenter adds, of which the
// first injectedExports are exported.
const (
	injectedGlobals = 6
	injectedExports = 5
)

// tableGrow returns the index of table t's grow helper.
func (l *layout) tableGrow(t uint32) uint32 { return l.tgrow + t }

// fn maps a function index of the original module to the instrumented
// one: the poll import shifts the defined functions by one.
func (l *layout) fn(x uint32) uint32 {
	if x >= l.nImp {
		return x + 1
	}
	return x
}

// typeIndex returns the index of the function type params -> results,
// adding it after the module's types if it has none.
func (l *layout) typeIndex(params, results []byte) uint32 {
	for i, t := range l.types {
		if t.equal(params, results) {
			return uint32(i)
		}
	}
	l.types = append(l.types, funcType{params: params, results: results})
	return uint32(len(l.types) - 1) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
}

// blockType encodes the type of a block without parameters producing
// results.
func (l *layout) blockType(results []byte) []byte {
	switch len(results) {
	case 0:
		return []byte{0x40}
	case 1:
		return []byte{results[0]}
	}
	return appendS64(nil, int64(l.typeIndex(nil, results)))
}

// instrument rewrites m for at most memLimitPages pages of memory.
func (m *module) instrument(memLimitPages uint32) (*instrumented, error) {
	nDef := uint32(len(m.bodies))    //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	nTables := uint32(len(m.tables)) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	gBase := m.nImpGlobals + m.nGlobals
	first := m.nImpFuncs + 1 + nDef // the first injected function
	l := &layout{
		nImp: m.nImpFuncs, poll: m.nImpFuncs,
		slow: first, refill: first + 1, tgrow: first + 2, grow: first + 2 + nTables,
		gSP: gBase, gFuel: gBase + 1, gTrap: gBase + 2, gGrow: gBase + 3, gTGrow: gBase + 4, gTableElems: gBase + 5,
		types: append([]funcType(nil), m.types...),
	}
	res := &instrumented{minFrame: maxFrameCost}
	bodies := make([][]byte, nDef)
	usesTableGrow := false
	for i := range nDef {
		w, err := m.walkFunction(i, l)
		if err != nil {
			return nil, err
		}
		bodies[i] = w.body
		res.maxFrame = max(res.maxFrame, w.cost)
		res.minFrame = min(res.minFrame, w.cost)
		res.usesGrow = res.usesGrow || w.grow
		usesTableGrow = usesTableGrow || w.tableGrow
	}
	if nDef == 0 {
		res.minFrame = 0
	}
	if m.memImported {
		return nil, modErr(ErrUnsupportedFeature, -1, "imported memory (memory limits apply to a memory the module defines)")
	}
	if res.usesGrow && !m.hasMem {
		return nil, modErr(ErrInvalidModule, -1, "memory.grow without a memory")
	}
	memSec, err := m.memorySection(memLimitPages)
	if err != nil {
		return nil, err
	}
	res.tableElements = m.tableElements(usesTableGrow)
	elemSec, err := m.elementSection(l)
	if err != nil {
		return nil, err
	}

	sections := map[byte][]byte{
		secImport:   m.importSection(l.typeIndex(nil, []byte{valI32})),
		secFunction: m.functionSection(l, res.usesGrow),
		secGlobal:   m.globalSection(l),
		secExport:   m.exportSection(l),
		secCode:     m.codeSection(bodies, l, res.usesGrow),
	}
	// Last: the walks and the sections above may have added types.
	if len(l.types) > len(m.types) {
		sections[secType] = m.typeSection(l)
	}
	if memSec != nil {
		sections[secMemory] = memSec
	}
	if elemSec != nil {
		sections[secElement] = elemSec
	}
	if m.info.HasStart {
		sections[secStart] = appendU32(nil, l.fn(m.startFunc))
	}
	res.bin = m.assemble(sections)
	return res, nil
}

// assemble writes the module: each known section in order, replaced by
// its rewritten payload where there is one.
func (m *module) assemble(sections map[byte][]byte) []byte {
	size := 8
	for _, p := range sections {
		size += len(p) + 6
	}
	for _, s := range m.sections {
		if _, ok := sections[s.id]; !ok {
			size += s.end - s.start + 6
		}
	}
	out := make([]byte, 0, size)
	out = append(out, m.b[:8]...)
	for _, id := range sectionOrder {
		if p, ok := sections[id]; ok {
			out = appendSection(out, id, p)
		} else if s := m.find(id); s != nil {
			out = appendSection(out, id, m.b[s.start:s.end])
		}
	}
	return out
}

// vectorBody returns the payload of section id after its count, and the
// count.
func (m *module) vectorBody(id byte) ([]byte, uint32) {
	r := m.payload(id)
	if r == nil {
		return nil, 0
	}
	n := r.u32()
	return r.b[r.off:], n
}

func (m *module) typeSection(l *layout) []byte {
	orig, n := m.vectorBody(secType)
	out := appendU32(nil, uint32(len(l.types))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	out = append(out, orig...)
	for _, t := range l.types[n:] {
		out = appendU32(append(out, 0x60), uint32(len(t.params))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		out = append(out, t.params...)
		out = appendU32(out, uint32(len(t.results))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		out = append(out, t.results...)
	}
	return out
}

func (m *module) importSection(pollType uint32) []byte {
	orig, n := m.vectorBody(secImport)
	out := appendU32(nil, n+1)
	out = append(out, orig...)
	out = appendName(out, runtimeModule)
	out = appendName(out, runtimePoll)
	return appendU32(append(out, byte(ExternFunc)), pollType)
}

func (m *module) functionSection(l *layout, grow bool) []byte {
	orig, n := m.vectorBody(secFunction)
	i32Type := l.typeIndex([]byte{valI32}, []byte{valI32})
	types := []uint32{l.typeIndex(nil, nil), i32Type}
	for _, t := range m.tables {
		types = append(types, l.typeIndex([]byte{t.elem, valI32}, []byte{valI32}))
	}
	if grow {
		types = append(types, i32Type)
	}
	out := appendU32(nil, n+uint32(len(types))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	out = append(out, orig...)
	for _, t := range types {
		out = appendU32(out, t)
	}
	return out
}

// memorySection caps the defined memory's maximum at limitPages.
func (m *module) memorySection(limitPages uint32) ([]byte, error) {
	if !m.info.HasMemory {
		return nil, nil
	}
	if m.mem.min > limitPages {
		return nil, &LimitError{Kind: LimitMemory, Requested: uint64(m.mem.min) * PageSize,
			Limit: uint64(limitPages) * PageSize, Detail: "declared minimum memory"}
	}
	newMax := limitPages
	if m.mem.hasMax && m.mem.max < newMax {
		newMax = m.mem.max
	}
	return appendU32(appendU32([]byte{1, 1}, m.mem.min), newMax), nil
}

// tableElements returns how many elements the tables may hold: their
// minimums, or for a module that grows tables, up to the bound (or their
// declared maximums, if lower).
func (m *module) tableElements(grows bool) uint32 {
	if !grows {
		return m.shape.TableElements
	}
	total := uint64(0)
	for _, t := range m.tables {
		if !t.lim.hasMax {
			return m.bounds.MaxTableElements
		}
		total += uint64(t.lim.max)
	}
	return uint32(min(total, uint64(m.bounds.MaxTableElements)))
}

func (m *module) elementSection(l *layout) ([]byte, error) {
	r := m.payload(secElement)
	if r == nil {
		return nil, nil
	}
	var out []byte
	m.walkElements(r, &out, l.fn)
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// globalSection appends the injected globals: $sp_left, $fuel,
// $stack_trap, $grow_failed, $table_grow_failed and $table_elements, all
// mutable i32.
func (m *module) globalSection(l *layout) []byte {
	out := appendU32(nil, m.nGlobals+injectedGlobals)
	if r := m.payload(secGlobal); r != nil {
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			out = append(out, r.byte(), r.byte())
			m.constExpr(r, &out, l.fn)
		}
	}
	for _, v := range []int64{initialStackLeft, initialFuel, 0, 0, 0, int64(m.shape.TableElements)} {
		out = appendS64(append(out, valI32, 1, 0x41), v)
		out = append(out, 0x0b)
	}
	return out
}

// exportSection redirects exported functions and exports the injected
// globals under reserved names.
func (m *module) exportSection(l *layout) []byte {
	out := appendU32(nil, uint32(len(m.info.Exports))+injectedExports) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	for _, e := range m.info.Exports {
		idx := e.Index
		if e.Kind == ExternFunc {
			idx = l.fn(idx)
		}
		out = appendName(out, e.Name)
		out = appendU32(append(out, byte(e.Kind)), idx)
	}
	for k, name := range []string{exportSP, exportFuel, exportStackTrap, exportGrowFailed, exportTableGrow} {
		out = appendName(out, name)
		out = appendU32(append(out, byte(ExternGlobal)), l.gSP+uint32(k))
	}
	return out
}

// codeSection writes the rewritten bodies and the helpers' bodies.
func (m *module) codeSection(bodies [][]byte, l *layout, grow bool) []byte {
	helpers := [][]byte{slowBody(l), refillBody(l)}
	for t := range m.tables {
		helpers = append(helpers, tableGrowBody(l, uint32(t), m.bounds.MaxTableElements))
	}
	if grow {
		helpers = append(helpers, growBody(l))
	}
	size := 5
	for _, b := range bodies {
		size += len(b) + 5
	}
	out := make([]byte, 0, size+128)
	out = appendU32(out, uint32(len(bodies)+len(helpers))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	for _, b := range append(bodies, helpers...) {
		out = appendU32(out, uint32(len(b))) //nolint:gosec // a length within a module, whose size is held under Bounds
		out = append(out, b...)
	}
	return out
}

// slowBody is $slow: () -> (). It traps after setting $stack_trap when
// $sp_left is negative, and when $fuel is, asks the host: poll returns
// the next quantum, or 0 to stop the execution (a trap).
func slowBody(l *layout) []byte {
	b := []byte{1, 1, valI32}
	b = appendU32(append(b, 0x23), l.gSP)
	b = append(b, 0x41, 0, 0x48, 0x04, 0x40, 0x41, 1, 0x24) // i32.const 0; i32.lt_s; if; i32.const 1; global.set
	b = appendU32(b, l.gTrap)
	b = append(b, 0x00, 0x0b) // unreachable; end
	b = appendU32(append(b, 0x23), l.gFuel)
	b = append(b, 0x41, 0, 0x48, 0x04, 0x40) // i32.const 0; i32.lt_s; if
	b = appendU32(append(b, 0x10), l.poll)
	b = append(b, 0x22, 0, 0x45, 0x04, 0x40, 0x00, 0x0b) // local.tee 0; i32.eqz; if; unreachable; end
	b = appendU32(append(b, 0x20, 0, 0x24), l.gFuel)     // local.get 0; global.set $fuel
	return append(b, 0x0b, 0x0b)
}

// refillBody is $refill: (n i32) -> i32. It takes n from $fuel (calling
// $slow when that goes negative) and returns n.
func refillBody(l *layout) []byte {
	b := []byte{1, 1, valI32}
	b = appendU32(append(b, 0x23), l.gFuel)
	b = appendU32(append(b, 0x20, 0, 0x6b, 0x22, 1, 0x24), l.gFuel) // local.get 0; i32.sub; local.tee 1; global.set
	b = append(b, 0x20, 1, 0x41, 0, 0x48, 0x04, 0x40)               // local.get 1; i32.const 0; i32.lt_s; if
	b = appendU32(append(b, 0x10), l.slow)
	return append(b, 0x0b, 0x20, 0, 0x0b) // end; local.get 0; end
}

// growBody is $grow: (delta i32) -> i32, memory.grow that sets
// $grow_failed when it returns -1.
func growBody(l *layout) []byte {
	b := []byte{1, 1, valI32, 0x20, 0, 0x40, 0, 0x22, 1, 0x41, 0x7f, 0x46, 0x04, 0x40, 0x41, 1, 0x24}
	b = appendU32(b, l.gGrow)
	return append(b, 0x0b, 0x20, 1, 0x0b)
}

// tableGrowBody is table t's grow helper: (ref, n i32) -> i32. It refuses
// a growth that would take the tables past bound elements, performs the
// others, and sets $table_grow_failed when it returns -1.
//
//	global.get $table_elements; i64.extend_i32_u; local.get 1; i64.extend_i32_u; i64.add
//	i64.const bound; i64.gt_u
//	if  i32.const 1; global.set $table_grow_failed; i32.const -1; return  end
//	local.get 0; local.get 1; table.grow t; local.tee 2; i32.const -1; i32.eq
//	if  i32.const 1; global.set $table_grow_failed
//	else  global.get $table_elements; local.get 1; i32.add; global.set $table_elements  end
//	local.get 2
func tableGrowBody(l *layout, t, bound uint32) []byte {
	b := []byte{1, 1, valI32}
	b = appendU32(append(b, 0x23), l.gTableElems)
	b = append(b, 0xad, 0x20, 1, 0xad, 0x7c, 0x42)
	b = appendS64(b, int64(bound))
	b = append(b, 0x56, 0x04, 0x40, 0x41, 1, 0x24)
	b = appendU32(b, l.gTGrow)
	b = append(b, 0x41, 0x7f, 0x0f, 0x0b)
	b = appendU32(append(b, 0x20, 0, 0x20, 1, 0xfc, 15), t)
	b = append(b, 0x22, 2, 0x41, 0x7f, 0x46, 0x04, 0x40, 0x41, 1, 0x24)
	b = appendU32(b, l.gTGrow)
	b = appendU32(append(b, 0x05, 0x23), l.gTableElems)
	b = appendU32(append(b, 0x20, 1, 0x6a, 0x24), l.gTableElems)
	return append(b, 0x0b, 0x20, 2, 0x0b)
}
