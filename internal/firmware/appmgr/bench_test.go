package appmgr_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/firmware/flash"
	"github.com/wasmbed/wasmbed/internal/firmware/monitor"
	"github.com/wasmbed/wasmbed/internal/firmware/security"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sandbox"
)

// partition is the data partition of a simulated device: 1 MiB of 4 KiB
// sectors.
var partition = flash.GeometryFor(1 << 20)

type runner struct{}

func (runner) Start(context.Context, appmgr.RunSpec, func(error)) (appmgr.Instance, error) {
	return runner{}, nil
}
func (runner) Stop(context.Context) error { return nil }

func request(name string, seq uint64, size int) appmgr.Request {
	mod := append([]byte("\x00asm"), bytes.Repeat([]byte{byte(seq)}, size-4)...)
	return appmgr.Request{Name: name, Version: fmt.Sprint("v", seq), Sequence: seq, Module: mod, SHA256: sha256.Sum256(mod),
		Limits: sandbox.Limits{MemoryLimit: 64 << 10}, Start: true}
}

// BenchmarkBoot measures a device's boot with n applications installed:
// mounting the flash (recovery) and opening the application manager, which
// reads and checks every module and starts the applications.
func BenchmarkBoot(b *testing.B) {
	for _, n := range []int{0, 1, 8, 32} {
		b.Run(fmt.Sprintf("apps=%d", n), func(b *testing.B) {
			chip, _ := flash.NewMem(partition)
			s, _ := flash.Mount(chip, flash.Options{})
			m, err := appmgr.Open(context.Background(), appmgr.Config{Store: s, Runner: runner{}})
			if err != nil {
				b.Fatal(err)
			}
			for i := range n {
				for v := range 2 { // leave an update's garbage behind
					if _, err := m.Install(context.Background(), request(fmt.Sprint("app-", i), uint64(v+1), 8<<10)); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				s, err := flash.Mount(chip, flash.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := appmgr.Open(context.Background(), appmgr.Config{Store: s, Runner: runner{}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUpdate measures one atomic update (two flash transactions) of
// an 8 KiB module.
func BenchmarkUpdate(b *testing.B) {
	chip, _ := flash.NewMem(partition)
	s, _ := flash.Mount(chip, flash.Options{})
	m, err := appmgr.Open(context.Background(), appmgr.Config{Store: s, Runner: runner{}})
	if err != nil {
		b.Fatal(err)
	}
	reqs := [2]appmgr.Request{request("app", 1, 8<<10), request("app", 2, 8<<10)}
	b.SetBytes(8 << 10)
	b.ReportAllocs()
	seq := uint64(1)
	for b.Loop() {
		r := reqs[seq%2]
		r.Sequence = seq
		if _, err := m.Install(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		seq++
	}
}

// BenchmarkIdleDeviceFootprint measures the heap an idle device's managers
// hold — in-memory flash (only written sectors), mounted store, security
// manager, application manager and monitor — over 1,000 devices.
func BenchmarkIdleDeviceFootprint(b *testing.B) {
	ca, err := pki.NewAuthority(pki.AuthorityOptions{})
	if err != nil {
		b.Fatal(err)
	}
	signKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	for _, tc := range []struct {
		name    string
		geo     flash.Geometry
		enroll  bool
		apps    int
		modSize int
	}{
		{"fresh", partition, false, 0, 0},
		{"enrolled", partition, true, 0, 0},
		{"enrolled+1app-4KiB", partition, true, 1, 4 << 10},
		{"enrolled+2apps-16KiB", partition, true, 2, 16 << 10},
		// The partition of a HiFive1 (two 4 MiB module areas and 256 KiB).
		{"8MiB-partition/enrolled+1app-4KiB", flash.GeometryFor(8<<20 + 256<<10), true, 1, 4 << 10},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const devices = 1000
			type device struct {
				chip *flash.MemChip
				sec  *security.Manager
				apps *appmgr.Manager
				mon  *monitor.Monitor
			}
			var perDevice, flashPerDevice float64
			for b.Loop() {
				fleet := make([]device, devices)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for i := range fleet {
					chip, _ := flash.NewMem(tc.geo)
					s, err := flash.Mount(chip, flash.Options{})
					if err != nil {
						b.Fatal(err)
					}
					var seed [32]byte
					seed[0], seed[1] = byte(i), byte(i>>8)
					sec, err := security.Open(security.Config{Store: s, Rand: rand.NewChaCha8(seed), DeviceType: "esp32"})
					if err != nil {
						b.Fatal(err)
					}
					if tc.enroll {
						id := fmt.Sprint("dev-", i)
						cert, err := ca.IssueDevice(sec.PublicKey(), pki.DeviceOptions{DeviceID: id})
						if err != nil {
							b.Fatal(err)
						}
						resp := &protocol.EnrollResponse{DeviceID: id, CertChain: cert.DER(), SigningKey: signKey.Public().(ed25519.PublicKey)}
						if err := sec.Enroll(resp); err != nil {
							b.Fatal(err)
						}
					}
					apps, err := appmgr.Open(context.Background(), appmgr.Config{Store: s, Runner: runner{}})
					if err != nil {
						b.Fatal(err)
					}
					for a := range tc.apps {
						if _, err := apps.Install(context.Background(), request(fmt.Sprint("app-", a), 1, tc.modSize)); err != nil {
							b.Fatal(err)
						}
					}
					mon := monitor.New(monitor.Config{Now: func() time.Time { return time.Time{} }})
					fleet[i] = device{chip: chip, sec: sec, apps: apps, mon: mon}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perDevice = float64(after.HeapAlloc-before.HeapAlloc) / devices
				flashPerDevice = float64(fleet[0].chip.Footprint())
				runtime.KeepAlive(fleet)
			}
			b.ReportMetric(perDevice, "bytes/device")
			b.ReportMetric(perDevice-flashPerDevice, "bytes/device-excl-flash")
		})
	}
}
