package v1_test

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

func TestDeviceObjectName(t *testing.T) {
	tests := []struct {
		id       string
		want     string // exact name; empty means only "valid and hashed"
		unchange bool
	}{
		{id: "esp32-000001", want: "esp32-000001", unchange: true},
		{id: "greenhouse.7", want: "greenhouse.7", unchange: true},
		{id: "ESP32-ABC"},
		{id: "sensor_1"},
		{id: "a..b"},
		{id: "a.-b"},
		{id: "a-.b"},
		{id: "x-"},
		{id: "___"},
		{id: strings.Repeat("A", 128)},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got := wasmbedv1.DeviceObjectName(tt.id)
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Fatalf("DeviceObjectName(%q) = %q, not a valid object name: %v", tt.id, got, errs)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("DeviceObjectName(%q) = %q, want %q", tt.id, got, tt.want)
			}
			if !tt.unchange && got == strings.ToLower(tt.id) {
				t.Errorf("DeviceObjectName(%q) = %q: a changed id must carry a hash", tt.id, got)
			}
			if again := wasmbedv1.DeviceObjectName(tt.id); again != got {
				t.Errorf("not stable: %q then %q", got, again)
			}
			if prev, ok := seen[got]; ok {
				t.Errorf("ids %q and %q both map to %q", prev, tt.id, got)
			}
			seen[got] = tt.id
		})
	}
	// Ids that differ only in case or punctuation keep distinct names.
	if a, b := wasmbedv1.DeviceObjectName("Sensor-1"), wasmbedv1.DeviceObjectName("sensor_1"); a == b {
		t.Errorf("Sensor-1 and sensor_1 both map to %q", a)
	}
}

func TestDeviceApplicationName(t *testing.T) {
	long := strings.Repeat("d", 250)
	tests := []struct {
		app, device, want string
	}{
		{app: "blinky", device: "esp32-000001", want: "blinky.esp32-000001"},
		{app: "blinky", device: "greenhouse.7", want: "blinky.greenhouse.7"},
		{app: "a.b", device: "c"},
		{app: "a", device: "b.c"},
		{app: "blinky", device: long},
		{app: strings.Repeat("a", 200), device: long},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20s/%.20s", tt.app, tt.device), func(t *testing.T) {
			got := wasmbedv1.DeviceApplicationName(tt.app, tt.device)
			if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
				t.Fatalf("DeviceApplicationName = %q, not a valid object name: %v", got, errs)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if seen[got] {
				t.Errorf("%q produced twice", got)
			}
			seen[got] = true
		})
	}
}

func TestLabelValue(t *testing.T) {
	short := "esp32-000001"
	if got := wasmbedv1.LabelValue(short); got != short {
		t.Errorf("LabelValue(%q) = %q, want it unchanged", short, got)
	}
	a := wasmbedv1.LabelValue(strings.Repeat("x", 100) + "a")
	b := wasmbedv1.LabelValue(strings.Repeat("x", 100) + "b")
	for _, v := range []string{a, b} {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("LabelValue gave %q, not a valid label value: %v", v, errs)
		}
	}
	if a == b {
		t.Errorf("two long names share the label value %q", a)
	}
}
