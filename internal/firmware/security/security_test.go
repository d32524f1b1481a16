package security

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
	"github.com/wasmbed/wasmbed/internal/seal"
)

var (
	testGeo = flash.Geometry{PageSize: 256, BlockSize: 1024, Blocks: 64}
	t0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// seeded returns a deterministic randomness source.
func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	return rand.NewChaCha8(s)
}

// platform is the control plane side: CAs, the artifact signing key and the
// sealing key.
type platform struct {
	ca      *pki.Authority
	signer  *artifact.Signer
	sealKey *ecdh.PrivateKey
}

func newPlatform(t testing.TB) *platform {
	t.Helper()
	ca, err := pki.NewAuthority(pki.AuthorityOptions{Clock: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := artifact.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := seal.ParsePrivateKey(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &platform{ca: ca, signer: signer, sealKey: sk}
}

// enrollResponse issues what the gateway sends to a device with key pub.
func (p *platform) enrollResponse(t testing.TB, id string, pub ed25519.PublicKey) *protocol.EnrollResponse {
	t.Helper()
	cert, err := p.ca.IssueDevice(pub, pki.DeviceOptions{DeviceID: id, Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return &protocol.EnrollResponse{DeviceID: id, CertChain: cert.DER(), SigningKey: p.signer.PublicKey(), SealingKey: p.sealKey.PublicKey().Bytes()}
}

var wasm = append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte{0x42}, 600)...)

func manifest(app string, seq uint64, mods ...func(*artifact.Manifest)) artifact.Manifest {
	m := artifact.Manifest{
		App: app, Version: "1.0." + string(rune('0'+seq%10)), DeviceID: "dev-1", Sequence: seq,
		Limits:   sandbox.Limits{MemoryLimit: 64 << 10, ExecutionTimeout: 100 * time.Millisecond, MaxStackSize: 8 << 10},
		IssuedAt: t0, Expires: t0.Add(time.Hour),
	}
	for _, f := range mods {
		f(&m)
	}
	return m
}

func (p *platform) sign(t testing.TB, m artifact.Manifest, sealFor *ecdh.PublicKey) []byte {
	t.Helper()
	var opts artifact.SignOptions
	if sealFor != nil {
		s, err := seal.NewSealer(p.sealKey, sealFor, seal.SealerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		opts.Sealer = s
	}
	data, _, err := p.signer.Sign(m, wasm, opts)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

type device struct {
	chip  *flash.MemChip
	store *flash.Store
	sec   *Manager
}

func openDevice(t testing.TB, chip *flash.MemChip, seed uint64, now *time.Time) *device {
	t.Helper()
	s, err := flash.Mount(chip, flash.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec, err := Open(Config{Store: s, Rand: seeded(seed), Clock: func() time.Time { return *now }, DeviceType: "esp32"})
	if err != nil {
		t.Fatal(err)
	}
	return &device{chip: chip, store: s, sec: sec}
}

func enrolledDevice(t testing.TB, p *platform) (*device, *time.Time) {
	t.Helper()
	chip, _ := flash.NewMem(testGeo)
	now := new(time.Time)
	*now = t0
	d := openDevice(t, chip, 1, now)
	if err := d.sec.Enroll(p.enrollResponse(t, "dev-1", d.sec.PublicKey())); err != nil {
		t.Fatal(err)
	}
	return d, now
}

func TestIdentityGeneratedOnceFromInjectedRandomness(t *testing.T) {
	p0 := newPlatform(t)
	now := t0
	chip, _ := flash.NewMem(testGeo)
	a := openDevice(t, chip, 1, &now)
	again := openDevice(t, chip, 99, &now)
	if !a.sec.PublicKey().Equal(again.sec.PublicKey()) || !a.sec.SealingPublicKey().Equal(again.sec.SealingPublicKey()) {
		t.Fatal("reboot generated new keys")
	}
	chip2, _ := flash.NewMem(testGeo)
	same := openDevice(t, chip2, 1, &now)
	if !same.sec.PublicKey().Equal(a.sec.PublicKey()) {
		t.Fatal("same seed gave a different key: generation is not deterministic")
	}
	chip3, _ := flash.NewMem(testGeo)
	if other := openDevice(t, chip3, 2, &now); other.sec.PublicKey().Equal(a.sec.PublicKey()) {
		t.Fatal("different seeds gave the same key")
	}
	binding := bytes.Repeat([]byte{0xb1}, pki.EnrollmentBindingSize)
	req, err := a.sec.EnrollRequest(binding)
	if err != nil || req.KeyAlgorithm != protocol.KeyEd25519 || !bytes.Equal(req.PublicKey, a.sec.PublicKey()) || req.DeviceType != "esp32" {
		t.Fatalf("enroll request %+v, %v", req, err)
	}
	if want := a.sec.SealingPublicKey().Bytes(); len(req.SealingKey) != 32 || !bytes.Equal(req.SealingKey, want) {
		t.Fatalf("enroll request sealing key: got %x, want %x", req.SealingKey, want)
	}
	// The request proves possession of the key and binds the sealing key
	// to it and to the connection: what a gateway checks.
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p0.ca.IssueDeviceFromCSR(csr, pki.DeviceRequest{DeviceID: "dev-1", PublicKey: a.sec.PublicKey()}); err != nil {
		t.Fatalf("enroll request CSR: %v", err)
	}
	if err := pki.VerifySealingKeyProof(a.sec.PublicKey(), binding, req.SealingKey, req.SealingKeyProof); err != nil {
		t.Fatalf("sealing key proof: %v", err)
	}
	if err := pki.VerifySealingKeyProof(a.sec.PublicKey(), bytes.Repeat([]byte{0xb2}, pki.EnrollmentBindingSize), req.SealingKey, req.SealingKeyProof); err == nil {
		t.Fatal("sealing key proof verifies for another connection")
	}
	if a.sec.DeviceID() != "" || a.sec.Enrolled() {
		t.Fatal("fresh device reports an id")
	}
	if _, err := a.sec.Certificate(); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("certificate before enrollment: got %v, want ErrNotEnrolled", err)
	}
}

func TestFirstBootPowerCut(t *testing.T) {
	now := t0
	for n := int64(0); ; n++ {
		chip, _ := flash.NewMem(testGeo)
		f := flash.NewFaulty(chip)
		f.SetTear(flash.TearHalf)
		s, err := flash.Mount(f, flash.Options{})
		if err != nil {
			t.Fatal(err)
		}
		f.FailAfter(n)
		_, err = Open(Config{Store: s, Rand: seeded(1)})
		if !f.Off() {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		f.PowerOn()
		d := openDevice(t, chip, 1, &now)
		want := openDevice(t, must(flash.NewMem(testGeo)), 1, &now)
		if !d.sec.PublicKey().Equal(want.sec.PublicKey()) {
			t.Fatalf("cut %d: identity after reboot differs", n)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestEnroll(t *testing.T) {
	p := newPlatform(t)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)).Public().(ed25519.PublicKey)
	tests := []struct {
		name   string
		mutate func(d *device, r *protocol.EnrollResponse)
		ok     bool
	}{
		{"valid", func(*device, *protocol.EnrollResponse) {}, true},
		{"certificate for another key", func(_ *device, r *protocol.EnrollResponse) {
			r.CertChain = p.enrollResponse(t, "dev-1", other).CertChain
		}, false},
		{"id differs from certificate", func(_ *device, r *protocol.EnrollResponse) { r.DeviceID = "dev-2" }, false},
		{"invalid id", func(_ *device, r *protocol.EnrollResponse) { r.DeviceID = "-bad id" }, false},
		{"empty chain", func(_ *device, r *protocol.EnrollResponse) { r.CertChain = nil }, false},
		{"garbage certificate", func(_ *device, r *protocol.EnrollResponse) { r.CertChain = [][]byte{{1, 2, 3}} }, false},
		{"short signing key", func(_ *device, r *protocol.EnrollResponse) { r.SigningKey = r.SigningKey[:31] }, false},
		// Under the identity point anyone could sign artifacts.
		{"small-order signing key", func(_ *device, r *protocol.EnrollResponse) { r.SigningKey = append([]byte{1}, make([]byte, 31)...) }, false},
		{"bad sealing key", func(_ *device, r *protocol.EnrollResponse) { r.SealingKey = []byte{1} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chip, _ := flash.NewMem(testGeo)
			now := t0
			d := openDevice(t, chip, 1, &now)
			r := p.enrollResponse(t, "dev-1", d.sec.PublicKey())
			tt.mutate(d, r)
			err := d.sec.Enroll(r)
			if tt.ok != (err == nil) || (!tt.ok && !errors.Is(err, ErrBadEnrollment)) {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
			after := openDevice(t, chip, 1, &now)
			if got, want := after.sec.DeviceID(), map[bool]string{true: "dev-1", false: ""}[tt.ok]; got != want {
				t.Fatalf("after reboot device id %q, want %q", got, want)
			}
			if !tt.ok {
				return
			}
			cert, err := after.sec.Certificate()
			if err != nil || len(cert.Certificate) != 1 || cert.Leaf == nil {
				t.Fatalf("certificate: %v, want the leaf alone", err)
			}
			if _, err := x509.ParseCertificate(cert.Certificate[0]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRenewal(t *testing.T) {
	p := newPlatform(t)
	d, now := enrolledDevice(t, p)
	at := d.sec.RenewAt()
	cases := []struct {
		at   time.Time
		want bool
	}{{t0, false}, {at.Add(-time.Second), false}, {at, true}, {t0.Add(23 * time.Hour), true}}
	for _, c := range cases {
		*now = c.at
		if got := d.sec.NeedsRenewal(); got != c.want {
			t.Errorf("at %s: got %v, want %v", c.at, got, c.want)
		}
	}
}

func TestVerifyArtifactRefusals(t *testing.T) {
	p := newPlatform(t)
	rogue, _ := artifact.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)))
	otherDevice, _ := seal.ParsePrivateKey(bytes.Repeat([]byte{5}, 32))
	tests := []struct {
		name   string
		app    string
		build  func(d *device) []byte
		want   Refusal
		reason protocol.Reason
		sealed []byte // the command's separate sealed payload
	}{
		{"malformed", "app", func(*device) []byte { return []byte("not cbor") }, RefusedMalformed, protocol.ReasonMalformedArtifact, nil},
		{"too large", "app", func(*device) []byte { return make([]byte, artifact.DefaultMaxSize+1) }, RefusedTooLarge, protocol.ReasonMalformedArtifact, nil},
		{"unknown signer", "app", func(*device) []byte {
			data, _, err := rogue.Sign(manifest("app", 1), wasm, artifact.SignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return data
		}, RefusedUnknownSigner, protocol.ReasonBadSignature, nil},
		{"bad signature", "app", func(*device) []byte {
			s := must(artifact.Unmarshal(p.sign(t, manifest("app", 1), nil), 0))
			s.Signature[3] ^= 1
			return must(s.Marshal())
		}, RefusedBadSignature, protocol.ReasonBadSignature, nil},
		{"hash mismatch", "app", func(*device) []byte {
			s := must(artifact.Unmarshal(p.sign(t, manifest("app", 6), nil), 0))
			s.Payload[len(s.Payload)-1] ^= 1
			return must(s.Marshal())
		}, RefusedHashMismatch, protocol.ReasonBadSignature, nil},
		{"wrong device", "app", func(*device) []byte {
			return p.sign(t, manifest("app", 1, func(m *artifact.Manifest) { m.DeviceID = "dev-2" }), nil)
		}, RefusedWrongDevice, protocol.ReasonWrongDevice, nil},
		{"expired", "app", func(*device) []byte {
			return p.sign(t, manifest("app", 1, func(m *artifact.Manifest) { m.IssuedAt, m.Expires = t0.Add(-2*time.Hour), t0 }), nil)
		}, RefusedExpired, protocol.ReasonExpired, nil},
		{"not yet valid", "app", func(*device) []byte {
			return p.sign(t, manifest("app", 1, func(m *artifact.Manifest) { m.IssuedAt, m.Expires = t0.Add(time.Hour), t0.Add(2*time.Hour) }), nil)
		}, RefusedNotYetValid, protocol.ReasonExpired, nil},
		{"replay", "app", func(*device) []byte { return p.sign(t, manifest("app", 5), nil) }, RefusedReplay, protocol.ReasonReplay, nil},
		{"downgrade", "app", func(*device) []byte { return p.sign(t, manifest("app", 4), nil) }, RefusedDowngrade, protocol.ReasonReplay, nil},
		{"decryption failure", "app", func(*device) []byte {
			return p.sign(t, manifest("app", 6), otherDevice.PublicKey())
		}, RefusedDecrypt, protocol.ReasonDecryptFailed, nil},
		{"wrong app", "other", func(*device) []byte { return p.sign(t, manifest("app", 6), nil) }, RefusedWrongApp, protocol.ReasonMalformedArtifact, nil},
		// A valid artifact, but the command also carries the reserved
		// separate sealed payload: refused, not silently dropped.
		{"separate sealed payload", "app", func(*device) []byte { return p.sign(t, manifest("app", 6), nil) }, RefusedSeparateSealed,
			protocol.ReasonMalformedArtifact, []byte{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := enrolledDevice(t, p)
			// Sequence 5 of "app" was accepted before.
			install(t, d, p.sign(t, manifest("app", 5), nil))
			before := snapshot(t, d.store)
			v, err := d.sec.VerifyArtifact(tt.app, tt.build(d), tt.sealed)
			var re *RefusalError
			if !errors.As(err, &re) || re.Reason != tt.want {
				t.Fatalf("got %v, want refusal %s", err, tt.want)
			}
			if v != nil {
				t.Fatal("refusal returned a verified artifact")
			}
			if re.ProtocolReason() != tt.reason {
				t.Fatalf("protocol reason %s, want %s", re.ProtocolReason(), tt.reason)
			}
			if re.PeerMessage() == "" || re.PeerMessage() == "internal error" {
				t.Fatalf("peer message %q", re.PeerMessage())
			}
			if d.sec.Refusals(tt.want) != 1 {
				t.Fatalf("refusal counter %d, want 1", d.sec.Refusals(tt.want))
			}
			if !bytes.Equal(before, snapshot(t, d.store)) {
				t.Fatal("refusal changed flash")
			}
		})
	}
	t.Run("not enrolled", func(t *testing.T) {
		chip, _ := flash.NewMem(testGeo)
		now := t0
		d := openDevice(t, chip, 1, &now)
		_, err := d.sec.VerifyArtifact("app", p.sign(t, manifest("app", 1), nil), nil)
		var re *RefusalError
		if !errors.As(err, &re) || re.Reason != RefusedNotEnrolled {
			t.Fatalf("got %v, want not enrolled", err)
		}
	})
}

// snapshot renders every key and value of the store.
func snapshot(t testing.TB, s *flash.Store) []byte {
	t.Helper()
	var b []byte
	for _, k := range s.Keys("") {
		v, err := s.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(append(b, k...), 0), v...)
	}
	return b
}

// verifier adapts the Manager to the application manager, as the device
// composition does (which runs its admission between the two).
type verifier struct{ sec *Manager }

func (v verifier) VerifyArtifact(_ context.Context, app string, data, sealed []byte) (appmgr.Request, func(), error) {
	a, err := v.sec.VerifyArtifact(app, data, sealed)
	if err != nil {
		return appmgr.Request{}, nil, err
	}
	m := &a.Manifest
	return appmgr.Request{
		Name: m.App, Version: m.Version, Sequence: m.Sequence, Module: a.Module, SHA256: m.ModuleHash,
		Limits: m.Limits,
		Extra:  a.Mark,
	}, a.Committed, nil
}

func (v verifier) OpenConfig(app string, generation uint64, sealed []byte) (map[string]string, error) {
	return v.sec.OpenConfig(app, generation, sealed)
}

// install verifies data and installs it through an application manager,
// committing the replay mark with the module.
func install(t testing.TB, d *device, data []byte) appmgr.Status {
	t.Helper()
	req, done, err := verifier{d.sec}.VerifyArtifact(context.Background(), "app", data, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	m, err := appmgr.Open(context.Background(), appmgr.Config{Store: d.store, Runner: nopRunner{}})
	if err != nil {
		t.Fatal(err)
	}
	req.Start = true
	st, err := m.Install(context.Background(), req)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	done()
	return st
}

type nopRunner struct{}

func (nopRunner) Start(context.Context, appmgr.RunSpec, func(error)) (appmgr.Instance, error) {
	return nopRunner{}, nil
}
func (nopRunner) Stop(context.Context) error { return nil }

func TestConfidentialArtifact(t *testing.T) {
	p := newPlatform(t)
	d, _ := enrolledDevice(t, p)
	v, err := d.sec.VerifyArtifact("app", p.sign(t, manifest("app", 1), d.sec.SealingPublicKey()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.sec.LastSequence("app") != 0 {
		t.Fatal("verification alone raised the replay mark")
	}
	v.Committed()
	if m := v.Manifest; !bytes.Equal(v.Module, wasm) || m.Sequence != 1 || m.Limits.MemoryLimit != 64<<10 || m.Limits.ExecutionTimeout != 100*time.Millisecond {
		t.Fatalf("verified %+v does not match the manifest", m)
	}
	if d.sec.LastSequence("app") != 1 {
		t.Fatalf("mark %d, want 1", d.sec.LastSequence("app"))
	}
}

// TestReplayMarkCommittedWithInstall cuts power at every write step of an
// install and checks that, after reboot, the replay mark is raised exactly
// when the new version is installed.
func TestReplayMarkCommittedWithInstall(t *testing.T) {
	p := newPlatform(t)
	base, _ := enrolledDevice(t, p)
	install(t, base, p.sign(t, manifest("app", 1), nil))
	data := p.sign(t, manifest("app", 2), nil)
	now := t0
	for n := int64(0); ; n++ {
		img := base.chip.Clone()
		f := flash.NewFaulty(img)
		s, err := flash.Mount(f, flash.Options{})
		if err != nil {
			t.Fatal(err)
		}
		sec, err := Open(Config{Store: s, Rand: seeded(1), Clock: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		m, err := appmgr.Open(t.Context(), appmgr.Config{Store: s, Runner: nopRunner{}})
		if err != nil {
			t.Fatal(err)
		}
		c := &appmgr.Commands{Apps: m, Verifier: verifier{sec}}
		f.FailAfter(n)
		st := c.Deploy(t.Context(), &protocol.Deploy{App: "app", Sequence: 2, Artifact: data, Start: true})
		cut := f.Off()
		f.PowerOn()
		d := openDevice(t, img, 1, &now)
		m2, err := appmgr.Open(t.Context(), appmgr.Config{Store: d.store, Runner: nopRunner{}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := m2.Status("app")
		if mark := d.sec.LastSequence("app"); mark != got.Sequence {
			t.Fatalf("cut %d: replay mark %d but installed sequence %d", n, mark, got.Sequence)
		}
		if !cut {
			if st.State != protocol.StateRunning || got.Sequence != 2 {
				t.Fatalf("final: status %+v, installed %d", st, got.Sequence)
			}
			// Delivered again, the same artifact is reported, not refused.
			c2 := &appmgr.Commands{Apps: m2, Verifier: verifier{d.sec}}
			if again := c2.Deploy(t.Context(), &protocol.Deploy{App: "app", Sequence: 2, Artifact: data, Start: true}); again.State != protocol.StateRunning {
				t.Fatalf("redelivery: %+v", again)
			}
			if old := c2.Deploy(t.Context(), &protocol.Deploy{App: "app", Sequence: 1, Artifact: p.sign(t, manifest("app", 1), nil)}); old.State != protocol.StateRefused || old.Reason != protocol.ReasonReplay {
				t.Fatalf("old artifact after reboot: %+v", old)
			}
			return
		}
	}
}

func TestReplayMarksSurviveRemove(t *testing.T) {
	p := newPlatform(t)
	d, now := enrolledDevice(t, p)
	install(t, d, p.sign(t, manifest("app", 3), nil))
	m, _ := appmgr.Open(t.Context(), appmgr.Config{Store: d.store, Runner: nopRunner{}})
	if _, err := m.Remove(t.Context(), "app"); err != nil {
		t.Fatal(err)
	}
	d2 := openDevice(t, d.chip, 1, now)
	_, err := d2.sec.VerifyArtifact("app", p.sign(t, manifest("app", 3), nil), nil)
	var re *RefusalError
	if !errors.As(err, &re) || re.Reason != RefusedReplay {
		t.Fatalf("got %v, want replay refused after remove", err)
	}
	if keys := d2.store.Keys("r:"); !slices.Equal(keys, []string{"r:app"}) {
		t.Fatalf("replay keys %v", keys)
	}
}

func TestDamagedStateRefusesToRun(t *testing.T) {
	tests := []struct {
		name string
		key  string
		val  []byte
	}{
		{"identity", keyIdentity, []byte{0xa1, 0x01, 0x41, 0x00}},
		{"replay mark", replayPrefix + "app", []byte{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chip, _ := flash.NewMem(testGeo)
			now := t0
			d := openDevice(t, chip, 1, &now)
			if err := d.store.Put(tt.key, tt.val); err != nil {
				t.Fatal(err)
			}
			s, _ := flash.Mount(chip, flash.Options{})
			if _, err := Open(Config{Store: s, Rand: seeded(1)}); !errors.Is(err, ErrDamaged) {
				t.Fatalf("got %v, want ErrDamaged", err)
			}
		})
	}
	t.Run("enrollment", func(t *testing.T) {
		p := newPlatform(t)
		d, now := enrolledDevice(t, p)
		if err := d.store.Put(keyEnrolled, []byte{0xff}); err != nil {
			t.Fatal(err)
		}
		if again := openDevice(t, d.chip, 1, now); again.sec.Enrolled() {
			t.Fatal("damaged enrollment accepted")
		}
	})
}

// TestReenrollmentKeepsTrustedKeys: a device whose certificate expired
// enrolls again, and whoever answers (here a gateway pinning its own
// signing and sealing keys) cannot replace the keys the device trusts:
// the new identity is stored, the foreign keys are ignored and counted, and
// artifacts signed by the foreign key are refused, also after a reboot.
func TestReenrollmentKeepsTrustedKeys(t *testing.T) {
	p := newPlatform(t)
	d, now := enrolledDevice(t, p)
	rogue := newPlatform(t)
	rogue.signer = must(artifact.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x66}, 32))))
	rogue.sealKey = must(seal.ParsePrivateKey(bytes.Repeat([]byte{0x67}, 32)))
	// Same authority (a compromised replica answering the enrollment), new id.
	resp := rogue.enrollResponse(t, "dev-1", d.sec.PublicKey())
	resp.CertChain = p.enrollResponse(t, "dev-1", d.sec.PublicKey()).CertChain
	if err := d.sec.Enroll(resp); err != nil {
		t.Fatalf("re-enrollment: %v", err)
	}
	if got := d.sec.IgnoredEnrollmentKeys(); got != 2 {
		t.Fatalf("ignored keys: got %d, want 2 (signing and sealing)", got)
	}
	for _, dev := range []*device{d, openDevice(t, d.chip, 1, now)} {
		_, err := dev.sec.VerifyArtifact("app", rogue.sign(t, manifest("app", 1), nil), nil)
		var re *RefusalError
		if !errors.As(err, &re) || re.Reason != RefusedUnknownSigner {
			t.Fatalf("artifact of the foreign key: got %v, want unknown signer", err)
		}
		if _, err := dev.sec.VerifyArtifact("app", p.sign(t, manifest("app", 1), nil), nil); err != nil {
			t.Fatalf("artifact of the pinned key: %v", err)
		}
		// Sealed for the device by the foreign platform key: not opened.
		if _, err := dev.sec.VerifyArtifact("app", rogue.sign(t, manifest("app", 2), dev.sec.SealingPublicKey()), nil); err == nil {
			t.Fatal("artifact sealed and signed by the foreign platform accepted")
		}
	}
	// Re-enrolling with the pinned keys is no incident.
	again := openDevice(t, d.chip, 1, now)
	if err := again.sec.Enroll(p.enrollResponse(t, "dev-1", again.sec.PublicKey())); err != nil {
		t.Fatal(err)
	}
	if got := again.sec.IgnoredEnrollmentKeys(); got != 0 {
		t.Fatalf("ignored keys after an honest re-enrollment: got %d, want 0", got)
	}
}

// TestSealedContentArtifact: a format 2 confidential artifact (module
// encrypted once, content key wrapped to this device's sealing key) installs,
// also on a device that pinned no platform sealing key; one wrapped for
// another device's key is refused as a decryption failure.
func TestSealedContentArtifact(t *testing.T) {
	p := newPlatform(t)
	key, blob, err := seal.EncryptContent(wasm, nil)
	if err != nil {
		t.Fatal(err)
	}
	content, _, err := artifact.OpenSealedContent(blob, key)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(seq uint64, to *ecdh.PublicKey) []byte {
		iss, err := p.signer.Issue(manifest("app", seq), content, to)
		if err != nil {
			t.Fatal(err)
		}
		data, err := iss.Assemble(blob)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, pinSealingKey := range []bool{true, false} {
		t.Run(map[bool]string{true: "platform sealing key pinned", false: "no platform sealing key"}[pinSealingKey], func(t *testing.T) {
			chip, _ := flash.NewMem(testGeo)
			now := t0
			d := openDevice(t, chip, 1, &now)
			resp := p.enrollResponse(t, "dev-1", d.sec.PublicKey())
			if !pinSealingKey {
				resp.SealingKey = nil
			}
			if err := d.sec.Enroll(resp); err != nil {
				t.Fatal(err)
			}
			other, err := seal.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.sec.VerifyArtifact("app", issue(1, other.PublicKey()), nil)
			var re *RefusalError
			if !errors.As(err, &re) || re.Reason != RefusedDecrypt {
				t.Fatalf("artifact wrapped for another device: got %v, want a decryption refusal", err)
			}
			st := install(t, d, issue(2, d.sec.SealingPublicKey()))
			if st.Sequence != 2 {
				t.Fatalf("installed sequence %d, want 2", st.Sequence)
			}
			if d.sec.LastSequence("app") != 2 {
				t.Fatalf("mark %d, want 2", d.sec.LastSequence("app"))
			}
		})
	}
}
