package protocol

import (
	"bytes"
	"io"
	"testing"
)

func benchHeartbeat() Envelope {
	return Envelope{Version, 12345, &Heartbeat{UptimeSeconds: 86400, FreeMemory: 81920, RunningApps: 2, Link: Link{RSSI: -67, LossPermille: 12}}}
}

func benchDeploy() Envelope {
	return Envelope{Version, 2, &Deploy{App: "sensor", Sequence: 42, Artifact: bytes.Repeat([]byte{0x5a}, 64<<10), Start: true}}
}

func BenchmarkEncode(b *testing.B) {
	for _, bc := range []struct {
		name string
		env  Envelope
	}{{"Heartbeat", benchHeartbeat()}, {"Deploy64KiB", benchDeploy()}} {
		b.Run(bc.name, func(b *testing.B) {
			frame, err := AppendFrame(nil, bc.env)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("Encode", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(frame) - frameHeaderLen))
				for b.Loop() {
					if _, err := Encode(bc.env); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Writer", func(b *testing.B) {
				w := NewWriter(io.Discard, mustCodec(b, Either, Limits{}))
				b.ReportAllocs()
				b.SetBytes(int64(len(frame)))
				for b.Loop() {
					if err := w.WriteEnvelope(bc.env); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// repeatReader yields the same frame forever.
type repeatReader struct {
	frame []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.frame[r.off:])
	r.off = (r.off + n) % len(r.frame)
	return n, nil
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name string
		env  Envelope
	}{{"Heartbeat", benchHeartbeat()}, {"Deploy64KiB", benchDeploy()}} {
		b.Run(bc.name, func(b *testing.B) {
			c := mustCodec(b, Either, Limits{})
			frame, err := AppendFrame(nil, bc.env)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("Decode", func(b *testing.B) {
				body := frame[frameHeaderLen:]
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, err := c.Decode(body); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Reader", func(b *testing.B) {
				r := NewReader(&repeatReader{frame: frame}, c)
				b.ReportAllocs()
				b.SetBytes(int64(len(frame)))
				for b.Loop() {
					if _, err := r.ReadEnvelope(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkNewCodec(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewCodec(Gateway, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
