package fleetctl

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

func TestDeployValidate(t *testing.T) {
	module := []byte("\x00asm\x01\x00\x00\x00")
	valid := func() Deploy { return Deploy{Name: "blinky", Module: module, TargetDevices: []string{"d1"}} }
	tests := []struct {
		name   string
		change func(*Deploy)
		field  string // "" when valid
	}{
		{"valid", func(*Deploy) {}, ""},
		{"selector only", func(d *Deploy) {
			d.TargetDevices = nil
			d.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}
		}, ""},
		{"no name", func(d *Deploy) { d.Name = "" }, "name"},
		{"name not a label", func(d *Deploy) { d.Name = "a.b" }, "name"},
		{"long version", func(d *Deploy) { d.Version = strings.Repeat("v", MaxVersionLength+1) }, "version"},
		{"no module", func(d *Deploy) { d.Module = nil }, "module"},
		{"not wasm", func(d *Deploy) { d.Module = []byte("hello") }, "module"},
		{"module too large", func(d *Deploy) { d.Module = append(module, make([]byte, MaxModuleSize)...) }, "module"},
		{"no targets", func(d *Deploy) { d.TargetDevices = nil }, "targetDevices"},
		{"duplicate target", func(d *Deploy) { d.TargetDevices = []string{"d1", "d1"} }, "targetDevices[1]"},
		{"bad selector", func(d *Deploy) {
			d.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a b": "c"}}
		}, "selector.matchLabels"},
		{"memory", func(d *Deploy) { d.Config = &wasmbedv1.ApplicationConfig{MemoryLimit: MaxMemoryLimit + 1} }, "config.memoryLimit"},
		{"stack", func(d *Deploy) { d.Config = &wasmbedv1.ApplicationConfig{MaxStackSize: -1} }, "config.maxStackSize"},
		{"timeout", func(d *Deploy) { d.Config = &wasmbedv1.ApplicationConfig{ExecutionTimeout: "1d"} }, "config.executionTimeout"},
		{"state", func(d *Deploy) { d.State = "paused" }, "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := valid()
			tt.change(&d)
			errs := d.Validate()
			err := d.Check()
			if tt.field == "" {
				if len(errs) != 0 || err != nil {
					t.Errorf("got %v, want valid", errs)
				}
				return
			}
			if len(errs) == 0 || !strings.HasPrefix(errs[0].Field, tt.field) {
				t.Errorf("got %v, want an error on %s", errs, tt.field)
			}
			var ie *InvalidError
			if !errors.As(err, &ie) || len(ie.Fields) != len(errs) {
				t.Errorf("Check: got %v, want an *InvalidError with %d fields", err, len(errs))
			}
		})
	}
}

func TestCheckTimeout(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{{"500ms", true}, {"1h", true}, {"1h1s", false}, {"0s", false}, {"-1s", false}, {"soon", false}, {"1.5s", true}} {
		if err := CheckTimeout(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckTimeout(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestDeployApplication(t *testing.T) {
	d := Deploy{Name: "blinky", Version: "1.0", Module: []byte("\x00asm\x01\x00\x00\x00"), TargetDevices: []string{"d1"},
		Config: &wasmbedv1.ApplicationConfig{MemoryLimit: 65536}, CreatedBy: "alice"}
	app := d.Application("fleet")
	if app.Namespace != "fleet" || app.Name != "blinky" || app.Spec.Name != "blinky" || app.Spec.Version != "1.0" ||
		app.Spec.Config.MemoryLimit != 65536 || app.Annotations[AnnotationCreatedBy] != "alice" || len(app.Spec.TargetDevices) != 1 {
		t.Errorf("got %+v", app)
	}
	if app := (&Deploy{Name: "x"}).Application("ns"); app.Annotations != nil {
		t.Errorf("annotations %v without CreatedBy, want none", app.Annotations)
	}
}
