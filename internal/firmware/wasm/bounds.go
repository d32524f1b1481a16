package wasm

import "fmt"

// Bounds caps the structure of the modules an engine accepts, so that
// decoding, instrumenting and compiling any accepted module takes time
// and memory in proportion to its size with a small constant. Every
// declared count is checked against the bytes present and against these
// bounds before anything is allocated for it. Board profiles carry their
// own (profile.Profile.Bounds); a zero field takes its value from
// DefaultBounds.
//
// The figures behind the defaults are in docs/app-abi.md: wazero's
// optimising compiler takes time and memory that grow, per function, with
// the square of its branches and with its branches times its locals,
// which MaxCompileWork bounds for the whole module.
type Bounds struct {
	// MaxFunctions bounds the functions of a module, imported and defined.
	MaxFunctions int
	// MaxFunctionBytes bounds the size of one function body.
	MaxFunctionBytes int
	// MaxLocals bounds the locals one function declares (parameters
	// excluded); MaxTotalLocals those of all functions together.
	MaxLocals      int
	MaxTotalLocals int
	// MaxNesting bounds the nesting depth of blocks, loops and ifs in one
	// function.
	MaxNesting int
	// MaxBranchTable bounds the targets of one br_table.
	MaxBranchTable int
	// MaxCompileWork bounds the sum, over the functions, of
	// b × (b + 18 × l), where b counts the function's branches (block,
	// loop, if, else, br, br_if, return, every br_table target, and the
	// instrumentation's own) and l its parameters and locals: about 45 ns
	// and 6 bytes of the optimising compiler's time and memory per unit.
	MaxCompileWork uint64
	// MaxTableElements bounds the elements of all tables together, as
	// declared minimums; a growable table's maximum is rewritten so that
	// the total never exceeds it (table.grow beyond returns -1).
	MaxTableElements uint32
	// MaxTypes, MaxImports, MaxExports, MaxGlobals and MaxSegments (element
	// and data segments each) bound the other declared entities.
	MaxTypes, MaxImports, MaxExports, MaxGlobals, MaxSegments int
}

// DefaultBounds are the bounds of an engine without a board profile,
// sized for the larger boards.
var DefaultBounds = Bounds{
	MaxFunctions:     10000,
	MaxFunctionBytes: 64 << 10,
	MaxLocals:        2000,
	MaxTotalLocals:   100000,
	MaxNesting:       256,
	MaxBranchTable:   4096,
	MaxCompileWork:   1 << 24,
	MaxTableElements: 16384,
	MaxTypes:         4096,
	MaxImports:       1024,
	MaxExports:       4096,
	MaxGlobals:       4096,
	MaxSegments:      4096,
}

// WithDefaults returns b with zero fields taken from DefaultBounds.
func (b Bounds) WithDefaults() Bounds {
	d := DefaultBounds
	orDefault(&b.MaxFunctions, d.MaxFunctions)
	orDefault(&b.MaxFunctionBytes, d.MaxFunctionBytes)
	orDefault(&b.MaxLocals, d.MaxLocals)
	orDefault(&b.MaxTotalLocals, d.MaxTotalLocals)
	orDefault(&b.MaxNesting, d.MaxNesting)
	orDefault(&b.MaxBranchTable, d.MaxBranchTable)
	orDefault(&b.MaxCompileWork, d.MaxCompileWork)
	orDefault(&b.MaxTableElements, d.MaxTableElements)
	orDefault(&b.MaxTypes, d.MaxTypes)
	orDefault(&b.MaxImports, d.MaxImports)
	orDefault(&b.MaxExports, d.MaxExports)
	orDefault(&b.MaxGlobals, d.MaxGlobals)
	orDefault(&b.MaxSegments, d.MaxSegments)
	return b
}

func orDefault[T int | uint32 | uint64](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Bound names one of the Bounds, in a BoundError.
type Bound string

// Bounds a module may exceed.
const (
	BoundFunctions     Bound = "functions"
	BoundFunctionBytes Bound = "function-bytes"
	BoundLocals        Bound = "locals"
	BoundTotalLocals   Bound = "total-locals"
	BoundNesting       Bound = "nesting"
	BoundBranchTable   Bound = "branch-table"
	BoundCompileWork   Bound = "compile-work"
	BoundTableElements Bound = "table-elements"
	BoundTypes         Bound = "types"
	BoundImports       Bound = "imports"
	BoundExports       Bound = "exports"
	BoundGlobals       Bound = "globals"
	BoundSegments      Bound = "segments"
)

// Shape is what a module declares and contains, measured against Bounds.
type Shape struct {
	// Functions counts imported and defined functions.
	Functions int
	// MaxFunctionBytes is the largest function body.
	MaxFunctionBytes int
	// MaxLocals is the largest local count of one function; TotalLocals
	// the sum over all functions.
	MaxLocals   int
	TotalLocals int
	// MaxNesting is the deepest control nesting of any function.
	MaxNesting int
	// MaxBranchTable is the largest br_table.
	MaxBranchTable int
	// CompileWork is the sum over functions of b × (b + 18 × l) (see
	// Bounds.MaxCompileWork).
	CompileWork uint64
	// TableElements is the sum of the tables' declared minimums.
	TableElements uint32
	// Types, Imports, Exports, Globals and Segments count those entities
	// (Segments: the larger of the element and data segment counts).
	Types, Imports, Exports, Globals, Segments int
}

// Check returns a *BoundError for the first bound s exceeds, or nil.
func (b Bounds) Check(s Shape) error {
	lim := b.WithDefaults()
	checks := []struct {
		what         Bound
		value, limit uint64
	}{
		{BoundFunctions, uint64(s.Functions), uint64(lim.MaxFunctions)},                //nolint:gosec // Shape counts are non-negative
		{BoundFunctionBytes, uint64(s.MaxFunctionBytes), uint64(lim.MaxFunctionBytes)}, //nolint:gosec // Shape counts are non-negative
		{BoundLocals, uint64(s.MaxLocals), uint64(lim.MaxLocals)},                      //nolint:gosec // Shape counts are non-negative
		{BoundTotalLocals, uint64(s.TotalLocals), uint64(lim.MaxTotalLocals)},          //nolint:gosec // Shape counts are non-negative
		{BoundNesting, uint64(s.MaxNesting), uint64(lim.MaxNesting)},                   //nolint:gosec // Shape counts are non-negative
		{BoundBranchTable, uint64(s.MaxBranchTable), uint64(lim.MaxBranchTable)},       //nolint:gosec // Shape counts are non-negative
		{BoundCompileWork, s.CompileWork, lim.MaxCompileWork},
		{BoundTableElements, uint64(s.TableElements), uint64(lim.MaxTableElements)},
		{BoundTypes, uint64(s.Types), uint64(lim.MaxTypes)},          //nolint:gosec // Shape counts are non-negative
		{BoundImports, uint64(s.Imports), uint64(lim.MaxImports)},    //nolint:gosec // Shape counts are non-negative
		{BoundExports, uint64(s.Exports), uint64(lim.MaxExports)},    //nolint:gosec // Shape counts are non-negative
		{BoundGlobals, uint64(s.Globals), uint64(lim.MaxGlobals)},    //nolint:gosec // Shape counts are non-negative
		{BoundSegments, uint64(s.Segments), uint64(lim.MaxSegments)}, //nolint:gosec // Shape counts are non-negative
	}
	for _, c := range checks {
		if c.value > c.limit {
			return &BoundError{Bound: c.what, Value: c.value, Limit: c.limit, Offset: -1}
		}
	}
	return nil
}

// BoundError reports a module whose structure exceeds the engine's or the
// board's Bounds. It matches ErrTooComplex.
type BoundError struct {
	Bound Bound
	// Value is what the module has (or declares), Limit the bound.
	Value, Limit uint64
	// Offset is the byte offset in the binary where it was found, or -1.
	Offset int
}

func (e *BoundError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%v: %s %d above the bound of %d (at byte %d)", ErrTooComplex, e.Bound, e.Value, e.Limit, e.Offset)
	}
	return fmt.Sprintf("%v: %s %d above the bound of %d", ErrTooComplex, e.Bound, e.Value, e.Limit)
}

// Unwrap returns ErrTooComplex.
func (e *BoundError) Unwrap() error { return ErrTooComplex }
