// Package profile describes the boards Wasmbed firmware runs on — their
// real resource figures and the share of them applications may use — and
// decides whether an application fits a device.
//
//	p, err := profile.Lookup("hifive1")
//	use := profile.UsageOf(mod.Info(), mod.Limits())
//	if err := p.Admit(installedUsages, use); errors.Is(err, profile.ErrDoesNotFit) {
//		// *FitError says which resource, how much is needed and available
//	}
//	sim := hal.NewSim(clock, p.SimConfig())
//	board := p.Board(sim) // peripherals the board lacks are nil
//
// Figures come from the vendors' datasheets: SiFive HiFive1 (FE310-G000)
// Getting Started Guide and FE310-G000 manual; Espressif ESP32 Datasheet
// (ESP32-D0WD on an ESP32-WROOM-32 module).
package profile

import (
	"errors"
	"fmt"
	"sort"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// Errors.
var (
	// ErrUnknownProfile is returned by Lookup for a name it does not know.
	ErrUnknownProfile = errors.New("unknown device profile")
	// ErrDoesNotFit is matched by every *FitError.
	ErrDoesNotFit = errors.New("application does not fit the device")
)

// Link is how a board reaches its gateway.
type Link string

// Links.
const (
	LinkSerial Link = "serial" // UART (SLIP-framed) or an Ethernet adapter through a host
	LinkWiFi   Link = "wifi"
)

// Profile is a board's resources and the budget left to applications.
type Profile struct {
	// Name is the Device spec's deviceType ("hifive1", "esp32").
	Name string
	// Product and MCU are the product names.
	Product, MCU string
	// Arch is the CPU architecture, Cores and ClockHz its cores and clock.
	Arch    string
	Cores   int
	ClockHz uint64
	// RAMBytes is the data SRAM of the MCU; FlashBytes the (external) flash.
	RAMBytes, FlashBytes uint64
	// AppRAMBytes and AppFlashBytes are the shares the firmware leaves to
	// applications (all apps together: linear memory, call stack and the
	// runtime's per-instance state); AppFlashBytes stores the modules.
	AppRAMBytes, AppFlashBytes uint64
	// PerAppOverheadBytes is the RAM the runtime needs per instance.
	PerAppOverheadBytes uint64
	// MaxApps is the number of apps that may be installed at once.
	MaxApps int
	// MaxModuleBytes is the largest module the app slot accepts.
	MaxModuleBytes uint64
	// ModuleBounds caps the structure of the modules the board accepts
	// (functions, body size, locals, nesting, branch tables, tables), so
	// that installing any module it accepts takes bounded time and memory.
	ModuleBounds wasm.Bounds
	// GPIOPins, UARTPorts, SPIBuses and I2CBuses are the peripherals
	// available to applications.
	GPIOPins, UARTPorts, SPIBuses, I2CBuses int
	// WiFi reports a radio; Link how the board reaches the gateway.
	WiFi bool
	Link Link
	// Capabilities are advertised in the Device spec.
	Capabilities []string
	// Power is the board's current draw per power state.
	Power hal.PowerModel
}

var profiles = map[string]Profile{
	"hifive1": {
		Name:    "hifive1",
		Product: "SiFive HiFive1",
		MCU:     "SiFive FE310-G000 (E31 core, RV32IMAC)",
		Arch:    "riscv32",
		Cores:   1,
		ClockHz: 320_000_000,
		// 16 KiB data scratchpad (DTIM) SRAM; the 16 KiB instruction cache
		// is not data memory. 128 Mbit SPI flash (ISSI IS25LP128).
		RAMBytes:            16 * 1024,
		FlashBytes:          16 * 1024 * 1024,
		AppRAMBytes:         8 * 1024,
		AppFlashBytes:       4 * 1024 * 1024,
		PerAppOverheadBytes: 512,
		MaxApps:             1,
		MaxModuleBytes:      256 * 1024,
		ModuleBounds: wasm.Bounds{
			MaxFunctions: 1024, MaxFunctionBytes: 16 << 10, MaxLocals: 256, MaxTotalLocals: 8192,
			MaxNesting: 64, MaxBranchTable: 256, MaxCompileWork: 1 << 22, MaxTableElements: 1024,
			MaxTypes: 512, MaxImports: 64, MaxExports: 256, MaxGlobals: 512, MaxSegments: 256,
		},
		// 19 digital I/O pins on the Arduino-style headers, UART0 through
		// the FTDI USB bridge, one QSPI controller on the headers, I2C in
		// software on two GPIOs (the FE310-G000 has no I2C block).
		GPIOPins:     19,
		UARTPorts:    1,
		SPIBuses:     1,
		I2CBuses:     1,
		WiFi:         false,
		Link:         LinkSerial,
		Capabilities: []string{"wasm", "tls", "serial"},
		Power:        hal.PowerModel{ActiveMilliAmps: 16, SleepMilliAmps: 3, DeepSleepMilliAmps: 0.009, Volts: 3.3},
	},
	"esp32": {
		Name:    "esp32",
		Product: "ESP32-DevKitC (ESP32-WROOM-32)",
		MCU:     "Espressif ESP32-D0WD (Xtensa LX6)",
		Arch:    "xtensa-lx6",
		Cores:   2,
		ClockHz: 240_000_000,
		// 520 KiB on-chip SRAM, 4 MiB SPI flash on the WROOM-32 module.
		RAMBytes:            520 * 1024,
		FlashBytes:          4 * 1024 * 1024,
		AppRAMBytes:         256 * 1024,
		AppFlashBytes:       1024 * 1024,
		PerAppOverheadBytes: 4 * 1024,
		MaxApps:             4,
		MaxModuleBytes:      512 * 1024,
		ModuleBounds: wasm.Bounds{
			MaxFunctions: 4096, MaxFunctionBytes: 32 << 10, MaxLocals: 1024, MaxTotalLocals: 32768,
			MaxNesting: 128, MaxBranchTable: 1024, MaxCompileWork: 1 << 23, MaxTableElements: 4096,
			MaxTypes: 1024, MaxImports: 64, MaxExports: 1024, MaxGlobals: 1024, MaxSegments: 1024,
		},
		// 34 GPIOs, 3 UARTs, 2 general-purpose SPI controllers (HSPI,
		// VSPI), 2 I2C controllers.
		GPIOPins:     34,
		UARTPorts:    3,
		SPIBuses:     2,
		I2CBuses:     2,
		WiFi:         true,
		Link:         LinkWiFi,
		Capabilities: []string{"wasm", "tls", "wifi", "bluetooth"},
		Power:        hal.PowerModel{ActiveMilliAmps: 95, SleepMilliAmps: 0.8, DeepSleepMilliAmps: 0.01, Volts: 3.3},
	},
}

// Lookup returns the profile named name.
func Lookup(name string) (Profile, error) {
	p, ok := profiles[name]
	if !ok {
		return Profile{}, fmt.Errorf("%w %q (known: %v)", ErrUnknownProfile, name, Names())
	}
	p.Capabilities = append([]string(nil), p.Capabilities...)
	return p, nil
}

// Names returns the known profile names, sorted.
func Names() []string {
	out := make([]string, 0, len(profiles))
	for n := range profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Usage is what one installed application takes from a device.
type Usage struct {
	// App names the application (for error messages).
	App string
	// RAMBytes: linear memory (its footprint, or the whole memoryLimit if
	// the module grows its memory), its tables (what they may hold), plus
	// maxStackSize for the call stack. Profile.Admit adds the per-app
	// runtime overhead.
	RAMBytes uint64
	// FlashBytes: the stored module.
	FlashBytes uint64
}

// UsageOf computes the usage of an app from its module and limits.
func UsageOf(app string, info wasm.ModuleInfo, lim sandbox.Limits) Usage {
	lim = lim.WithDefaults()
	mem := info.MemoryFootprint()
	if info.UsesMemoryGrow {
		maxPages := uint64(lim.MemoryPages())
		if info.HasMemoryMax && uint64(info.MemoryMaxPages) < maxPages {
			maxPages = uint64(info.MemoryMaxPages)
		}
		mem = maxPages * wasm.PageSize
	}
	return Usage{App: app, RAMBytes: mem + info.TableBytes() + lim.MaxStackSize, FlashBytes: uint64(info.Size)} //nolint:gosec // a module's size is never negative
}

// Resource names what an app did not fit in.
type Resource string

// Resources.
const (
	ResourceRAM        Resource = "ram"
	ResourceFlash      Resource = "flash"
	ResourceApps       Resource = "app-slots"
	ResourceModuleSize Resource = "module-size"
)

// FitError reports an app a device cannot take. It matches ErrDoesNotFit.
type FitError struct {
	Profile  string
	App      string
	Resource Resource
	// Need is what the app needs, Available what is left, in bytes (or
	// apps for ResourceApps).
	Need, Available uint64
}

func (e *FitError) Error() string {
	return fmt.Sprintf("%v: app %q on %s: needs %d %s, %d available", ErrDoesNotFit, e.App, e.Profile, e.Need, e.Resource, e.Available)
}

// Unwrap returns ErrDoesNotFit.
func (e *FitError) Unwrap() error { return ErrDoesNotFit }

// Admit reports whether app fits next to the installed apps (which must
// not include app itself; to update an app in place, leave its old usage
// out). It returns nil or a *FitError.
func (p Profile) Admit(installed []Usage, app Usage) error {
	fit := func(r Resource, need, avail uint64) error {
		return &FitError{Profile: p.Name, App: app.App, Resource: r, Need: need, Available: avail}
	}
	if len(installed)+1 > p.MaxApps {
		return fit(ResourceApps, uint64(len(installed)+1), uint64(p.MaxApps)) //nolint:gosec // counts of apps, never negative
	}
	if app.FlashBytes > p.MaxModuleBytes {
		return fit(ResourceModuleSize, app.FlashBytes, p.MaxModuleBytes)
	}
	var ram, flash uint64
	for _, u := range installed {
		ram += u.RAMBytes + p.PerAppOverheadBytes
		flash += u.FlashBytes
	}
	needRAM := app.RAMBytes + p.PerAppOverheadBytes
	if ram+needRAM > p.AppRAMBytes {
		return fit(ResourceRAM, needRAM, sub(p.AppRAMBytes, ram))
	}
	if flash+app.FlashBytes > p.AppFlashBytes {
		return fit(ResourceFlash, app.FlashBytes, sub(p.AppFlashBytes, flash))
	}
	return nil
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// SimConfig returns a simulated-board configuration with this profile's
// peripherals and power model.
func (p Profile) SimConfig() hal.SimConfig {
	return hal.SimConfig{Pins: p.GPIOPins, UARTPorts: p.UARTPorts, SPIBuses: p.SPIBuses, I2CBuses: p.I2CBuses, Power: p.Power}
}

// Board returns sim's peripherals as this profile's board: peripherals
// the profile does not have are nil (the host API then answers ENOSYS).
func (p Profile) Board(sim *hal.Sim) *hal.Board {
	b := sim.Board()
	if p.GPIOPins == 0 {
		b.GPIO = nil
	}
	if p.UARTPorts == 0 {
		b.UART = nil
	}
	if p.SPIBuses == 0 {
		b.SPI = nil
	}
	if p.I2CBuses == 0 {
		b.I2C = nil
	}
	return b
}
