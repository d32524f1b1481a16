package artifact

import (
	"crypto/ecdh"
	"fmt"
	"testing"

	"github.com/wasmbed/wasmbed/internal/seal"
)

var benchSizes = []int{1 << 10, 64 << 10}

func benchModule(size int) []byte {
	b := make([]byte, size)
	copy(b, "\x00asm\x01\x00\x00\x00")
	for i := 8; i < size; i++ {
		b[i] = byte(i * 31)
	}
	return b
}

// BenchmarkSign measures the platform side: build, (seal,) sign and encode
// one artifact. MB/s counts module bytes.
func BenchmarkSign(b *testing.B) {
	f := newFixture(b)
	for _, confidential := range []bool{false, true} {
		for _, size := range benchSizes {
			name := fmt.Sprintf("plain/%dKiB", size>>10)
			opts := SignOptions{}
			if confidential {
				name = fmt.Sprintf("sealed/%dKiB", size>>10)
				opts.Sealer = f.sealer
			}
			b.Run(name, func(b *testing.B) {
				mod := benchModule(size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := f.signer.Sign(manifest(), mod, opts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerify measures the device side: decode, verify the signature,
// check device, time and sequence, hash (and open) the module. The opener's
// epoch cache is warm, as it is for every artifact after the first of a
// gateway epoch.
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	for _, confidential := range []bool{false, true} {
		for _, size := range benchSizes {
			name := fmt.Sprintf("plain/%dKiB", size>>10)
			opts := SignOptions{}
			if confidential {
				name = fmt.Sprintf("sealed/%dKiB", size>>10)
				opts.Sealer = f.sealer
			}
			b.Run(name, func(b *testing.B) {
				data, _, err := f.signer.Sign(manifest(), benchModule(size), opts)
				if err != nil {
					b.Fatal(err)
				}
				seqs := store{}
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.verifier.Verify(data, seqs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkVerifyColdEpoch is BenchmarkVerify for a sealed 64 KiB module with
// the opener's cache disabled: one extra X25519 and HKDF per artifact.
func BenchmarkVerifyColdEpoch(b *testing.B) {
	f := newFixture(b)
	o, err := seal.NewOpener(f.deviceKey, []*ecdh.PublicKey{f.platform.PublicKey()}, seal.OpenerOptions{CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	f.opener = o
	v := f.newVerifier(b, f.signer.PublicKey())
	const size = 64 << 10
	data, _, err := f.signer.Sign(manifest(), benchModule(size), SignOptions{Sealer: f.sealer})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(data, store{}); err != nil {
			b.Fatal(err)
		}
	}
}
