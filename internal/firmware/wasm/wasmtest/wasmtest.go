// Package wasmtest builds WebAssembly modules for tests and benchmarks of
// the device runtime: modules that take each structural bound of a
// wasm.Bounds to its limit, to measure what installing the worst module a
// board accepts costs.
package wasmtest

import (
	"math"

	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
)

// Costly is the shape of WorstCase's most costly function.
type Costly int

// Shapes of the costly function: wazero's optimising compiler takes about
// as long per unit of compile work on either, which one is slower depends
// on the bounds.
const (
	// LocalsAcrossBranches: MaxLocals locals, read and written in ifs.
	LocalsAcrossBranches Costly = iota
	// Branches: one local and as many ifs as the compile work allows.
	Branches
)

// WorstCase returns a tick app that uses every bound of b (with defaults
// applied) as far as maxBytes allows: the most functions, each with its
// share of locals; one function with blocks nested MaxNesting deep around
// a br_table of MaxBranchTable targets; and one, of the shape c, as
// costly to compile as the remaining MaxCompileWork lets it be. It is a
// valid module the runtime accepts under b.
func WorstCase(b wasm.Bounds, maxBytes int, c Costly) []byte {
	b = b.WithDefaults()
	n := max(b.MaxFunctions, 3)
	locals := uint32(min(b.MaxLocals, (b.MaxTotalLocals-b.MaxLocals)/(n-1)))
	light := append(localDecl(locals), 0x0b)
	tables := tableBody(b)
	budget := b.MaxCompileWork - uint64(n-2)*work(2, uint64(locals)) - work(uint64(3+b.MaxNesting+b.MaxBranchTable), 0)
	heavyLocals := uint32(b.MaxLocals)
	if c == Branches {
		heavyLocals = 1
	}
	heavy := heavyBody(b, heavyLocals, budget)
	per := len(light) + 2 // size prefix and function entry
	if room := (maxBytes - len(heavy) - len(tables) - 200) / per; room+2 < n {
		n = max(room+2, 2)
	}
	funcs := appendU32(nil, uint32(n))
	code := appendU32(nil, uint32(n))
	for i, body := range [][]byte{heavy, tables} {
		if i < n {
			code = appendU32(code, uint32(len(body)))
			code = append(code, body...)
		}
	}
	for i := range n {
		funcs = append(funcs, 0)
		if i > 1 {
			code = appendU32(code, uint32(len(light)))
			code = append(code, light...)
		}
	}
	var m []byte
	m = append(m, "\x00asm\x01\x00\x00\x00"...)
	m = section(m, 1, []byte{1, 0x60, 0, 0})
	m = section(m, 3, funcs)
	m = section(m, 4, appendU32([]byte{1, 0x70, 0}, b.MaxTableElements))
	m = section(m, 5, []byte{1, 0, 1})
	m = section(m, 7, append(appendName([]byte{1}, wasm.ExportTick), 0, 0))
	return section(m, 10, code)
}

// work is the compile work the runtime counts for a function with
// branches and locals (see wasm.Bounds.MaxCompileWork; the runtime adds
// three locals and two branches of its own to every function).
func work(branches, locals uint64) uint64 { return branches * (branches + 18*(locals+3)) }

// tableBody nests MaxNesting blocks around a br_table of MaxBranchTable
// targets.
func tableBody(b wasm.Bounds) []byte {
	body := []byte{0}
	for range b.MaxNesting {
		body = append(body, 0x02, 0x40)
	}
	body = append(body, 0x41, 0, 0x0e)
	body = appendU32(body, uint32(b.MaxBranchTable))
	for i := range b.MaxBranchTable + 1 {
		body = appendU32(body, uint32(i%max(b.MaxNesting, 1)))
	}
	for range b.MaxNesting {
		body = append(body, 0x0b)
	}
	return append(body, 0x0b)
}

// heavyBody is the costly function: l locals and ifs reading and writing
// them, within budget compile work and MaxFunctionBytes.
func heavyBody(b wasm.Bounds, l uint32, budget uint64) []byte {
	// The most branches m with work(m, l) <= budget.
	c := 18 * float64(l+3)
	m := int((-c + math.Sqrt(c*c+4*float64(budget))) / 2)
	for m > 0 && work(uint64(m), uint64(l)) > budget {
		m--
	}
	body := localDecl(l)
	// local.get i; if; i32.const 1; local.set i+1; end
	for i := 0; i < m-2 && len(body)+16 < b.MaxFunctionBytes; i++ {
		body = appendU32(append(body, 0x20), uint32(i)%max(l, 1))
		body = append(body, 0x04, 0x40, 0x41, 1, 0x21)
		body = appendU32(body, uint32(i+1)%max(l, 1))
		body = append(body, 0x0b)
	}
	return append(body, 0x0b)
}

func localDecl(n uint32) []byte {
	if n == 0 {
		return []byte{0}
	}
	return append(appendU32([]byte{1}, n), 0x7f)
}

func section(m []byte, id byte, payload []byte) []byte {
	m = appendU32(append(m, id), uint32(len(payload)))
	return append(m, payload...)
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

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}
