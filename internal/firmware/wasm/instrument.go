package wasm

// The instrumenter rewrites a checked module before wazero compiles it, so
// that the per-app limits hold whatever the engine (compiler or
// interpreter) does:
//
//   - Stack: every call of a defined function f adds f's frame cost to an
//     injected i32 global $sp, traps (after setting $stack_trap) when $sp
//     exceeds $sp_limit, calls f and subtracts the cost again. Direct calls
//     are wrapped inline at the call site; every other way into f (exports,
//     element segments, ref.func, global initialisers, hence call_indirect
//     and calls from the host) is redirected to a thunk doing the same
//     around a call of f. The limit is a global set at instantiation, so
//     one compiled module serves apps with different maxStackSize values.
//   - Memory: the memory section's maximum becomes min(declared max,
//     memoryLimit pages), and every memory.grow is replaced by a call to an
//     injected helper that performs the grow and raises $grow_failed when
//     it returns -1, so refused growth is reported even if the app copes.
//
// The injected globals are exported under reserved names (see
// reservedExportPrefix) for the host to read and reset; the original code
// cannot name them, since its global indices were validated before they
// existed.
//
// Frame cost of f, in bytes (see docs/app-abi.md):
//
//	cost(f)      = 8*(params + locals + maxOperandHeight + 2) + 16   // direct call
//	thunkCost(f) = cost(f) + 8*(params + max(params, results+2)) + 16 // through the thunk
//
// where maxOperandHeight is computed by simulating f's operand stack and
// the 2 extra slots cover the accounting sequence itself.

const (
	reservedExportPrefix = "__wasmbed"
	exportSP             = "__wasmbed_sp"
	exportSPLimit        = "__wasmbed_sp_limit"
	exportStackTrap      = "__wasmbed_stack_trap"
	exportGrowFailed     = "__wasmbed_grow_failed"

	slotBytes          = 8
	frameOverheadBytes = 16
	maxLocals          = 50000
	maxFrameCost       = 1 << 30
)

type instrumented struct {
	bin       []byte
	frameCost []uint32 // per defined function, through its thunk
	maxFrame  uint32
	usesGrow  bool
}

// accounting holds what the rewriting pass needs to emit stack
// accounting: the injected globals and every defined function's cost for
// a direct call and through its thunk.
type accounting struct {
	sp, limit, trap uint32
	cost, thunkCost []uint32
	nImp            uint32
}

// enter appends: $sp += cost; if $sp > $sp_limit { $stack_trap = 1; unreachable }.
func (a *accounting) enter(b []byte, cost uint32) []byte {
	b = appendU32(append(b, 0x23), a.sp)
	b = appendS64(append(b, 0x41), int64(cost))
	b = appendU32(append(b, 0x6a, 0x24), a.sp) // i32.add, global.set
	b = appendU32(append(b, 0x23), a.sp)
	b = appendU32(append(b, 0x23), a.limit)
	b = append(b, 0x4b, 0x04, 0x40, 0x41, 1, 0x24) // i32.gt_u, if, i32.const 1, global.set
	b = appendU32(b, a.trap)
	return append(b, 0x00, 0x0b) // unreachable, end
}

// leave appends: $sp -= cost.
func (a *accounting) leave(b []byte, cost uint32) []byte {
	b = appendU32(append(b, 0x23), a.sp)
	b = appendS64(append(b, 0x41), int64(cost))
	return appendU32(append(b, 0x6b, 0x24), a.sp) // i32.sub, global.set
}

type funcAnalysis struct {
	body     []byte // rewritten body, locals included, without size prefix
	maxH     uint32
	nLocals  uint64
	usesGrow bool
}

// instrument rewrites m for memLimitPages pages of memory at most.
func (m *module) instrument(memLimitPages uint32) (*instrumented, error) {
	nImp := m.nImpFuncs
	nDef := uint32(len(m.bodies))
	helperIdx := nImp + 2*nDef
	remap := func(x uint32) uint32 {
		if x >= nImp && x < nImp+nDef {
			return x + nDef
		}
		return x
	}

	// Pass 1 measures every function's frame; pass 2 rewrites the bodies
	// with the callees' costs inlined at direct call sites.
	gBase := m.nImpGlobal + m.nGlobals
	acc := &accounting{sp: gBase, limit: gBase + 1, trap: gBase + 2,
		cost: make([]uint32, nDef), thunkCost: make([]uint32, nDef), nImp: nImp}
	res := &instrumented{frameCost: acc.thunkCost}
	for i := uint32(0); i < nDef; i++ {
		fa, err := m.analyse(nImp+i, m.bodies[i], remap, helperIdx, nil)
		if err != nil {
			return nil, err
		}
		res.usesGrow = res.usesGrow || fa.usesGrow
		t := m.types[m.funcTypes[nImp+i]]
		np, nr := uint64(len(t.params)), uint64(len(t.results))
		// +2 slots: the accounting sequence at call sites pushes two values.
		cost := slotBytes*(np+fa.nLocals+uint64(fa.maxH)+2) + frameOverheadBytes
		thunk := cost + slotBytes*(np+max(np, nr+2)) + frameOverheadBytes
		if thunk > maxFrameCost {
			return nil, modErr(ErrLimit, m.bodies[i].start, "function %d needs a %d-byte frame", nImp+i, thunk)
		}
		acc.cost[i], acc.thunkCost[i] = uint32(cost), uint32(thunk)
		res.maxFrame = max(res.maxFrame, uint32(thunk))
	}
	bodies := make([][]byte, nDef)
	for i := uint32(0); i < nDef; i++ {
		fa, err := m.analyse(nImp+i, m.bodies[i], remap, helperIdx, acc)
		if err != nil {
			return nil, err
		}
		bodies[i] = fa.body
	}
	if res.usesGrow && !m.info.HasMemory {
		return nil, modErr(ErrInvalidModule, -1, "memory.grow without a memory")
	}

	// Type section: find or add (i32)->(i32) for the grow helper.
	var typeSec []byte
	growType := uint32(0)
	if res.usesGrow {
		found := false
		for i, t := range m.types {
			if t.equal([]byte{valI32}, []byte{valI32}) {
				growType, found = uint32(i), true
				break
			}
		}
		if !found {
			growType = uint32(len(m.types))
			typeSec = appendU32(typeSec, uint32(len(m.types)+1))
			if s := m.find(secType); s != nil {
				pr := &reader{b: m.b[:s.end], off: s.start}
				pr.u32()
				typeSec = append(typeSec, m.b[pr.off:s.end]...)
			}
			typeSec = append(typeSec, 0x60, 1, valI32, 1, valI32)
		}
	}

	// Function section: originals, thunks, helper.
	var funcSec []byte
	nFuncs := 2 * nDef
	if res.usesGrow {
		nFuncs++
	}
	funcSec = appendU32(funcSec, nFuncs)
	for k := 0; k < 2; k++ {
		for i := uint32(0); i < nDef; i++ {
			funcSec = appendU32(funcSec, m.funcTypes[nImp+i])
		}
	}
	if res.usesGrow {
		funcSec = appendU32(funcSec, growType)
	}

	// Memory section.
	var memSec []byte
	if m.info.HasMemory {
		lim := m.memLimits
		if lim.min > memLimitPages {
			return nil, &LimitError{Kind: LimitMemory, Requested: uint64(lim.min) * PageSize,
				Limit: uint64(memLimitPages) * PageSize, Detail: "declared minimum memory"}
		}
		newMax := memLimitPages
		if lim.hasMax && lim.max < newMax {
			newMax = lim.max
		}
		memSec = appendU32(appendU32(append(memSec, 1, 1), lim.min), newMax)
	}

	// Global section: originals (ref.func remapped) + injected globals.
	var globalSec []byte
	globalSec = appendU32(globalSec, m.nGlobals+4)
	if s := m.find(secGlobal); s != nil {
		gr := &reader{b: m.b[:s.end], off: s.start}
		n := gr.u32()
		for i := uint32(0); i < n && gr.err == nil; i++ {
			globalSec = append(globalSec, gr.byte(), gr.byte())
			m.constExpr(gr, &globalSec, remap)
		}
		if gr.err != nil {
			return nil, gr.err
		}
	}
	for k := 0; k < 4; k++ {
		globalSec = append(globalSec, valI32, 1, 0x41, 0, 0x0b) // (mut i32) (i32.const 0)
	}
	gGrow := gBase + 3

	// Export section: originals (functions redirected) + injected globals.
	var exportSec []byte
	exportSec = appendU32(exportSec, uint32(len(m.info.Exports))+4)
	for _, e := range m.info.Exports {
		idx := e.Index
		if e.Kind == ExternFunc {
			idx = remap(idx)
		}
		exportSec = appendName(exportSec, e.Name)
		exportSec = appendU32(append(exportSec, byte(e.Kind)), idx)
	}
	for k, name := range []string{exportSP, exportSPLimit, exportStackTrap, exportGrowFailed} {
		exportSec = appendName(exportSec, name)
		exportSec = appendU32(append(exportSec, byte(ExternGlobal)), gBase+uint32(k))
	}

	// Element section.
	var elemSec []byte
	if s := m.find(secElement); s != nil {
		var err error
		if elemSec, err = m.rewriteElements(s, remap); err != nil {
			return nil, err
		}
	}

	// Code section: rewritten bodies, thunks, helper.
	var codeSec []byte
	codeSec = appendU32(codeSec, nFuncs)
	for _, b := range bodies {
		codeSec = appendU32(codeSec, uint32(len(b)))
		codeSec = append(codeSec, b...)
	}
	var thunk []byte
	for i := uint32(0); i < nDef; i++ {
		t := m.types[m.funcTypes[nImp+i]]
		cost := acc.thunkCost[i]
		thunk = acc.enter(append(thunk[:0], 0), cost) // no locals
		for p := range t.params {
			thunk = appendU32(append(thunk, 0x20), uint32(p))
		}
		thunk = appendU32(append(thunk, 0x10), nImp+i)
		thunk = append(acc.leave(thunk, cost), 0x0b)
		codeSec = appendU32(codeSec, uint32(len(thunk)))
		codeSec = append(codeSec, thunk...)
	}
	if res.usesGrow {
		h := []byte{1, 1, valI32, 0x20, 0, 0x40, 0, 0x22, 1, 0x41, 0x7f, 0x46, 0x04, 0x40, 0x41, 1, 0x24}
		h = appendU32(h, gGrow)
		h = append(h, 0x0b, 0x20, 1, 0x0b)
		codeSec = appendU32(codeSec, uint32(len(h)))
		codeSec = append(codeSec, h...)
	}

	repl := map[byte][]byte{secGlobal: globalSec, secExport: exportSec}
	if typeSec != nil {
		repl[secType] = typeSec
	}
	if nDef > 0 {
		repl[secFunction] = funcSec
		repl[secCode] = codeSec
	}
	if memSec != nil {
		repl[secMemory] = memSec
	}
	if elemSec != nil {
		repl[secElement] = elemSec
	}

	out := make([]byte, 0, len(m.b)+len(codeSec)/2+256)
	out = append(out, m.b[:8]...)
	emit := func(id byte, payload []byte) {
		out = append(out, id)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
	}
	emitted := map[byte]bool{}
	// emitMissing writes the replacement sections the input lacks whose
	// rank is below rank.
	emitMissing := func(rank int) {
		for _, id := range []byte{secType, secGlobal, secExport} {
			if p, ok := repl[id]; ok && !emitted[id] && m.find(id) == nil && sectionRank[id] < rank {
				emit(id, p)
				emitted[id] = true
			}
		}
	}
	for _, s := range m.sections {
		if s.id == secCustom {
			if s.name == "name" || s.name == abiSectionName {
				emit(secCustom, m.b[s.start:s.end])
			}
			continue
		}
		emitMissing(sectionRank[s.id])
		if p, ok := repl[s.id]; ok {
			emit(s.id, p)
		} else {
			emit(s.id, m.b[s.start:s.end])
		}
		emitted[s.id] = true
	}
	emitMissing(1 << 30)
	res.bin = out
	return res, nil
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

func (m *module) find(id byte) *section {
	for i := range m.sections {
		if m.sections[i].id == id {
			return &m.sections[i]
		}
	}
	return nil
}

func (m *module) rewriteElements(s *section, remap func(uint32) uint32) ([]byte, error) {
	r := &reader{b: m.b[:s.end], off: s.start}
	var out []byte
	n := r.count(2)
	out = appendU32(out, n)
	funcIdxVec := func() {
		k := r.count(1)
		out = appendU32(out, k)
		for j := uint32(0); j < k && r.err == nil; j++ {
			x := r.u32()
			if r.err == nil && x >= uint32(len(m.funcTypes)) {
				r.fail(ErrInvalidModule, "element function index %d out of range", x)
			}
			out = appendU32(out, remap(x))
		}
	}
	exprVec := func() {
		k := r.count(1)
		out = appendU32(out, k)
		for j := uint32(0); j < k && r.err == nil; j++ {
			m.constExpr(r, &out, remap)
		}
	}
	for i := uint32(0); i < n && r.err == nil; i++ {
		flag := r.u32()
		out = appendU32(out, flag)
		switch flag {
		case 0:
			m.constExpr(r, &out, nil)
			funcIdxVec()
		case 1, 3:
			out = append(out, r.byte())
			funcIdxVec()
		case 2:
			out = appendU32(out, r.u32())
			m.constExpr(r, &out, nil)
			out = append(out, r.byte())
			funcIdxVec()
		case 4:
			m.constExpr(r, &out, nil)
			exprVec()
		case 5, 7:
			out = append(out, r.byte())
			exprVec()
		case 6:
			out = appendU32(out, r.u32())
			m.constExpr(r, &out, nil)
			out = append(out, r.byte())
			exprVec()
		default:
			r.fail(ErrInvalidModule, "element segment flag %d", flag)
		}
	}
	if r.err == nil && r.off != s.end {
		r.fail(ErrInvalidModule, "element section trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

type ctrlFrame struct {
	start, params, results uint32
	unreachable            bool
}

// analyse walks the body of function fidx: it computes the maximum
// operand-stack height and the number of locals, and returns the body with
// calls and ref.func redirected through remap and memory.grow replaced by
// a call to helperIdx.
//
// With acc nil (measuring pass) the returned body is meaningless. With acc,
// direct calls of defined functions are wrapped inline in the callee's
// accounting (as a thunk would, without the extra call).
func (m *module) analyse(fidx uint32, body section, remap func(uint32) uint32, helperIdx uint32, acc *accounting) (*funcAnalysis, error) {
	r := &reader{b: m.b[:body.end], off: body.start}
	fa := &funcAnalysis{}
	nDecl := r.count(2)
	for i := uint32(0); i < nDecl && r.err == nil; i++ {
		fa.nLocals += uint64(r.u32())
		vt := r.byte()
		if r.err == nil && !isValType(vt) {
			r.fail(ErrUnsupportedFeature, "function %d: local of type %#x", fidx, vt)
		}
		if fa.nLocals > maxLocals {
			r.fail(ErrLimit, "function %d declares more than %d locals", fidx, maxLocals)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]byte, 0, body.end-body.start+8)
	out = append(out, m.b[body.start:r.off]...)
	pending := r.off
	subst := func(at int, op byte, idx uint32) {
		out = append(out, m.b[pending:at]...)
		out = appendU32(append(out, op), idx)
		pending = r.off
	}

	ft := m.types[m.funcTypes[fidx]]
	stack := []ctrlFrame{{results: uint32(len(ft.results))}}
	var h uint32
	push := func(n uint32) {
		h += n
		fa.maxH = max(fa.maxH, h)
	}
	pop := func(n uint32) {
		f := &stack[len(stack)-1]
		switch {
		case h-f.start >= n:
			h -= n
		case f.unreachable:
			h = f.start
		default:
			r.fail(ErrInvalidModule, "function %d: operand stack underflow", fidx)
		}
	}
	unreach := func() {
		f := &stack[len(stack)-1]
		h = f.start
		f.unreachable = true
	}
	blockType := func() (uint32, uint32) {
		if r.eof() {
			r.fail(ErrInvalidModule, "unexpected end of input")
			return 0, 0
		}
		c := r.b[r.off]
		switch {
		case c == 0x40:
			r.off++
			return 0, 0
		case isValType(c):
			r.off++
			return 0, 1
		case c == valV128:
			r.fail(ErrUnsupportedFeature, "function %d: v128 (SIMD)", fidx)
			return 0, 0
		}
		ti := r.signed(33)
		if r.err == nil && (ti < 0 || ti >= int64(len(m.types))) {
			r.fail(ErrInvalidModule, "function %d: block type %d out of range", fidx, ti)
			return 0, 0
		}
		if r.err != nil {
			return 0, 0
		}
		t := m.types[ti]
		return uint32(len(t.params)), uint32(len(t.results))
	}
	memarg := func() {
		if a := r.u32(); a >= 64 {
			r.fail(ErrUnsupportedFeature, "function %d: memory index in memarg (multiple memories)", fidx)
		}
		r.u32()
	}
	memIdx0 := func() {
		if b := r.byte(); b != 0 {
			r.fail(ErrUnsupportedFeature, "function %d: memory index %d (multiple memories)", fidx, b)
		}
	}
	// Indices are checked against the original module: after
	// instrumentation, indices just past the original ranges name the
	// injected globals, thunks and helper, which guest code must not reach.
	globalIdx := func() {
		if g := r.u32(); r.err == nil && g >= m.nImpGlobal+m.nGlobals {
			r.fail(ErrInvalidModule, "function %d: global index %d out of range", fidx, g)
		}
	}
	funcRef := func() uint32 {
		x := r.u32()
		if r.err == nil && x >= uint32(len(m.funcTypes)) {
			r.fail(ErrInvalidModule, "function %d: function index %d out of range", fidx, x)
			return 0
		}
		return x
	}

	for r.err == nil {
		if r.eof() {
			r.fail(ErrInvalidModule, "function %d: body without end", fidx)
			break
		}
		at := r.off
		op := r.byte()
		switch {
		case op == 0x00: // unreachable
			unreach()
		case op == 0x01: // nop
		case op == 0x02 || op == 0x03: // block, loop
			p, res := blockType()
			pop(p)
			stack = append(stack, ctrlFrame{start: h, params: p, results: res})
			push(p)
		case op == 0x04: // if
			p, res := blockType()
			pop(1)
			pop(p)
			stack = append(stack, ctrlFrame{start: h, params: p, results: res})
			push(p)
		case op == 0x05: // else
			f := &stack[len(stack)-1]
			h = f.start + f.params
			f.unreachable = false
		case op == 0x0b: // end
			f := stack[len(stack)-1]
			if len(stack) == 1 {
				if r.off != body.end {
					r.fail(ErrInvalidModule, "function %d: code after end", fidx)
					break
				}
				out = append(out, m.b[pending:r.off]...)
				fa.body = out
				return fa, nil
			}
			stack = stack[:len(stack)-1]
			h = f.start
			push(f.results)
		case op == 0x0c: // br
			r.u32()
			unreach()
		case op == 0x0d: // br_if
			r.u32()
			pop(1)
		case op == 0x0e: // br_table
			n := r.count(1)
			for i := uint32(0); i <= n && r.err == nil; i++ {
				r.u32()
			}
			pop(1)
			unreach()
		case op == 0x0f: // return
			unreach()
		case op == 0x10: // call
			x := funcRef()
			if r.err != nil {
				break
			}
			t := m.types[m.funcTypes[x]]
			pop(uint32(len(t.params)))
			push(uint32(len(t.results)))
			if y := remap(x); y != x && acc != nil {
				cost := acc.cost[x-acc.nImp]
				out = acc.enter(append(out, m.b[pending:at]...), cost)
				out = acc.leave(appendU32(append(out, 0x10), x), cost)
				pending = r.off
			}
		case op == 0x11: // call_indirect
			ti := r.u32()
			r.u32()
			if r.err == nil && ti >= uint32(len(m.types)) {
				r.fail(ErrInvalidModule, "function %d: type index %d out of range", fidx, ti)
			}
			if r.err != nil {
				break
			}
			t := m.types[ti]
			pop(1)
			pop(uint32(len(t.params)))
			push(uint32(len(t.results)))
		case op == 0x12 || op == 0x13:
			r.fail(ErrUnsupportedFeature, "function %d: tail calls", fidx)
		case op == 0x1a: // drop
			pop(1)
		case op == 0x1b: // select
			pop(3)
			push(1)
		case op == 0x1c: // select t*
			n := r.count(1)
			r.bytes(n)
			pop(3)
			push(1)
		case op == 0x20: // local.get
			r.u32()
			push(1)
		case op == 0x21: // local.set
			r.u32()
			pop(1)
		case op == 0x22: // local.tee
			r.u32()
			pop(1)
			push(1)
		case op == 0x23: // global.get
			globalIdx()
			push(1)
		case op == 0x24: // global.set
			globalIdx()
			pop(1)
		case op == 0x25: // table.get
			r.u32()
			pop(1)
			push(1)
		case op == 0x26: // table.set
			r.u32()
			pop(2)
		case op >= 0x28 && op <= 0x35: // loads
			memarg()
			pop(1)
			push(1)
		case op >= 0x36 && op <= 0x3e: // stores
			memarg()
			pop(2)
		case op == 0x3f: // memory.size
			memIdx0()
			push(1)
		case op == 0x40: // memory.grow
			memIdx0()
			pop(1)
			push(1)
			fa.usesGrow = true
			subst(at, 0x10, helperIdx)
		case op == 0x41:
			r.signed(32)
			push(1)
		case op == 0x42:
			r.signed(64)
			push(1)
		case op == 0x43:
			r.bytes(4)
			push(1)
		case op == 0x44:
			r.bytes(8)
			push(1)
		case op == 0x45 || op == 0x50: // eqz
			pop(1)
			push(1)
		case op >= 0x46 && op <= 0x4f, op >= 0x51 && op <= 0x66: // comparisons
			pop(2)
			push(1)
		case op >= 0x67 && op <= 0x69, op >= 0x79 && op <= 0x7b, op >= 0x8b && op <= 0x91,
			op >= 0x99 && op <= 0x9f, op >= 0xa7 && op <= 0xc4: // unary, conversions, sign extension
			pop(1)
			push(1)
		case op >= 0x6a && op <= 0x78, op >= 0x7c && op <= 0x8a, op >= 0x92 && op <= 0x98,
			op >= 0xa0 && op <= 0xa6: // binary
			pop(2)
			push(1)
		case op == 0xd0: // ref.null
			if t := r.byte(); r.err == nil && t != valFuncref && t != valExternref {
				r.fail(ErrInvalidModule, "function %d: ref.null type %#x", fidx, t)
			}
			push(1)
		case op == 0xd1: // ref.is_null
			pop(1)
			push(1)
		case op == 0xd2: // ref.func
			x := funcRef()
			push(1)
			if y := remap(x); r.err == nil && y != x {
				subst(at, 0xd2, y)
			}
		case op == 0xfc:
			m.analyseFC(r, fidx, pop, push, memIdx0)
		case op == 0xfd:
			r.fail(ErrUnsupportedFeature, "function %d: SIMD instructions", fidx)
		case op == 0xfe:
			r.fail(ErrUnsupportedFeature, "function %d: atomic instructions (threads)", fidx)
		default:
			r.fail(ErrInvalidModule, "function %d: unknown opcode %#x", fidx, op)
		}
	}
	return nil, r.err
}

func (m *module) analyseFC(r *reader, fidx uint32, pop, push func(uint32), memIdx0 func()) {
	sub := r.u32()
	switch sub {
	case 0, 1, 2, 3, 4, 5, 6, 7: // trunc_sat
		pop(1)
		push(1)
	case 8: // memory.init
		r.u32()
		memIdx0()
		pop(3)
	case 9: // data.drop
		r.u32()
	case 10: // memory.copy
		memIdx0()
		memIdx0()
		pop(3)
	case 11: // memory.fill
		memIdx0()
		pop(3)
	case 12: // table.init
		r.u32()
		r.u32()
		pop(3)
	case 13: // elem.drop
		r.u32()
	case 14: // table.copy
		r.u32()
		r.u32()
		pop(3)
	case 15: // table.grow
		r.u32()
		pop(2)
		push(1)
	case 16: // table.size
		r.u32()
		push(1)
	case 17: // table.fill
		r.u32()
		pop(3)
	default:
		r.fail(ErrUnsupportedFeature, "function %d: opcode 0xfc %d", fidx, sub)
	}
}
