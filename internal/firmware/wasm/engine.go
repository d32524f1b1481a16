package wasm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Mode selects how an Engine executes WebAssembly.
type Mode uint8

// Modes.
const (
	// ModeAuto uses the compiler where wazero supports it (amd64 and arm64
	// on the major operating systems) and the interpreter elsewhere.
	ModeAuto Mode = iota
	// ModeCompiler compiles modules ahead of time to native code.
	ModeCompiler
	// ModeInterpreter interprets modules, as most MCU runtimes do.
	ModeInterpreter
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeCompiler:
		return "compiler"
	case ModeInterpreter:
		return "interpreter"
	}
	return "unknown"
}

// ParseMode parses "auto", "compiler" or "interpreter".
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ModeAuto, ModeCompiler, ModeInterpreter} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown wasm engine mode %q (want auto, compiler or interpreter)", s)
}

func compilerSupported() bool {
	switch runtime.GOARCH {
	case "amd64", "arm64":
	default:
		return false
	}
	switch runtime.GOOS {
	case "linux", "darwin", "freebsd", "netbsd", "dragonfly", "solaris", "illumos", "windows":
		return true
	}
	return false
}

// Tick intervals and module size.
const (
	DefaultTickInterval = time.Second
	MinTickInterval     = time.Millisecond
	MaxTickInterval     = 24 * time.Hour
	// DefaultMaxModuleSize is Config.MaxModuleSize's default.
	DefaultMaxModuleSize = 1 << 20
)

// MaxStackLimit is the largest maxStackSize the runtime accounts.
const MaxStackLimit = 64 << 20

// Config configures an Engine.
type Config struct {
	// Mode selects compiler or interpreter (default ModeAuto).
	Mode Mode
	// Cache is a wazero compilation cache to share between engines (for
	// example compiler and interpreter engines of one process, or an
	// on-disk cache from wazero.NewCompilationCacheWithDir). Nil gives the
	// engine its own in-memory cache.
	Cache wazero.CompilationCache
	// MaxModuleSize refuses larger binaries (default DefaultMaxModuleSize).
	MaxModuleSize int
	// Bounds are the engine's ceiling on module structure (zero fields:
	// DefaultBounds). Compile's bounds can only be tighter: a module is
	// decoded once against these, then checked against each caller's.
	Bounds Bounds
	// Logger receives the engine's own diagnostics; nil discards them.
	Logger *slog.Logger
}

// Engine is the process-wide WebAssembly runtime shared by every simulated
// device: one wazero runtime, one compilation cache, the host API module,
// and a cache of compiled modules keyed by the SHA-256 of the binary and
// the memory limit, reference counted by the Modules handed out. It is
// safe for concurrent use.
type Engine struct {
	rt     wazero.Runtime
	mode   Mode
	cfg    Config
	logger *slog.Logger

	mu      sync.Mutex
	modules map[cacheKey]*compiled
	closed  bool
}

// cacheKey identifies a compilation: the binary and the two limits the
// instrumentation bakes in, memory pages and the bound on table elements.
type cacheKey struct {
	hash   [32]byte
	pages  uint32
	tables uint32
}

// compiled is one cached module. Checking and instrumenting (prep) and
// compiling (cm) each happen once, the first time a caller needs them;
// between the two, each caller checks the module against its own bounds
// and stack limit, so a refusal costs no compilation.
type compiled struct {
	key  cacheKey
	refs int // guarded by Engine.mu

	prepOnce sync.Once
	info     ModuleInfo
	bin      []byte // instrumented binary, until compiled
	prepErr  error

	compileOnce sync.Once
	cm          wazero.CompiledModule
	compileErr  error
}

// NewEngine starts an engine.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	mode := cfg.Mode
	if mode == ModeAuto {
		mode = ModeInterpreter
		if compilerSupported() {
			mode = ModeCompiler
		}
	}
	var rc wazero.RuntimeConfig
	switch mode {
	case ModeCompiler:
		if !compilerSupported() {
			return nil, fmt.Errorf("new wasm engine: compiler not supported on %s/%s", runtime.GOOS, runtime.GOARCH)
		}
		rc = wazero.NewRuntimeConfigCompiler()
	case ModeInterpreter:
		rc = wazero.NewRuntimeConfigInterpreter()
	default:
		return nil, fmt.Errorf("new wasm engine: unknown mode %d", mode)
	}
	if cfg.Cache == nil {
		cfg.Cache = wazero.NewCompilationCache()
	}
	if cfg.MaxModuleSize <= 0 {
		cfg.MaxModuleSize = DefaultMaxModuleSize
	}
	cfg.Bounds = cfg.Bounds.WithDefaults()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// No WithCloseOnContextDone: the instrumentation's own time checks
	// bound every execution (see instrument.go), at a fraction of the cost.
	rc = rc.WithCoreFeatures(api.CoreFeaturesV2 &^ api.CoreFeatureSIMD).
		WithDebugInfoEnabled(false).
		WithCompilationCache(cfg.Cache)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if err := instantiateHost(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		return nil, fmt.Errorf("new wasm engine: host api: %w", err)
	}
	return &Engine{rt: rt, mode: mode, cfg: cfg, logger: logger, modules: make(map[cacheKey]*compiled)}, nil
}

// Mode returns the engine's effective mode (never ModeAuto).
func (e *Engine) Mode() Mode { return e.mode }

// CachedModules returns the number of compiled modules held.
func (e *Engine) CachedModules() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.modules)
}

// Close releases the runtime; every App and Module of the engine becomes
// unusable.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.modules = map[cacheKey]*compiled{}
	e.mu.Unlock()
	return e.rt.Close(ctx)
}

// ErrClosed is returned by an engine, module or app after Close/Release.
var ErrClosed = errors.New("wasm engine or module closed")

// Compile checks bin against the app model, the host API, the bounds b
// (zero fields: the engine's) and lim, instruments it (see
// docs/app-abi.md) and compiles it, or returns the cached compilation of
// the same binary under the same memory limit and bound on table
// elements. Refusals are
// *ModuleError, *ImportError, *BoundError or *LimitError (see the Err*
// sentinels); no module is compiled before it has passed every check.
// Every Module returned must be released with Module.Release.
func (e *Engine) Compile(ctx context.Context, bin []byte, lim sandbox.Limits, b Bounds) (*Module, error) {
	lim = lim.WithDefaults()
	if len(bin) > e.cfg.MaxModuleSize {
		return nil, modErr(ErrModuleTooLarge, -1, "%d bytes, limit %d", len(bin), e.cfg.MaxModuleSize)
	}
	if err := (ModuleInfo{}).CheckLimits(lim); err != nil {
		return nil, err // a stack limit the runtime cannot account
	}
	tables := e.cfg.Bounds.MaxTableElements
	if b.MaxTableElements > 0 {
		tables = min(tables, b.MaxTableElements)
	}
	key := cacheKey{hash: sha256.Sum256(bin), pages: lim.MemoryPages(), tables: tables}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	c, ok := e.modules[key]
	if !ok {
		c = &compiled{key: key}
		e.modules[key] = c
	}
	c.refs++
	e.mu.Unlock()

	c.prepOnce.Do(func() { c.prepare(bin, e.cfg.Bounds) })
	if err := c.admit(lim, b); err != nil {
		e.release(ctx, c)
		return nil, err
	}
	c.compileOnce.Do(func() { c.cm, c.compileErr = e.compile(ctx, c) })
	if c.compileErr != nil {
		e.release(ctx, c)
		return nil, c.compileErr
	}
	return &Module{e: e, c: c, lim: lim}, nil
}

// prepare decodes, checks and instruments the module.
func (c *compiled) prepare(bin []byte, b Bounds) {
	b.MaxTableElements = c.key.tables
	m, inst, err := prepare(bin, b, c.key.pages)
	if err != nil {
		c.prepErr = err
		return
	}
	c.info, c.bin = m.info, inst.bin
}

// admit checks a prepared module against one caller's bounds and limits.
func (c *compiled) admit(lim sandbox.Limits, b Bounds) error {
	if c.prepErr != nil {
		return c.prepErr
	}
	if b != (Bounds{}) {
		if err := b.Check(c.info.Shape); err != nil {
			return err
		}
	}
	return c.info.CheckLimits(lim)
}

func (e *Engine) compile(ctx context.Context, c *compiled) (wazero.CompiledModule, error) {
	start := time.Now()
	bin := c.bin
	c.bin = nil
	cm, err := e.rt.CompileModule(ctx, bin)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("compile wasm module: %w", ctx.Err())
		}
		return nil, &ModuleError{Err: ErrInvalidModule, Detail: err.Error(), Offset: -1}
	}
	e.logger.LogAttrs(ctx, slog.LevelDebug, "wasm module compiled",
		slog.Int("size", c.info.Size), slog.Int("instrumentedSize", len(bin)),
		slog.Duration("took", time.Since(start)), slog.String("mode", e.mode.String()))
	return cm, nil
}

func (e *Engine) release(ctx context.Context, c *compiled) {
	e.mu.Lock()
	c.refs--
	drop := c.refs == 0
	if drop && e.modules[c.key] == c {
		delete(e.modules, c.key)
	}
	e.mu.Unlock()
	if drop && c.cm != nil {
		_ = c.cm.Close(ctx)
	}
}

// Module is a handle on a compiled, instrumented module together with the
// limits it was checked against. Handles to the same binary and memory
// limit share one compilation. Safe for concurrent use.
type Module struct {
	e        *Engine
	c        *compiled
	lim      sandbox.Limits
	mu       sync.Mutex
	released bool
}

// Info returns what the module declares.
func (m *Module) Info() ModuleInfo { return m.c.info }

// Hash returns the SHA-256 of the original binary.
func (m *Module) Hash() [32]byte { return m.c.key.hash }

// Limits returns the limits the module was compiled for (with defaults).
func (m *Module) Limits() sandbox.Limits { return m.lim }

// Release drops the handle; the compilation is freed with its last handle.
// Apps created from the module must be closed first. Release is idempotent.
func (m *Module) Release(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.released {
		return
	}
	m.released = true
	m.e.release(ctx, m.c)
}
