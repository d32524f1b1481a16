package deploy_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wasmbed/wasmbed/internal/certsign"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/trust"
)

// TestCAFilesAsInstallSays creates a CA as `wasmbed pki init` does and maps
// its files into Secret and ConfigMap keys as the kubectl commands of
// docs/install.md do: the controller loads each CA Secret for its kind, and
// gateways parse the trust ConfigMap. Crossed files are refused, so the
// mapping is what makes them load.
func TestCAFilesAsInstallSays(t *testing.T) {
	a, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ca")
	if err := pki.SaveCA(dir, a, false); err != nil {
		t.Fatal(err)
	}
	file := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// kubectl create secret generic --from-file=KEY=FILE ...
	secret := func(crt, key string) map[string][]byte {
		return map[string][]byte{
			certsign.SecretCertKey: file(crt), certsign.SecretKeyKey: file(key), certsign.SecretRootKey: file(pki.RootCertFile),
		}
	}
	gatewayCA := secret(pki.GatewayCACertFile, pki.GatewayCAKeyFile) // wasmbed-gateway-ca
	deviceCA := secret(pki.DeviceCACertFile, pki.DeviceCAKeyFile)    // wasmbed-device-ca
	for _, c := range []struct {
		name    string
		kind    certsign.Kind
		data    map[string][]byte
		wantErr bool
	}{
		{"wasmbed-gateway-ca", certsign.GatewayCA, gatewayCA, false},
		{"wasmbed-device-ca", certsign.DeviceCA, deviceCA, false},
		{"device CA files in the gateway CA's Secret", certsign.GatewayCA, deviceCA, true},
		{"gateway CA files in the device CA's Secret", certsign.DeviceCA, gatewayCA, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := certsign.LoadCA(c.kind, c.data)
			if c.wantErr != (err != nil) || (err != nil && !errors.Is(err, certsign.ErrBadCA)) {
				t.Errorf("LoadCA: %v, want error %v (ErrBadCA)", err, c.wantErr)
			}
		})
	}

	// kubectl create configmap wasmbed-trust --from-file=...
	bundle := string(file(pki.RootCertFile)) + string(file(pki.GatewayCACertFile)) + string(file(pki.DeviceCACertFile))
	data := map[string]string{
		trust.KeyRoot:      string(file(pki.RootCertFile)),
		trust.KeyGatewayCA: string(file(pki.GatewayCACertFile)),
		trust.KeyDeviceCA:  string(file(pki.DeviceCACertFile)),
		trust.KeyBundle:    bundle,
	}
	b, err := trust.Parse(data)
	if err != nil {
		t.Fatalf("trust ConfigMap: %v", err)
	}
	if !b.Root.Equal(a.Root.Cert) || !b.DeviceCA.Equal(a.DeviceCA.Cert) || !b.GatewayCA.Equal(a.GatewayCA.Cert) {
		t.Error("the trust ConfigMap holds other certificates than pki init wrote")
	}
	if want := b.Data()[trust.KeyBundle]; bundle != want {
		t.Errorf("bundle.pem (cat root.crt gateway-ca.crt device-ca.crt) differs from the bundle trust publishes")
	}
	data[trust.KeyGatewayCA], data[trust.KeyDeviceCA] = data[trust.KeyDeviceCA], data[trust.KeyGatewayCA]
	if _, err := trust.Parse(data); !errors.Is(err, trust.ErrMalformed) {
		t.Errorf("trust ConfigMap with the intermediates crossed: %v, want ErrMalformed", err)
	}
}
