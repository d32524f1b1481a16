package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The official WebAssembly spec test suite, as wazero's module carries it
// (converted to JSON by wast2json, with its .wasm modules), keeps the
// instrumenter honest: every module the instrumenter accepts is
// instantiated both unmodified and instrumented, in two runtimes, and
// every assertion's action is run on both; results, traps and
// instantiation outcomes must be identical. Modules the instrumenter
// refuses (SIMD, tail calls, imported memories, ...) are counted, not
// compared. For modules the spec declares invalid, instrumentation must
// not make them valid.
//
// The suite runs a fixed subset in interpreter mode; set
// WASMBED_SPECTEST=all to run every file in both modes (a few minutes).

// specSubset are the files the suite runs: control flow, calls, locals,
// memory and table instructions, traps and linking, where instrumentation
// changes code.
var specSubset = []string{
	"block", "br", "br_if", "br_table", "call", "call_indirect", "fac", "func", "func_ptrs",
	"global", "if", "labels", "left-to-right", "linking", "local_tee", "loop", "memory_grow",
	"memory_trap", "ref_func", "return", "select", "stack", "start", "switch", "table_grow",
	"table_init", "traps", "unreachable", "unwind", "bulk", "elem", "data", "exports", "imports",
}

// specBounds are generous enough for the spec suite's modules.
var specBounds = Bounds{MaxFunctions: 100000, MaxFunctionBytes: 1 << 20, MaxLocals: 100000, MaxTotalLocals: 1 << 20,
	MaxNesting: 10000, MaxBranchTable: 1 << 20, MaxCompileWork: 1 << 40, MaxTableElements: 1 << 20,
	MaxTypes: 100000, MaxImports: 100000, MaxExports: 100000, MaxGlobals: 100000, MaxSegments: 100000}

type specFile struct {
	Commands []specCommand `json:"commands"`
}

type specCommand struct {
	Type       string     `json:"type"`
	Line       int        `json:"line"`
	Name       string     `json:"name"`
	Filename   string     `json:"filename"`
	As         string     `json:"as"`
	Action     specAction `json:"action"`
	ModuleType string     `json:"module_type"`
}

type specAction struct {
	Type   string      `json:"type"`
	Field  string      `json:"field"`
	Module string      `json:"module"`
	Args   []specValue `json:"args"`
}

type specValue struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// specStats counts what a run compared.
type specStats struct {
	files, modules, refused, assertions, skipped, invalidChecked int
	refusedBy                                                    map[string]int
}

func TestSpecSuiteUnchangedByInstrumentation(t *testing.T) {
	dir := wazeroSpecDir(t)
	all := os.Getenv("WASMBED_SPECTEST") == "all"
	modes := []Mode{ModeInterpreter}
	var files []string
	for _, v := range []string{"v1", "v2"} {
		names, err := filepath.Glob(filepath.Join(dir, v, "testdata", "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			base := strings.TrimSuffix(filepath.Base(n), ".json")
			if strings.HasPrefix(base, "simd") || !all && (v == "v1" || !slices.Contains(specSubset, base)) {
				continue
			}
			files = append(files, n)
		}
	}
	if all {
		modes = append(modes, ModeCompiler)
	}
	if len(files) == 0 {
		t.Fatalf("no spec test files under %s", dir)
	}
	for _, mode := range modes {
		if mode == ModeCompiler && !compilerSupported() {
			continue
		}
		t.Run(mode.String(), func(t *testing.T) {
			st := &specStats{refusedBy: map[string]int{}}
			for _, f := range files {
				runSpecFile(t, f, mode, st)
			}
			t.Logf("%d files, %d modules (%d refused by the instrumenter: %v), %d assertions compared, %d skipped, %d invalid modules checked",
				st.files, st.modules, st.refused, st.refusedBy, st.assertions, st.skipped, st.invalidChecked)
			if st.assertions == 0 {
				t.Errorf("no assertion compared")
			}
		})
	}
}

// wazeroSpecDir returns the spec test directory of the wazero module this
// package builds with.
func wazeroSpecDir(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command locates wazero's spec tests: %v", err)
	}
	out, err := exec.CommandContext(t.Context(), goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/tetratelabs/wazero").Output()
	if err != nil {
		t.Fatalf("go list wazero: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "internal", "integration_test", "spectest")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("wazero's spec tests: %v (run go mod download github.com/tetratelabs/wazero)", err)
	}
	return dir
}

// specPair is one spec module instantiated unmodified and instrumented.
type specPair struct {
	orig, inst api.Module
	refused    bool
}

type specRun struct {
	t          *testing.T
	ctx        context.Context
	dir, name  string
	orig, inst wazero.Runtime
	named      map[string]*specPair
	last       *specPair
	all        []*specPair
	st         *specStats
}

func runSpecFile(t *testing.T, path string, mode Mode, st *specStats) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f specFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ctx := context.Background()
	rc := func() wazero.RuntimeConfig {
		c := wazero.NewRuntimeConfigInterpreter()
		if mode == ModeCompiler {
			c = wazero.NewRuntimeConfigCompiler()
		}
		return c.WithCoreFeatures(api.CoreFeaturesV2 &^ api.CoreFeatureSIMD)
	}
	r := &specRun{t: t, ctx: ctx, dir: filepath.Dir(path), name: filepath.Base(path),
		orig: wazero.NewRuntimeWithConfig(ctx, rc()), inst: wazero.NewRuntimeWithConfig(ctx, rc()),
		named: map[string]*specPair{}, st: st}
	defer r.orig.Close(ctx)
	defer r.inst.Close(ctx)
	spectest, err := os.ReadFile(filepath.Join(r.dir, "..", "..", "testdata", "spectest.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range []wazero.Runtime{r.orig, r.inst} {
		if _, err := rt.InstantiateWithConfig(ctx, spectest, wazero.NewModuleConfig().WithName("spectest")); err != nil {
			t.Fatal(err)
		}
	}
	if err := instantiateHost(ctx, r.inst); err != nil {
		t.Fatal(err)
	}
	st.files++
	for i, c := range f.Commands {
		r.command(f.Commands, i, c)
	}
}

func (r *specRun) errorf(c specCommand, format string, args ...any) {
	r.t.Helper()
	r.t.Errorf("%s:%d %s: "+format, append([]any{r.name, c.Line, c.Type}, args...)...)
}

func (r *specRun) command(all []specCommand, i int, c specCommand) {
	switch c.Type {
	case "module":
		r.st.modules++
		p := r.instantiate(c, registerName(all, i))
		r.all = append(r.all, p)
		r.last = p
		if c.Name != "" {
			r.named[c.Name] = p
		}
	case "assert_return", "action", "assert_trap", "assert_exhaustion":
		r.action(c)
	case "assert_invalid", "assert_malformed":
		if c.ModuleType == "binary" {
			r.invalid(c)
		}
	case "assert_uninstantiable", "assert_unlinkable":
		r.instantiate(c, "")
	}
}

// registerName returns the name the module of command i is registered
// under, if a later register command names it.
func registerName(all []specCommand, i int) string {
	for _, c := range all[i+1:] {
		switch {
		case c.Type == "register" && (c.Name == "" || c.Name == all[i].Name):
			return c.As
		case c.Type == "module" && all[i].Name == "":
			return ""
		}
	}
	return ""
}

// instantiate instruments and instantiates a spec module both ways and
// compares the outcomes.
func (r *specRun) instantiate(c specCommand, name string) *specPair {
	p := &specPair{}
	bin, err := os.ReadFile(filepath.Join(r.dir, c.Filename))
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := decode(bin, specBounds)
	var inst *instrumented
	if err == nil {
		inst, err = m.instrument(maxPages)
	}
	if err != nil {
		p.refused = true
		r.st.refused++
		r.st.refusedBy[refusalKind(err)]++
		if testing.Verbose() {
			r.t.Logf("%s:%d: refused: %v", r.name, c.Line, err)
		}
		return p
	}
	cfg := wazero.NewModuleConfig().WithName(name)
	var errO, errI error
	p.orig, errO = r.orig.InstantiateWithConfig(r.ctx, bin, cfg)
	p.inst, errI = r.inst.InstantiateWithConfig(r.ctx, inst.bin, cfg)
	if (errO == nil) != (errI == nil) {
		r.errorf(c, "instantiation: unmodified %v, instrumented %v", errO, errI)
	}
	if errO != nil || errI != nil {
		p.refused = true
	}
	r.st.assertions++
	return p
}

func refusalKind(err error) string {
	for _, s := range []error{ErrUnsupportedFeature, ErrInvalidModule, ErrUninstantiable, ErrTooComplex, ErrLimit} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "other"
}

// invalid checks that instrumentation does not make an invalid module
// valid.
func (r *specRun) invalid(c specCommand) {
	bin, err := os.ReadFile(filepath.Join(r.dir, c.Filename))
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := decode(bin, specBounds)
	if err != nil {
		return
	}
	inst, err := m.instrument(maxPages)
	if err != nil {
		return
	}
	r.st.invalidChecked++
	if _, errO := r.orig.CompileModule(r.ctx, bin); errO != nil {
		if cm, errI := r.inst.CompileModule(r.ctx, inst.bin); errI == nil {
			_ = cm.Close(r.ctx)
			r.errorf(c, "instrumentation made an invalid module valid (unmodified: %v)", errO)
		}
	}
}

func (r *specRun) action(c specCommand) {
	p := r.last
	if c.Action.Module != "" {
		p = r.named[c.Action.Module]
	}
	if p == nil || p.refused {
		r.st.skipped++
		return
	}
	args, ok := specArgs(c.Action.Args)
	if !ok {
		r.st.skipped++
		return
	}
	r.st.assertions++
	switch c.Action.Type {
	case "get":
		gO, gI := p.orig.ExportedGlobal(c.Action.Field), p.inst.ExportedGlobal(c.Action.Field)
		if gO == nil || gI == nil || gO.Get() != gI.Get() {
			r.errorf(c, "global %q: unmodified %v, instrumented %v", c.Action.Field, gO, gI)
		}
	case "invoke":
		fO, fI := p.orig.ExportedFunction(c.Action.Field), p.inst.ExportedFunction(c.Action.Field)
		if fO == nil || fI == nil {
			r.errorf(c, "export %q: unmodified %v, instrumented %v", c.Action.Field, fO, fI)
			return
		}
		resO, errO := fO.Call(r.ctx, args...)
		r.resetInstrumented()
		resI, errI := fI.Call(r.ctx, args...)
		if errI != nil && r.stackTrapped() {
			errI = errors.New("stack overflow")
		}
		if msgO, msgI := trapMessage(errO), trapMessage(errI); msgO != msgI {
			r.errorf(c, "invoke %q: unmodified %q, instrumented %q", c.Action.Field, msgO, msgI)
			return
		}
		if errO == nil && !slices.Equal(resO, resI) {
			r.errorf(c, "invoke %q: unmodified %v, instrumented %v", c.Action.Field, resO, resI)
		}
	default:
		r.st.assertions--
		r.st.skipped++
	}
}

// resetInstrumented sets every instrumented instance's injected globals
// as the device runtime does before an execution.
func (r *specRun) resetInstrumented() {
	for _, p := range r.all {
		if p.inst == nil {
			continue
		}
		for name, v := range map[string]uint64{exportSP: initialStackLeft, exportFuel: initialFuel, exportStackTrap: 0} {
			if g, ok := p.inst.ExportedGlobal(name).(api.MutableGlobal); ok {
				g.Set(v)
			}
		}
	}
}

func (r *specRun) stackTrapped() bool {
	for _, p := range r.all {
		if p.inst != nil && p.inst.ExportedGlobal(exportStackTrap).Get() != 0 {
			return true
		}
	}
	return false
}

// trapMessage is the first line of a wazero error without its stack
// trace, or "" for nil.
func trapMessage(err error) string {
	if err == nil {
		return ""
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return msg
}

// specArgs converts arguments; false for values the runtime does not
// support (v128).
func specArgs(vs []specValue) ([]uint64, bool) {
	out := make([]uint64, 0, len(vs))
	for _, v := range vs {
		s, _ := v.Value.(string)
		switch v.Type {
		case "i32", "f32":
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, false
			}
			out = append(out, n)
		case "i64", "f64":
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, false
			}
			out = append(out, n)
		case "funcref", "externref":
			if s == "null" {
				out = append(out, 0)
				continue
			}
			n, err := strconv.ParseUint(s, 10, 63)
			if err != nil || n == math.MaxInt64 {
				return nil, false
			}
			// Non-null references must not be 0, which is null in wazero.
			out = append(out, n+1)
		default:
			return nil, false
		}
	}
	return out, true
}
