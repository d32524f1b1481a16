package wasmtest

import "bytes"

// Hostile is a module built to hurt whatever checks, compiles or runs it.
type Hostile struct {
	Name string
	// Class is the kind of harm (see docs/app-abi.md, "Installation
	// checks"): 1 declared counts that would reach the allocator, 2 code
	// that runs past its time without loops, 3 unbounded tables, 4 costly
	// installation, 5 what fails only at instantiation.
	Class int
	Bin   []byte
	// Admitted reports a module that passes the installation checks: its
	// harm is at run time, where the runtime's limits stop it.
	Admitted bool
}

// HostileModules returns one or more modules of each class, all under 100
// bytes but the costly one, which takes a bound of the default bounds
// just past its limit.
func HostileModules() []Hostile {
	huge := appendU32(nil, 0xffffffff)
	tickType := section(nil, 1, []byte{1, 0x60, 0, 0})
	tickFunc := section(nil, 3, []byte{1, 0})
	tickExport := section(nil, 7, append(appendName([]byte{1}, "wasmbed_tick"), 0, 0))
	tickCode := section(nil, 10, []byte{1, 2, 0, 0x0b})
	mod := func(sections ...[]byte) []byte {
		return append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Join(sections, nil)...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	code := func(c ...byte) []byte { // one body: no locals, then c
		body := append([]byte{0}, c...)
		return section(nil, 10, cat([]byte{1}, appendU32(nil, uint32(len(body))), body))
	}
	// A loop-free binary tree of 2^40 calls: f(d) { if d { f(d-1); f(d-1) } }.
	tree := cat([]byte{0x20, 0, 0x04, 0x40, 0x20, 0, 0x41, 1, 0x6b, 0x10, 0, 0x20, 0, 0x41, 1, 0x6b, 0x10, 0, 0x0b, 0x0b})
	treeBody := append([]byte{0}, tree...)
	tickBody := []byte{0, 0x41, 40, 0x10, 0, 0x0b}
	return []Hostile{
		{Name: "name section of 2^32 names", Class: 1,
			Bin: mod(tickType, tickFunc, tickExport, tickCode, section(nil, 0, cat(appendName(nil, "name"), []byte{1, 5}, huge))), Admitted: true},
		{Name: "2^32 tables", Class: 1, Bin: mod(tickType, section(nil, 4, huge))},
		{Name: "2^32 data segments", Class: 1, Bin: mod(section(nil, 5, []byte{1, 0, 1}), section(nil, 11, huge))},
		{Name: "2^32 element segments", Class: 1, Bin: mod(tickType, tickFunc, section(nil, 9, huge))},
		{Name: "2^32 types", Class: 1, Bin: mod(section(nil, 1, huge))},
		{Name: "2^32-1 locals", Class: 1, Bin: mod(tickType, tickFunc, tickExport, section(nil, 10, cat([]byte{1, 8, 1}, huge, []byte{0x7f, 0x0b})))},
		{Name: "custom section past the end", Class: 1, Bin: mod([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f, 4, 'n', 'a', 'm', 'e'})},
		{Name: "loop-free tree of 2^40 calls", Class: 2, Admitted: true, Bin: mod(
			section(nil, 1, []byte{2, 0x60, 1, 0x7f, 0, 0x60, 0, 0}), section(nil, 3, []byte{2, 0, 1}), section(nil, 7, append(appendName([]byte{1}, "wasmbed_tick"), 0, 1)),
			section(nil, 10, cat([]byte{2}, appendU32(nil, uint32(len(treeBody))), treeBody, appendU32(nil, uint32(len(tickBody))), tickBody)))},
		{Name: "table of 2^32-1 elements", Class: 3, Bin: mod(tickType, tickFunc, section(nil, 4, cat([]byte{1, 0x70, 0}, huge)), tickExport, tickCode)},
		{Name: "br_table of 2^32 targets", Class: 4, Bin: mod(tickType, tickFunc, tickExport, code(cat([]byte{0x41, 0, 0x0e}, huge, []byte{0, 0x0b})...))},
		{Name: "blocks nested 10,000 deep", Class: 4, Bin: mod(tickType, tickFunc, tickExport,
			code(cat(bytes.Repeat([]byte{0x02, 0x40}, 10000), bytes.Repeat([]byte{0x0b}, 10001))...))},
		{Name: "data past the memory", Class: 5, Bin: mod(tickType, tickFunc, section(nil, 5, []byte{1, 0, 1}), tickExport, tickCode,
			section(nil, 11, []byte{1, 0, 0x41, 0xfa, 0xff, 0x03, 0x0b, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}))},
	}
}
