package profile

import (
	"errors"
	"strings"
	"testing"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/hal"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name              string
		ram, flash        uint64
		wifi              bool
		link              Link
		cores, pins, apps int
		err               error
	}{
		{name: "hifive1", ram: 16 << 10, flash: 16 << 20, wifi: false, link: LinkSerial, cores: 1, pins: 19, apps: 1},
		{name: "esp32", ram: 520 << 10, flash: 4 << 20, wifi: true, link: LinkWiFi, cores: 2, pins: 34, apps: 4},
		{name: "stm32", err: ErrUnknownProfile},
		{name: "", err: ErrUnknownProfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Lookup(tt.name)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Lookup: got %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if p.RAMBytes != tt.ram || p.FlashBytes != tt.flash || p.WiFi != tt.wifi || p.Link != tt.link ||
				p.Cores != tt.cores || p.GPIOPins != tt.pins || p.MaxApps != tt.apps {
				t.Errorf("got %+v, want ram=%d flash=%d wifi=%v link=%s cores=%d pins=%d apps=%d",
					p, tt.ram, tt.flash, tt.wifi, tt.link, tt.cores, tt.pins, tt.apps)
			}
			if p.AppRAMBytes >= p.RAMBytes || p.AppFlashBytes >= p.FlashBytes {
				t.Errorf("app budget (%d RAM, %d flash) must be a fraction of the board's", p.AppRAMBytes, p.AppFlashBytes)
			}
		})
	}
	if got := strings.Join(Names(), ","); got != "esp32,hifive1" {
		t.Errorf("Names: got %s, want esp32,hifive1", got)
	}
}

func usage(t *testing.T, app string, lim sandbox.Limits) Usage {
	t.Helper()
	info, err := wasm.Inspect(apps.MustLoad(app), wasm.Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	return UsageOf(app, *info, lim)
}

func TestAdmit(t *testing.T) {
	small := sandbox.Limits{MaxStackSize: 2048}
	tests := []struct {
		name      string
		profile   string
		installed []Usage
		app       Usage
		resource  Resource // "" = fits
	}{
		{name: "blinky fits hifive1", profile: "hifive1", app: usage(t, apps.Blinky, small)},
		{name: "blinky with default 16 KiB stack too big for hifive1", profile: "hifive1", app: usage(t, apps.Blinky, sandbox.Limits{}), resource: ResourceRAM},
		{name: "growing app reserves its memory limit", profile: "hifive1", app: usage(t, apps.MemHog, small), resource: ResourceRAM},
		{name: "second app on hifive1", profile: "hifive1", installed: []Usage{usage(t, apps.Blinky, small)}, app: usage(t, apps.Sensor, small), resource: ResourceApps},
		{name: "growing app fits esp32", profile: "esp32", app: usage(t, apps.MemHog, sandbox.Limits{MemoryLimit: 2 * wasm.PageSize})},
		{name: "four apps on esp32", profile: "esp32", installed: []Usage{usage(t, apps.Blinky, small), usage(t, apps.Sensor, small), usage(t, apps.Compute, small)}, app: usage(t, apps.Blinky, small)},
		{name: "fifth app on esp32", profile: "esp32", installed: []Usage{{}, {}, {}, {}}, app: usage(t, apps.Blinky, small), resource: ResourceApps},
		{name: "esp32 RAM exhausted", profile: "esp32", installed: []Usage{{App: "a", RAMBytes: 200 << 10}}, app: Usage{App: "b", RAMBytes: 60 << 10}, resource: ResourceRAM},
		{name: "esp32 flash exhausted", profile: "esp32", installed: []Usage{{App: "a", FlashBytes: 500 << 10}, {App: "b", FlashBytes: 500 << 10}}, app: Usage{App: "c", FlashBytes: 100 << 10}, resource: ResourceFlash},
		{name: "module too large", profile: "hifive1", app: Usage{App: "big", FlashBytes: 300 << 10}, resource: ResourceModuleSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Lookup(tt.profile)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Admit(tt.installed, tt.app)
			if tt.resource == "" {
				if err != nil {
					t.Fatalf("Admit: got %v, want nil", err)
				}
				return
			}
			var fe *FitError
			if !errors.As(err, &fe) || !errors.Is(err, ErrDoesNotFit) {
				t.Fatalf("Admit: got %v, want a *FitError", err)
			}
			if fe.Resource != tt.resource || fe.Profile != tt.profile || fe.App != tt.app.App {
				t.Errorf("got %+v, want resource %s on %s for %q", fe, tt.resource, tt.profile, tt.app.App)
			}
		})
	}
}

func TestUsageOf(t *testing.T) {
	u := usage(t, apps.Blinky, sandbox.Limits{MaxStackSize: 1000})
	// Blinky never grows memory: it needs its static data and C stack
	// (below __heap_base, about 2 KiB), not a whole page.
	if u.RAMBytes <= 1000 || u.RAMBytes > 1000+4096 {
		t.Errorf("blinky RAM: got %d, want 1000 + about 2 KiB", u.RAMBytes)
	}
	if u.FlashBytes != uint64(len(apps.MustLoad(apps.Blinky))) {
		t.Errorf("blinky flash: got %d, want the module size", u.FlashBytes)
	}
	hog := usage(t, apps.MemHog, sandbox.Limits{MemoryLimit: 3 * wasm.PageSize, MaxStackSize: 1000})
	if hog.RAMBytes != 3*wasm.PageSize+1000 {
		t.Errorf("memhog RAM: got %d, want 3 pages + stack", hog.RAMBytes)
	}
}

func TestBoard(t *testing.T) {
	p, _ := Lookup("hifive1")
	p.I2CBuses = 0
	sim := hal.NewSim(hal.NewManualClock(hal.SystemClock{}.Now()), p.SimConfig())
	b := p.Board(sim)
	if b.I2C != nil || b.GPIO == nil || b.UART == nil {
		t.Errorf("board: got I2C=%v GPIO=%v UART=%v, want no I2C only", b.I2C, b.GPIO, b.UART)
	}
	if err := b.GPIO.Configure(19, hal.PinOutput); !errors.Is(err, hal.ErrNoSuchPin) {
		t.Errorf("pin 19 on hifive1: got %v, want ErrNoSuchPin", err)
	}
}
