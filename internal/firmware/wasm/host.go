package wasm

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
)

// HostModule is the import module name of host API v1.
const HostModule = "wasmbed"

// Errno values returned to the guest by host functions. Every host
// function returns a non-negative value on success and one of these on
// failure; the guest is never trapped by a host-side failure.
const (
	ErrnoPerm     int32 = -1   // operation not permitted (e.g. writing an input pin)
	ErrnoNoEnt    int32 = -2   // no such configuration key
	ErrnoIO       int32 = -5   // peripheral i/o error
	ErrnoTooBig   int32 = -7   // length above the function's cap
	ErrnoAgain    int32 = -11  // try again later (gateway queue full)
	ErrnoFault    int32 = -14  // pointer/length outside the app's linear memory
	ErrnoNoDev    int32 = -19  // no such pin, port, bus, address or sensor
	ErrnoInval    int32 = -22  // invalid argument
	ErrnoNoSys    int32 = -38  // the device has no such peripheral or service
	ErrnoTimedOut int32 = -110 // the execution deadline passed while waiting
)

// Length caps of the host API, checked before any host-side work.
const (
	MaxLogBytes     = 256  // log message
	MaxNameBytes    = 64   // metric name, topic, configuration key
	MaxIOBytes      = 1024 // one UART, SPI or I2C transfer
	MaxPayloadBytes = 1024 // one published message
	// MaxSleep is the longest sleep_ms accepts.
	MaxSleep = 10 * time.Second
)

// ErrQueueFull is returned by a Publisher that cannot accept more data
// right now; the guest sees ErrnoAgain.
var ErrQueueFull = errors.New("publish queue full")

// ErrNotFound is returned by a ConfigSource for an unknown key; the guest
// sees ErrnoNoEnt. A plain false from Lookup has the same effect.
var ErrNotFound = errors.New("not found")

// Publisher sends an app's data to the gateway. Calls come from the
// goroutine running the app and should not block; return ErrQueueFull
// instead. The payload is a fresh copy the implementation may keep.
type Publisher interface {
	// PublishMetric records a named numeric sample from app.
	PublishMetric(app, name string, value float64) error
	// PublishMessage sends an opaque message on topic from app.
	PublishMessage(app, topic string, payload []byte) error
}

// ConfigSource gives an app its configuration values.
type ConfigSource interface {
	// Lookup returns the value of key for app.
	Lookup(app, key string) (string, bool)
}

// Host is the per-device (or per-app) context host functions act on. The
// device composition fills it; nil fields make the matching host functions
// return ErrnoNoSys (a nil Board field likewise), and a nil Clock means
// hal.SystemClock.
type Host struct {
	// Board gives the GPIO, UART, SPI, I2C and sensor functions their
	// peripherals.
	Board *hal.Board
	// Clock serves time_ms and sleep_ms.
	Clock hal.Clock
	// Publisher receives publish_metric and publish.
	Publisher Publisher
	// Config answers config_get.
	Config ConfigSource
	// Logger receives guest log lines (message "app log", keys "app",
	// "text"); nil discards them.
	Logger *slog.Logger
}

type hostFunc struct {
	name string
	typ  funcType
	fn   func(ctx context.Context, a *App, mem api.Memory, stack []uint64) int32
}

const (
	i32 = valI32
	i64 = valI64
	f64 = valF64
)

func sig(params ...byte) funcType { return funcType{params: params, results: []byte{i32}} }

// hostFuncs is host API v1. Each entry is documented in docs/app-abi.md.
var hostFuncs = []hostFunc{
	{"log", sig(i32, i32, i32), hLog},
	{"time_ms", funcType{results: []byte{i64}}, nil}, // special-cased: returns i64
	{"sleep_ms", sig(i32), hSleep},
	{"tick_interval", sig(i32), hTickInterval},
	{"gpio_config", sig(i32, i32), hGPIOConfig},
	{"gpio_write", sig(i32, i32), hGPIOWrite},
	{"gpio_read", sig(i32), hGPIORead},
	{"uart_write", sig(i32, i32, i32), hUARTWrite},
	{"uart_read", sig(i32, i32, i32), hUARTRead},
	{"spi_transfer", sig(i32, i32, i32, i32), hSPI},
	{"i2c_transfer", sig(i32, i32, i32, i32, i32, i32), hI2C},
	{"sensor_read", sig(i32, i32), hSensor},
	{"publish_metric", sig(i32, i32, f64), hMetric},
	{"publish", sig(i32, i32, i32, i32), hPublish},
	{"config_get", sig(i32, i32, i32, i32), hConfig},
}

var hostFuncByName = func() map[string]hostFunc {
	m := make(map[string]hostFunc, len(hostFuncs))
	for _, f := range hostFuncs {
		m[f.name] = f
	}
	return m
}()

func apiTypes(vs []byte) []api.ValueType {
	out := make([]api.ValueType, len(vs))
	for i, v := range vs {
		out[i] = api.ValueType(v)
	}
	return out
}

type appKey struct{}

// instantiateHost registers host API v1 and the runtime's own poll
// function (module runtimeModule, imported only by instrumented code) in
// rt.
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(HostModule)
	for _, hf := range hostFuncs {
		var fn api.GoModuleFunc
		if hf.name == "time_ms" {
			fn = func(ctx context.Context, _ api.Module, stack []uint64) {
				a, _ := ctx.Value(appKey{}).(*App)
				if a == nil {
					stack[0] = 0
					return
				}
				a.hostCall()
				stack[0] = uint64(a.clock().Now().UnixMilli())
			}
		} else {
			impl := hf.fn
			fn = func(ctx context.Context, mod api.Module, stack []uint64) {
				a, _ := ctx.Value(appKey{}).(*App)
				if a == nil {
					stack[0] = api.EncodeI32(ErrnoNoSys)
					return
				}
				a.hostCall()
				stack[0] = api.EncodeI32(impl(ctx, a, a.memory(mod), stack))
			}
		}
		b.NewFunctionBuilder().WithGoModuleFunction(fn, apiTypes(hf.typ.params), apiTypes(hf.typ.results)).Export(hf.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return err
	}
	rb := rt.NewHostModuleBuilder(runtimeModule)
	rb.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(pollFunc), nil, []api.ValueType{api.ValueTypeI32}).Export(runtimePoll)
	_, err := rb.Instantiate(ctx)
	return err
}

// pollFunc is the runtime's poll (see App.poll). Instrumented code run
// outside an App (tests) gets a fresh quantum every time.
func pollFunc(ctx context.Context, _ api.Module, stack []uint64) {
	a, _ := ctx.Value(appKey{}).(*App)
	if a == nil {
		stack[0] = initialFuel
		return
	}
	stack[0] = uint64(a.poll(ctx))
}

// deadlineCheckEvery is how many host calls pass between two reads of the
// clock: a guest calling the host in a tight loop spends most of its time
// there, where its fuel does not run down.
const deadlineCheckEvery = 16

// hostCall counts a host call and, every deadlineCheckEvery calls, checks
// the execution's deadline.
func (a *App) hostCall() {
	a.stats.HostCalls++
	if a.stats.HostCalls%deadlineCheckEvery == 0 && !time.Now().Before(a.deadline) {
		a.expire()
	}
}

// view returns guest memory [ptr, ptr+n) without copying, after checking
// n against limit. ok is false with the errno to return.
func view(mem api.Memory, ptr, n uint32, limit int) ([]byte, int32) {
	if n > uint32(limit) { //nolint:gosec // limit is one of this file's small positive constants
		return nil, ErrnoTooBig
	}
	if mem == nil {
		if n == 0 {
			return nil, 0
		}
		return nil, ErrnoFault
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		return nil, ErrnoFault
	}
	return b, 0
}

// errno maps a HAL or sink error to the guest's errno.
func errno(ctx context.Context, err error) int32 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, hal.ErrNoSuchPin), errors.Is(err, hal.ErrNoSuchPort), errors.Is(err, hal.ErrNoDevice):
		return ErrnoNoDev
	case errors.Is(err, hal.ErrPinMode):
		return ErrnoPerm
	case errors.Is(err, hal.ErrInvalid):
		return ErrnoInval
	case errors.Is(err, hal.ErrUnsupported):
		return ErrnoNoSys
	case errors.Is(err, ErrQueueFull):
		return ErrnoAgain
	case errors.Is(err, ErrNotFound):
		return ErrnoNoEnt
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled), ctx.Err() != nil:
		return ErrnoTimedOut
	}
	return ErrnoIO
}

func u32(v uint64) uint32 { return api.DecodeU32(v) }
func s32(v uint64) int32  { return api.DecodeI32(v) }

func hLog(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	level, ptr, n := s32(s[0]), u32(s[1]), u32(s[2])
	if level < 0 || level > 3 {
		return ErrnoInval
	}
	b, e := view(mem, ptr, n, MaxLogBytes)
	if e != 0 {
		return e
	}
	if a.host.Logger != nil {
		lv := [...]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}[level]
		if a.host.Logger.Enabled(ctx, lv) {
			a.host.Logger.Log(ctx, lv, "app log", "app", a.name, "text", string(b))
		}
	}
	return 0
}

func hSleep(ctx context.Context, a *App, _ api.Memory, s []uint64) int32 {
	ms := s32(s[0])
	if ms < 0 {
		return ErrnoInval
	}
	d := time.Duration(ms) * time.Millisecond
	if d > MaxSleep {
		return ErrnoInval
	}
	// The sleep ends at the execution's deadline at the latest (on a wall
	// clock); the guest is then stopped at its next check.
	sctx, cancel := context.WithDeadline(ctx, a.deadline)
	defer cancel()
	err := hal.Sleep(sctx, a.clock(), d)
	if err != nil {
		a.expire()
	}
	return errno(ctx, err)
}

func hTickInterval(_ context.Context, a *App, _ api.Memory, s []uint64) int32 {
	ms := s32(s[0])
	if ms < int32(MinTickInterval/time.Millisecond) || ms > int32(MaxTickInterval/time.Millisecond) {
		return ErrnoInval
	}
	a.tickInterval = time.Duration(ms) * time.Millisecond
	return 0
}

func hGPIOConfig(ctx context.Context, a *App, _ api.Memory, s []uint64) int32 {
	g := a.gpio()
	if g == nil {
		return ErrnoNoSys
	}
	mode := s32(s[1])
	if mode < int32(hal.PinDisabled) || mode > int32(hal.PinOutput) {
		return ErrnoInval
	}
	return errno(ctx, g.Configure(int(s32(s[0])), hal.PinMode(mode)))
}

func hGPIOWrite(ctx context.Context, a *App, _ api.Memory, s []uint64) int32 {
	g := a.gpio()
	if g == nil {
		return ErrnoNoSys
	}
	return errno(ctx, g.Write(int(s32(s[0])), s32(s[1]) != 0))
}

func hGPIORead(ctx context.Context, a *App, _ api.Memory, s []uint64) int32 {
	g := a.gpio()
	if g == nil {
		return ErrnoNoSys
	}
	v, err := g.Read(int(s32(s[0])))
	if err != nil {
		return errno(ctx, err)
	}
	if v {
		return 1
	}
	return 0
}

func hUARTWrite(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	if a.host.Board == nil || a.host.Board.UART == nil {
		return ErrnoNoSys
	}
	b, e := view(mem, u32(s[1]), u32(s[2]), MaxIOBytes)
	if e != 0 {
		return e
	}
	n, err := a.host.Board.UART.Write(int(s32(s[0])), b)
	if err != nil {
		return errno(ctx, err)
	}
	return int32(n) //nolint:gosec // at most the guest buffer's length, a u32 under the call's limit
}

func hUARTRead(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	if a.host.Board == nil || a.host.Board.UART == nil {
		return ErrnoNoSys
	}
	b, e := view(mem, u32(s[1]), u32(s[2]), MaxIOBytes)
	if e != 0 {
		return e
	}
	n, err := a.host.Board.UART.Read(int(s32(s[0])), b)
	if err != nil {
		return errno(ctx, err)
	}
	return int32(n) //nolint:gosec // at most the guest buffer's length, a u32 under the call's limit
}

func hSPI(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	if a.host.Board == nil || a.host.Board.SPI == nil {
		return ErrnoNoSys
	}
	n := u32(s[3])
	tx, e := view(mem, u32(s[1]), n, MaxIOBytes)
	if e != 0 {
		return e
	}
	rx, e := view(mem, u32(s[2]), n, MaxIOBytes)
	if e != 0 {
		return e
	}
	// tx and rx may overlap in guest memory; transfer from a copy.
	var buf [MaxIOBytes]byte
	txc := buf[:copy(buf[:], tx)]
	if rx == nil {
		rx = []byte{}
	}
	if err := a.host.Board.SPI.Transfer(int(s32(s[0])), txc, rx); err != nil {
		return errno(ctx, err)
	}
	return int32(n) //nolint:gosec // at most the guest buffer's length, a u32 under the call's limit
}

func hI2C(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	if a.host.Board == nil || a.host.Board.I2C == nil {
		return ErrnoNoSys
	}
	addr := s32(s[1])
	if addr < 0 || addr > 0x7f {
		return ErrnoInval
	}
	w, e := view(mem, u32(s[2]), u32(s[3]), MaxIOBytes)
	if e != 0 {
		return e
	}
	r, e := view(mem, u32(s[4]), u32(s[5]), MaxIOBytes)
	if e != 0 {
		return e
	}
	var buf [MaxIOBytes]byte
	wc := buf[:copy(buf[:], w)]
	if err := a.host.Board.I2C.Transfer(int(s32(s[0])), uint16(addr), wc, r); err != nil {
		return errno(ctx, err)
	}
	return int32(len(r)) //nolint:gosec // at most the guest buffer's length, a u32 under the call's limit
}

func hSensor(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	if a.host.Board == nil || a.host.Board.Sensors == nil {
		return ErrnoNoSys
	}
	ptr := u32(s[1])
	if _, e := view(mem, ptr, 8, 8); e != 0 {
		return e
	}
	v, err := a.host.Board.Sensors.ReadSensor(int(s32(s[0])))
	if err != nil {
		return errno(ctx, err)
	}
	if !mem.WriteFloat64Le(ptr, v) {
		return ErrnoFault
	}
	return 0
}

func hMetric(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	name, e := view(mem, u32(s[0]), u32(s[1]), MaxNameBytes)
	if e != 0 {
		return e
	}
	if len(name) == 0 {
		return ErrnoInval
	}
	v := api.DecodeF64(s[2])
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return ErrnoInval
	}
	if a.host.Publisher == nil {
		return ErrnoNoSys
	}
	return errno(ctx, a.host.Publisher.PublishMetric(a.name, string(name), v))
}

func hPublish(ctx context.Context, a *App, mem api.Memory, s []uint64) int32 {
	topic, e := view(mem, u32(s[0]), u32(s[1]), MaxNameBytes)
	if e != 0 {
		return e
	}
	data, e := view(mem, u32(s[2]), u32(s[3]), MaxPayloadBytes)
	if e != 0 {
		return e
	}
	if len(topic) == 0 {
		return ErrnoInval
	}
	if a.host.Publisher == nil {
		return ErrnoNoSys
	}
	return errno(ctx, a.host.Publisher.PublishMessage(a.name, string(topic), append([]byte(nil), data...)))
}

func hConfig(_ context.Context, a *App, mem api.Memory, s []uint64) int32 {
	key, e := view(mem, u32(s[0]), u32(s[1]), MaxNameBytes)
	if e != 0 {
		return e
	}
	buf, e := view(mem, u32(s[2]), u32(s[3]), math.MaxInt32)
	if e != 0 {
		return e
	}
	if a.host.Config == nil {
		return ErrnoNoSys
	}
	v, ok := a.host.Config.Lookup(a.name, string(key))
	if !ok {
		return ErrnoNoEnt
	}
	if len(v) > math.MaxInt32 {
		return ErrnoTooBig
	}
	copy(buf, v)
	return int32(len(v)) //nolint:gosec // len(v) <= MaxInt32, checked above
}
