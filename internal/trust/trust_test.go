package trust_test

import (
	"errors"
	"testing"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/trust"
)

func TestRoundTrip(t *testing.T) {
	a, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := trust.FromAuthority(a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := trust.Parse(b.Data())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Root.Equal(a.Root.Cert) || !got.GatewayCA.Equal(a.GatewayCA.Cert) || !got.DeviceCA.Equal(a.DeviceCA.Cert) {
		t.Error("the parsed bundle differs from the authority's certificates")
	}
	certs, err := pki.ParseCertificatesPEM([]byte(b.Data()[trust.KeyBundle]))
	if err != nil {
		t.Fatal(err)
	}
	pins, err := pki.PinsFromCertificates(certs)
	if err != nil || !pins.Root.Equal(a.Root.Cert) || !pins.GatewayCA.Equal(a.GatewayCA.Cert) || !pins.DeviceCA.Equal(a.DeviceCA.Cert) {
		t.Errorf("the bundle key does not give a device's pins: %+v, %v", pins, err)
	}
}

func TestParseRefuses(t *testing.T) {
	a, _ := pki.NewAuthority(pki.AuthorityOptions{})
	other, _ := pki.NewAuthority(pki.AuthorityOptions{})
	good, _ := trust.FromAuthority(a)
	foreign, _ := trust.FromAuthority(other)
	swapped := good.Data()
	swapped[trust.KeyGatewayCA], swapped[trust.KeyDeviceCA] = swapped[trust.KeyDeviceCA], swapped[trust.KeyGatewayCA]
	mixed := good.Data()
	mixed[trust.KeyDeviceCA] = foreign.Data()[trust.KeyDeviceCA]
	two := good.Data()
	two[trust.KeyRoot] = two[trust.KeyRoot] + two[trust.KeyRoot]
	for name, data := range map[string]map[string]string{
		"empty":                           {},
		"missing device CA":               {trust.KeyRoot: good.Data()[trust.KeyRoot], trust.KeyGatewayCA: good.Data()[trust.KeyGatewayCA]},
		"intermediates swapped":           swapped,
		"device CA of another root":       mixed,
		"two certificates where one fits": two,
		"not PEM":                         {trust.KeyRoot: "hello", trust.KeyGatewayCA: "x", trust.KeyDeviceCA: "y"},
	} {
		if _, err := trust.Parse(data); !errors.Is(err, trust.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}
