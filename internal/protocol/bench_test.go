package protocol

import (
	"bytes"
	"io"
	"runtime"
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

// BenchmarkIdleSession reports the memory a session's Reader and Writer keep
// after exchanging a heartbeat, the steady state of most of a gateway's
// sessions.
func BenchmarkIdleSession(b *testing.B) {
	const sessions = 1000
	c := mustCodec(b, Gateway, Limits{})
	frame, err := AppendFrame(nil, benchHeartbeat())
	if err != nil {
		b.Fatal(err)
	}
	ack := Envelope{Version, 12345, &HeartbeatAck{ServerTime: 1767225600000}}
	var perSession float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		readers := make([]*Reader, sessions)
		writers := make([]*Writer, sessions)
		for i := range sessions {
			readers[i] = NewReader(bytes.NewReader(frame), c)
			writers[i] = NewWriter(io.Discard, c)
			if _, err := readers[i].ReadEnvelope(); err != nil {
				b.Fatal(err)
			}
			if err := writers[i].WriteEnvelope(ack); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSession = float64(after.HeapAlloc-before.HeapAlloc) / sessions
		runtime.KeepAlive(readers)
		runtime.KeepAlive(writers)
	}
	b.ReportMetric(perSession, "B/session")
}
