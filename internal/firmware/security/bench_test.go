package security

import (
	"testing"
)

// BenchmarkVerifyArtifact measures a device's check of a deploy artifact
// (600-byte module): signature, manifest checks and hash, and with sealing
// the X25519 agreement and AES-GCM opening.
func BenchmarkVerifyArtifact(b *testing.B) {
	p := newPlatform(b)
	d, _ := enrolledDevice(b, p)
	for _, sealed := range []bool{false, true} {
		name := "plain"
		m := manifest("app", 1)
		var data []byte
		if sealed {
			name = "sealed"
			data = p.sign(b, m, d.sec.SealingPublicKey())
		} else {
			data = p.sign(b, m, nil)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.sec.VerifyArtifact("app", data, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
