package security

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// issueChain issues a device certificate from p's authority at the given
// time.
func (p *platform) issueChain(t testing.TB, at time.Time, id string, pub ed25519.PublicKey, lifetime time.Duration) [][]byte {
	t.Helper()
	ca := *p.ca
	ca.Clock = func() time.Time { return at }
	cert, err := ca.IssueDevice(pub, pki.DeviceOptions{DeviceID: id, Lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	return cert.DER()
}

func serialOf(t testing.TB, m *Manager) string {
	t.Helper()
	cert, err := m.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return cert.Leaf.SerialNumber.String()
}

func TestRenewalCSR(t *testing.T) {
	p := newPlatform(t)
	d, _ := enrolledDevice(t, p)
	der, err := d.sec.RenewalCSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if pub, ok := csr.PublicKey.(ed25519.PublicKey); !ok || !pub.Equal(d.sec.PublicKey()) {
		t.Errorf("CSR key: got %v, want the identity key", csr.PublicKey)
	}
	if got := csr.Subject.CommonName; got != "dev-1" {
		t.Errorf("CSR CN: got %q, want dev-1", got)
	}
	chip, _ := flash.NewMem(testGeo)
	now := t0
	fresh := openDevice(t, chip, 2, &now)
	if _, err := fresh.sec.RenewalCSR(); !errors.Is(err, ErrNotEnrolled) {
		t.Errorf("CSR before enrollment: got %v, want ErrNotEnrolled", err)
	}
}

func TestRenewPersists(t *testing.T) {
	p := newPlatform(t)
	d, now := enrolledDevice(t, p)
	*now = t0.Add(16 * time.Hour)
	chain := p.issueChain(t, *now, "dev-1", d.sec.PublicKey(), 24*time.Hour)
	if err := d.sec.Renew(chain); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	want := serialOf(t, d.sec)
	leaf, _ := x509.ParseCertificate(chain[0])
	if want != leaf.SerialNumber.String() {
		t.Errorf("serial after renew: got %s, want %s", want, leaf.SerialNumber)
	}
	if got := d.sec.DeviceID(); got != "dev-1" {
		t.Errorf("device id: got %q, want dev-1", got)
	}
	if !d.sec.RenewAt().After(*now) {
		t.Errorf("RenewAt %v not after now %v", d.sec.RenewAt(), *now)
	}
	if d.sec.CertificateExpired() {
		t.Errorf("CertificateExpired at %v: got true, want false", *now)
	}
	*now = t0.Add(41 * time.Hour)
	if !d.sec.CertificateExpired() {
		t.Errorf("CertificateExpired at %v: got false, want true", *now)
	}
	rebooted := openDevice(t, d.chip, 1, now)
	if got := serialOf(t, rebooted.sec); got != want {
		t.Errorf("serial after reboot: got %s, want %s", got, want)
	}
	if len(rebooted.sec.enr.SigningKeys) != 1 {
		t.Errorf("pinned keys after renew: got %d, want 1", len(rebooted.sec.enr.SigningKeys))
	}
}

func TestRenewRefuses(t *testing.T) {
	p := newPlatform(t)
	_, other, _ := ed25519.GenerateKey(nil)
	later := t0.Add(16 * time.Hour)
	tests := []struct {
		name  string
		chain func(d *device) [][]byte
	}{
		{"empty", func(*device) [][]byte { return nil }},
		{"garbage", func(*device) [][]byte { return [][]byte{{0x30, 0x00}} }},
		{"another key", func(*device) [][]byte {
			return p.issueChain(t, later, "dev-1", other.Public().(ed25519.PublicKey), 24*time.Hour)
		}},
		{"another device id", func(d *device) [][]byte {
			return p.issueChain(t, later, "dev-2", d.sec.PublicKey(), 24*time.Hour)
		}},
		{"expires earlier", func(d *device) [][]byte {
			return p.issueChain(t, t0, "dev-1", d.sec.PublicKey(), time.Hour)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, now := enrolledDevice(t, p)
			before := serialOf(t, d.sec)
			if err := d.sec.Renew(tt.chain(d)); !errors.Is(err, ErrBadRenewal) {
				t.Fatalf("Renew: got %v, want ErrBadRenewal", err)
			}
			if got := serialOf(t, d.sec); got != before {
				t.Errorf("serial: got %s, want %s kept", got, before)
			}
			if got := serialOf(t, openDevice(t, d.chip, 1, now).sec); got != before {
				t.Errorf("serial after reboot: got %s, want %s kept", got, before)
			}
		})
	}
}

// TestRenewPowerCut cuts power at every write step of a renewal: after the
// reboot the device holds the old certificate or the new one, never
// neither.
func TestRenewPowerCut(t *testing.T) {
	p := newPlatform(t)
	base, now := enrolledDevice(t, p)
	old := serialOf(t, base.sec)
	chain := p.issueChain(t, t0.Add(16*time.Hour), "dev-1", base.sec.PublicKey(), 24*time.Hour)
	leaf, _ := x509.ParseCertificate(chain[0])
	renewed := leaf.SerialNumber.String()
	for n := int64(0); ; n++ {
		img := base.chip.Clone()
		f := flash.NewFaulty(img)
		f.SetTear(flash.TearHalf)
		s, err := flash.Mount(f, flash.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sec, err := Open(Config{Store: s, Rand: seeded(1), Clock: func() time.Time { return *now }})
		if err != nil {
			t.Fatal(err)
		}
		f.FailAfter(n)
		err = sec.Renew(chain)
		cut := f.Off()
		f.PowerOn()
		got := serialOf(t, openDevice(t, img, 1, now).sec)
		if !cut {
			if err != nil || got != renewed {
				t.Fatalf("uncut renewal: err %v, serial %s, want %s", err, got, renewed)
			}
			return
		}
		if got != old && got != renewed {
			t.Fatalf("cut %d: serial %s, want old %s or new %s", n, got, old, renewed)
		}
		if n > 1000 {
			t.Fatal("renewal never completes")
		}
	}
}
