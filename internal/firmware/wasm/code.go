package wasm

// This file walks and rewrites one function body for the instrumenter
// (see instrument.go for the scheme). The walk simulates the operand stack
// to measure the frame, checks every index the rewriting relies on against
// the original module, applies the per-function Bounds, counts the
// instructions of each loop-free region for the time checks, and rewrites
// calls, ref.func, return, loop headers and memory.grow.

// ctrlFrame is one open block, loop, if or the function itself.
type ctrlFrame struct {
	op                     byte // 0x02 block, 0x03 loop, 0x04 if, 0 the function
	start, params, results uint32
	unreachable, sawElse   bool
	// insns counts the instructions of a loop's own region (nested loops
	// excluded); weightAt and batchAt are the offsets in funcWalk.out of the
	// loop check's patched weight and batch.
	insns             uint32
	weightAt, batchAt int
}

// funcWalk is the state of one function's walk.
type funcWalk struct {
	m    *module
	l    *layout
	fidx uint32 // index in the original module
	ft   funcType

	r       reader
	out     []byte // rewritten code after the locals, final end included
	pending int    // input up to here is already in out (or replaced)
	decls   []byte // the original local declarations, count excluded
	nDecl   uint32
	locals  uint64 // declared locals, parameters excluded

	stack    []ctrlFrame
	loops    []int // indices in stack of the open loops
	h, maxH  uint32
	fnInsns  uint32 // instructions outside loops
	loopWork uint32 // the loops' weights together
	branches uint64

	usesGrow, usesTableGrow bool
}

// Injected locals, after the parameters and declared locals: two
// temporaries for the prologue and the loop-check fuel batch.
const injectedLocals = 3

// localWork weighs a function's locals against its branches in the
// compile work (see Bounds.MaxCompileWork): with l locals live across
// branches, wazero's compiler spends about 18×l times as much per branch
// as a branch costs with none.
const localWork = 18

// walked is the result of walking one function.
type walked struct {
	body            []byte // complete rewritten body, without its size
	cost            uint32 // frame cost in bytes
	grow, tableGrow bool   // the code uses memory.grow, table.grow
}

func (m *module) walkFunction(i uint32, l *layout) (*walked, error) {
	body := m.bodies[i]
	fidx := m.nImpFuncs + i
	w := &funcWalk{m: m, l: l, fidx: fidx, ft: m.types[m.funcTypes[fidx]],
		r: reader{b: m.b[:body.end], off: body.start}}
	w.readLocals()
	if w.r.err != nil {
		return nil, w.r.err
	}
	w.out = make([]byte, 0, body.end-w.r.off+64)
	w.pending = w.r.off
	w.stack = append(w.stack, ctrlFrame{results: uint32(len(w.ft.results))}) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	// The function's own prologue check and result block.
	w.branches = 2
	for {
		if w.r.err != nil {
			return nil, w.r.err
		}
		if w.r.eof() {
			return nil, modErr(ErrInvalidModule, w.r.off, "function %d: body without end", fidx)
		}
		at := w.r.off
		op := w.r.byte()
		w.countInsn()
		if w.step(at, op) {
			break
		}
	}
	if w.r.err != nil {
		return nil, w.r.err
	}
	return w.finish()
}

func (w *funcWalk) readLocals() {
	r := &w.r
	w.nDecl = r.count(2, "", 0)
	start := r.off
	for i := uint32(0); i < w.nDecl && r.err == nil; i++ {
		w.locals += uint64(r.u32())
		if vt := r.byte(); r.err == nil && !isValType(vt) {
			r.fail(ErrUnsupportedFeature, "function %d: local of type %#x", w.fidx, vt)
		}
		if r.err == nil && w.locals > uint64(w.m.bounds.MaxLocals) { //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
			r.failBound(BoundLocals, w.locals, uint64(w.m.bounds.MaxLocals)) //nolint:gosec // bounds are non-negative (Bounds.WithDefaults)
		}
	}
	if r.err != nil {
		return
	}
	w.decls = r.b[start:r.off]
	s := &w.m.shape
	s.MaxLocals = max(s.MaxLocals, int(w.locals)) //nolint:gosec // w.locals is at most MaxLocals, checked above
	s.TotalLocals += int(w.locals)                //nolint:gosec // w.locals is at most MaxLocals, checked above
	if s.TotalLocals > w.m.bounds.MaxTotalLocals {
		r.failBound(BoundTotalLocals, uint64(s.TotalLocals), uint64(w.m.bounds.MaxTotalLocals)) //nolint:gosec // bounds and counts are non-negative
	}
}

// lf is the loop-check fuel batch local; t and u the prologue temporaries.
func (w *funcWalk) localT() uint32  { return uint32(len(w.ft.params)) + uint32(w.locals) } //nolint:gosec // w.locals is at most MaxLocals, checked in locals
func (w *funcWalk) localU() uint32  { return w.localT() + 1 }
func (w *funcWalk) localLF() uint32 { return w.localT() + 2 }

func (w *funcWalk) countInsn() {
	if n := len(w.loops); n > 0 {
		w.stack[w.loops[n-1]].insns++
		return
	}
	w.fnInsns++
}

// step handles one instruction; it reports whether it was the function's
// final end.
func (w *funcWalk) step(at int, op byte) bool {
	switch {
	case op <= 0x11:
		return w.control(at, op)
	case op == 0x12 || op == 0x13:
		w.r.fail(ErrUnsupportedFeature, "function %d: tail calls", w.fidx)
	case op >= 0x1a && op <= 0x1c:
		w.parametric(op)
	case op >= 0x20 && op <= 0x26:
		w.variable(op)
	case op >= 0x28 && op <= 0x40:
		w.memory(at, op)
	case op >= 0x41 && op <= 0xc4:
		w.numeric(op)
	case op >= 0xd0 && op <= 0xd2:
		w.reference(at, op)
	case op == 0xfc:
		w.prefixed(at)
	case op == 0xfd:
		w.r.fail(ErrUnsupportedFeature, "function %d: SIMD instructions", w.fidx)
	case op == 0xfe:
		w.r.fail(ErrUnsupportedFeature, "function %d: atomic instructions (threads)", w.fidx)
	default:
		w.r.fail(ErrInvalidModule, "function %d: unknown opcode %#x", w.fidx, op)
	}
	return false
}

func (w *funcWalk) push(n uint32) {
	w.h += n
	w.maxH = max(w.maxH, w.h)
}

func (w *funcWalk) pop(n uint32) {
	f := &w.stack[len(w.stack)-1]
	switch {
	case w.h-f.start >= n:
		w.h -= n
	case f.unreachable:
		w.h = f.start
	default:
		w.r.fail(ErrInvalidModule, "function %d: operand stack underflow", w.fidx)
	}
}

func (w *funcWalk) unreachable() {
	f := &w.stack[len(w.stack)-1]
	w.h = f.start
	f.unreachable = true
}

// replace copies the input up to at and then b, and skips the input up to
// the cursor.
func (w *funcWalk) replace(at int, b ...byte) {
	w.out = append(w.out, w.r.b[w.pending:at]...)
	w.out = append(w.out, b...)
	w.pending = w.r.off
}

// replaceIndexed is replace with an instruction taking one u32 immediate.
func (w *funcWalk) replaceIndexed(at int, op byte, idx uint32) {
	w.replace(at, appendU32([]byte{op}, idx)...)
}

// flush copies the input up to the cursor.
func (w *funcWalk) flush() {
	w.out = append(w.out, w.r.b[w.pending:w.r.off]...)
	w.pending = w.r.off
}

// label reads a branch target and checks it names an open frame (the
// function's own included): the instrumenter wraps the body in one more
// block, so a label one past the function would otherwise become valid.
func (w *funcWalk) label() {
	l := w.r.u32()
	if w.r.err == nil && uint64(l) >= uint64(len(w.stack)) {
		w.r.fail(ErrInvalidModule, "function %d: branch depth %d out of range", w.fidx, l)
	}
}

func (w *funcWalk) branch(n uint64) {
	w.branches += n
}

func (w *funcWalk) control(at int, op byte) bool {
	r := &w.r
	switch op {
	case 0x00: // unreachable
		w.unreachable()
	case 0x01: // nop
	case 0x02, 0x03, 0x04: // block, loop, if
		p, res := w.blockType()
		if op == 0x04 {
			w.pop(1)
		}
		w.pop(p)
		w.stack = append(w.stack, ctrlFrame{op: op, start: w.h, params: p, results: res})
		w.push(p)
		w.branch(1)
		if n := len(w.stack) - 1; n > w.m.bounds.MaxNesting {
			r.failBound(BoundNesting, uint64(n), uint64(w.m.bounds.MaxNesting)) //nolint:gosec // a stack depth and a bound, both non-negative
		}
		w.m.shape.MaxNesting = max(w.m.shape.MaxNesting, len(w.stack)-1)
		if op == 0x03 && r.err == nil {
			w.loopHeader()
		}
	case 0x05: // else
		f := &w.stack[len(w.stack)-1]
		if f.op != 0x04 || f.sawElse {
			r.fail(ErrInvalidModule, "function %d: else without if", w.fidx)
			break
		}
		w.h = f.start + f.params
		f.unreachable, f.sawElse = false, true
		w.branch(1)
	case 0x0b: // end
		return w.end()
	case 0x0c: // br
		w.label()
		w.unreachable()
		w.branch(1)
	case 0x0d: // br_if
		w.label()
		w.pop(1)
		w.branch(1)
	case 0x0e: // br_table
		n := r.count(1, BoundBranchTable, w.m.bounds.MaxBranchTable)
		for i := uint32(0); i <= n && r.err == nil; i++ {
			w.label()
		}
		w.m.shape.MaxBranchTable = max(w.m.shape.MaxBranchTable, int(n))
		w.pop(1)
		w.unreachable()
		w.branch(uint64(n) + 1)
	case 0x0f: // return: a branch to the result block around the body
		w.replaceIndexed(at, 0x0c, uint32(len(w.stack)-1)) //nolint:gosec // nesting is at most MaxNesting
		w.unreachable()
		w.branch(1)
	case 0x10: // call
		x := w.funcIdx()
		if r.err != nil {
			break
		}
		t := w.m.types[w.m.funcTypes[x]]
		w.pop(uint32(len(t.params)))   //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		w.push(uint32(len(t.results))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		if y := w.l.fn(x); y != x {
			w.replaceIndexed(at, 0x10, y)
		}
	case 0x11: // call_indirect
		ti, table := r.u32(), r.u32()
		if r.err == nil && ti >= uint32(len(w.m.types)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
			r.fail(ErrInvalidModule, "function %d: type index %d out of range", w.fidx, ti)
		}
		if r.err == nil && table >= uint32(len(w.m.tables)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
			r.fail(ErrInvalidModule, "function %d: table %d out of range", w.fidx, table)
		}
		if r.err != nil {
			break
		}
		t := w.m.types[ti]
		w.pop(1)
		w.pop(uint32(len(t.params)))   //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		w.push(uint32(len(t.results))) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
	default: // 0x06..0x0a: exception handling
		r.fail(ErrUnsupportedFeature, "function %d: opcode %#x (exception handling)", w.fidx, op)
	}
	return false
}

// end closes the innermost frame; it reports whether it closed the
// function.
func (w *funcWalk) end() bool {
	f := w.stack[len(w.stack)-1]
	if len(w.stack) == 1 {
		if w.r.off != len(w.r.b) {
			w.r.fail(ErrInvalidModule, "function %d: code after end", w.fidx)
			return false
		}
		w.flush()
		return true
	}
	if f.op == 0x03 {
		w.patchLoopWeight(f)
		w.loops = w.loops[:len(w.loops)-1]
	}
	w.stack = w.stack[:len(w.stack)-1]
	w.h = f.start
	w.push(f.results)
	return false
}

// blockType reads a block type and returns its parameter and result
// counts.
func (w *funcWalk) blockType() (params, results uint32) {
	r := &w.r
	c, ok := r.peek()
	switch {
	case !ok:
		r.fail(ErrInvalidModule, "unexpected end of input")
		return 0, 0
	case c == 0x40:
		r.off++
		return 0, 0
	case isValType(c):
		r.off++
		return 0, 1
	case c == valV128:
		r.fail(ErrUnsupportedFeature, "function %d: v128 (SIMD)", w.fidx)
		return 0, 0
	}
	ti := r.signed(33)
	if r.err == nil && (ti < 0 || ti >= int64(len(w.m.types))) {
		r.fail(ErrInvalidModule, "function %d: block type %d out of range", w.fidx, ti)
	}
	if r.err != nil {
		return 0, 0
	}
	t := w.m.types[ti]
	return uint32(len(t.params)), uint32(len(t.results)) //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
}

// funcIdx reads a function index and checks it against the original
// module: indices past it name what the instrumenter adds.
func (w *funcWalk) funcIdx() uint32 {
	x := w.r.u32()
	if w.r.err == nil && x >= uint32(len(w.m.funcTypes)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		w.r.fail(ErrInvalidModule, "function %d: function index %d out of range", w.fidx, x)
		return 0
	}
	return x
}

// globalIdx reads a global index and checks it against the original
// module, so guest code cannot name the injected globals.
func (w *funcWalk) globalIdx() {
	if g := w.r.u32(); w.r.err == nil && g >= w.m.nImpGlobals+w.m.nGlobals {
		w.r.fail(ErrInvalidModule, "function %d: global index %d out of range", w.fidx, g)
	}
}

func (w *funcWalk) tableIdx() uint32 {
	t := w.r.u32()
	if w.r.err == nil && t >= uint32(len(w.m.tables)) { //nolint:gosec // a count of a decoded module, read as a u32 and held under its Bounds
		w.r.fail(ErrInvalidModule, "function %d: table %d out of range", w.fidx, t)
		return 0
	}
	return t
}

func (w *funcWalk) parametric(op byte) {
	switch op {
	case 0x1a: // drop
		w.pop(1)
	case 0x1b: // select
		w.pop(3)
		w.push(1)
	case 0x1c: // select t*
		n := w.r.count(1, "", 0)
		w.r.bytes(n)
		w.pop(3)
		w.push(1)
	}
}

// localIdx reads a local index and checks it against the function's own
// parameters and locals, so guest code cannot name the injected locals.
func (w *funcWalk) localIdx() {
	if x := w.r.u32(); w.r.err == nil && uint64(x) >= uint64(len(w.ft.params))+w.locals {
		w.r.fail(ErrInvalidModule, "function %d: local index %d out of range", w.fidx, x)
	}
}

func (w *funcWalk) variable(op byte) {
	switch op {
	case 0x20: // local.get
		w.localIdx()
		w.push(1)
	case 0x21: // local.set
		w.localIdx()
		w.pop(1)
	case 0x22: // local.tee
		w.localIdx()
		w.pop(1)
		w.push(1)
	case 0x23: // global.get
		w.globalIdx()
		w.push(1)
	case 0x24: // global.set
		w.globalIdx()
		w.pop(1)
	case 0x25: // table.get
		w.tableIdx()
		w.pop(1)
		w.push(1)
	case 0x26: // table.set
		w.tableIdx()
		w.pop(2)
	}
}

func (w *funcWalk) memArg() {
	if a := w.r.u32(); a >= 64 {
		w.r.fail(ErrUnsupportedFeature, "function %d: memory index in memarg (multiple memories)", w.fidx)
	}
	w.r.u32()
}

func (w *funcWalk) memIdx0() {
	if b := w.r.byte(); b != 0 {
		w.r.fail(ErrUnsupportedFeature, "function %d: memory index %d (multiple memories)", w.fidx, b)
	}
}

func (w *funcWalk) memory(at int, op byte) {
	switch {
	case op <= 0x35: // loads
		w.memArg()
		w.pop(1)
		w.push(1)
	case op <= 0x3e: // stores
		w.memArg()
		w.pop(2)
	case op == 0x3f: // memory.size
		w.memIdx0()
		w.push(1)
	case op == 0x40: // memory.grow: a call of the grow helper
		w.memIdx0()
		w.pop(1)
		w.push(1)
		w.usesGrow = true
		w.replaceIndexed(at, 0x10, w.l.grow)
	}
}

func (w *funcWalk) numeric(op byte) {
	switch {
	case op == 0x41:
		w.r.signed(32)
		w.push(1)
	case op == 0x42:
		w.r.signed(64)
		w.push(1)
	case op == 0x43:
		w.r.bytes(4)
		w.push(1)
	case op == 0x44:
		w.r.bytes(8)
		w.push(1)
	case op == 0x45 || op == 0x50: // eqz
		w.pop(1)
		w.push(1)
	case op >= 0x46 && op <= 0x4f, op >= 0x51 && op <= 0x66: // comparisons
		w.pop(2)
		w.push(1)
	case op >= 0x67 && op <= 0x69, op >= 0x79 && op <= 0x7b, op >= 0x8b && op <= 0x91,
		op >= 0x99 && op <= 0x9f, op >= 0xa7: // unary, conversions, sign extension
		w.pop(1)
		w.push(1)
	default: // binary: 0x6a..0x78, 0x7c..0x8a, 0x92..0x98, 0xa0..0xa6
		w.pop(2)
		w.push(1)
	}
}

func (w *funcWalk) reference(at int, op byte) {
	switch op {
	case 0xd0: // ref.null
		if t := w.r.byte(); w.r.err == nil && !isRefType(t) {
			w.r.fail(ErrInvalidModule, "function %d: ref.null type %#x", w.fidx, t)
		}
		w.push(1)
	case 0xd1: // ref.is_null
		w.pop(1)
		w.push(1)
	case 0xd2: // ref.func
		x := w.funcIdx()
		w.push(1)
		if y := w.l.fn(x); w.r.err == nil && y != x {
			w.replaceIndexed(at, 0xd2, y)
		}
	}
}

// prefixed handles the 0xfc instructions: saturating truncation, bulk
// memory and table instructions.
func (w *funcWalk) prefixed(at int) {
	r := &w.r
	switch sub := r.u32(); sub {
	case 0, 1, 2, 3, 4, 5, 6, 7: // trunc_sat
		w.pop(1)
		w.push(1)
	case 8: // memory.init
		r.u32()
		w.memIdx0()
		w.pop(3)
	case 9: // data.drop
		r.u32()
	case 10: // memory.copy
		w.memIdx0()
		w.memIdx0()
		w.pop(3)
	case 11: // memory.fill
		w.memIdx0()
		w.pop(3)
	case 12: // table.init
		r.u32()
		w.tableIdx()
		w.pop(3)
	case 13: // elem.drop
		r.u32()
	case 14: // table.copy
		w.tableIdx()
		w.tableIdx()
		w.pop(3)
	case 15: // table.grow: a call of the table's grow helper
		t := w.tableIdx()
		w.pop(2)
		w.push(1)
		w.usesTableGrow = true
		if r.err == nil {
			w.replaceIndexed(at, 0x10, w.l.tableGrow(t))
		}
	case 16: // table.size
		w.tableIdx()
		w.push(1)
	case 17: // table.fill
		w.tableIdx()
		w.pop(3)
	default:
		r.fail(ErrUnsupportedFeature, "function %d: opcode 0xfc %d", w.fidx, sub)
	}
}

// loopHeader emits, at the top of a loop's body, the time check of one
// iteration:
//
//	local.get $lf; i32.const weight; i32.sub; local.tee $lf
//	i32.const 0; i32.lt_s
//	if
//	  local.get $lf; i32.const batch; call $refill; i32.add; local.set $lf
//	end
//
// weight (the loop's instructions) and batch (at least the weight) are
// patched when the loop ends.
func (w *funcWalk) loopHeader() {
	w.flush()
	lf := w.localLF()
	f := &w.stack[len(w.stack)-1]
	w.loops = append(w.loops, len(w.stack)-1)
	b := appendU32(append(w.out, 0x20), lf)
	f.weightAt = len(b) + 1
	b = appendU32Padded(append(b, 0x41), 0)
	b = appendU32(append(b, 0x6b, 0x22), lf)
	b = append(b, 0x41, 0, 0x48, 0x04, 0x40)
	b = appendU32(append(b, 0x20), lf)
	f.batchAt = len(b) + 1
	b = appendU32Padded(append(b, 0x41), 0)
	b = appendU32(append(b, 0x10), w.l.refill)
	b = appendU32(append(b, 0x6a, 0x21), lf)
	w.out = append(b, 0x0b)
	w.branch(1)
}

// Loop checks charge at most maxWeight per iteration; a loop body is far
// below it (MaxFunctionBytes).
const maxWeight = 1 << 24

func (w *funcWalk) patchLoopWeight(f ctrlFrame) {
	weight := min(max(f.insns, 1), maxWeight)
	w.loopWork = min(w.loopWork+weight, maxWeight)
	patchU32Padded(w.out[f.weightAt:], weight)
	patchU32Padded(w.out[f.batchAt:], max(weight, refillBatch))
}

// finish checks the function's bounds and frame and assembles its body:
// locals, prologue, the rewritten code wrapped in a block that every
// return branches to, epilogue.
func (w *funcWalk) finish() (*walked, error) {
	s := &w.m.shape
	s.CompileWork += w.branches * (w.branches + localWork*(uint64(len(w.ft.params))+w.locals+injectedLocals))
	if s.CompileWork > w.m.bounds.MaxCompileWork {
		return nil, &BoundError{Bound: BoundCompileWork, Value: s.CompileWork, Limit: w.m.bounds.MaxCompileWork, Offset: w.r.off}
	}
	np := uint64(len(w.ft.params))
	// +2 slots: the instrumentation pushes two values above the code's own.
	cost := slotBytes*(np+w.locals+injectedLocals+uint64(w.maxH)+2) + frameOverheadBytes
	if cost > maxFrameCost {
		return nil, modErr(ErrLimit, w.r.off, "function %d needs a %d-byte frame", w.fidx, cost)
	}
	// A function with loops starts its loop batch with a few iterations'
	// worth, charged with its own weight, so that a short loop in a
	// function called often does not call $refill on every call.
	batch := min(4*w.loopWork, refillBatch)
	weight := min(w.fnInsns+1, maxWeight) + batch
	l := w.l
	b := make([]byte, 0, len(w.decls)+len(w.out)+64)
	b = appendU32(b, w.nDecl+1)
	b = append(b, w.decls...)
	b = append(b, injectedLocals, valI32)
	// Prologue: $sp_left -= cost; $fuel -= weight; if either went negative,
	// call $slow (which traps or refills the fuel).
	t, u := w.localT(), w.localU()
	b = appendU32(append(b, 0x23), l.gSP)
	b = appendS64(append(b, 0x41), int64(cost))
	b = appendU32(append(b, 0x6b, 0x22), t)
	b = appendU32(append(b, 0x24), l.gSP)
	b = appendU32(append(b, 0x23), l.gFuel)
	b = appendS64(append(b, 0x41), int64(weight))
	b = appendU32(append(b, 0x6b, 0x22), u)
	b = appendU32(append(b, 0x24), l.gFuel)
	b = appendU32(append(b, 0x20), t)
	b = appendU32(append(b, 0x20), u)
	b = append(b, 0x72, 0x41, 0, 0x48, 0x04, 0x40) // i32.or; i32.const 0; i32.lt_s; if
	b = appendU32(append(b, 0x10), l.slow)
	b = append(b, 0x0b)
	if batch > 0 {
		b = appendS64(append(b, 0x41), int64(batch))
		b = appendU32(append(b, 0x21), w.localLF())
	}
	// The body, in a block of the function's result type.
	b = append(b, 0x02)
	b = append(b, l.blockType(w.ft.results)...)
	b = append(b, w.out...)
	// Epilogue: $sp_left += cost.
	b = appendU32(append(b, 0x23), l.gSP)
	b = appendS64(append(b, 0x41), int64(cost))
	b = appendU32(append(b, 0x6a, 0x24), l.gSP)
	b = append(b, 0x0b)
	return &walked{body: b, cost: uint32(cost), grow: w.usesGrow, tableGrow: w.usesTableGrow}, nil
}
