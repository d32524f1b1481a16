package seal

import (
	"crypto/ecdh"
	"fmt"
	"testing"
)

var benchSizes = []int{1 << 10, 64 << 10}

func BenchmarkSeal(b *testing.B) {
	p := newPair(b, SealerOptions{})
	aad := ConfigAAD("dev-1", "sensor", 1)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			plain := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.sealer.Seal(PurposeModule, plain, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen opens blobs of a cached epoch (AES-GCM only).
func BenchmarkOpen(b *testing.B) {
	p := newPair(b, SealerOptions{})
	aad := ConfigAAD("dev-1", "sensor", 1)
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			sealed := mustSeal(b, p.sealer, PurposeModule, make([]byte, size), aad)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.opener.Open(PurposeModule, sealed, aad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenNewEpoch opens with an empty cache: one X25519 and the HKDF
// per blob, the device's cost for the first blob of every epoch.
func BenchmarkOpenNewEpoch(b *testing.B) {
	p := newPair(b, SealerOptions{})
	o, err := NewOpener(p.device, []*ecdh.PublicKey{p.platform.PublicKey()}, OpenerOptions{CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	sealed := mustSeal(b, p.sealer, PurposeConfig, make([]byte, 1<<10), nil)
	b.SetBytes(1 << 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Open(PurposeConfig, sealed, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRekey measures starting a new epoch on the sealing side.
func BenchmarkRekey(b *testing.B) {
	p := newPair(b, SealerOptions{})
	b.ReportAllocs()
	for b.Loop() {
		if err := p.sealer.Rekey(); err != nil {
			b.Fatal(err)
		}
	}
}
