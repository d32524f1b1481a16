package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"runtime"
	"sync"
	"testing"
)

// frameOf returns b with a length prefix.
func frameOf(b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
}

func mustFrame(t testing.TB, env Envelope) []byte {
	t.Helper()
	b, err := AppendFrame(nil, env)
	if err != nil {
		t.Fatalf("AppendFrame: %v", err)
	}
	return b
}

func TestReaderWriterRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	w := NewWriter(&stream, mustCodec(t, Either, Limits{}))
	ss := samples()
	big := Envelope{Version, 100, &Deploy{App: "big", Sequence: 1, Artifact: bytes.Repeat([]byte{0xab}, 200<<10)}}
	envs := []Envelope{big}
	for _, s := range ss {
		envs = append(envs, s.env)
	}
	envs = append(envs, big)
	for _, env := range envs {
		if err := w.WriteEnvelope(env); err != nil {
			t.Fatalf("WriteEnvelope(%v): %v", env.Message.Type(), err)
		}
	}
	r := NewReader(&stream, mustCodec(t, Either, Limits{}))
	for i, want := range envs {
		got, err := r.ReadEnvelope()
		if err != nil {
			t.Fatalf("ReadEnvelope #%d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("frame #%d: got %v, want %v", i, got.Message.Type(), want.Message.Type())
		}
	}
	if _, err := r.ReadEnvelope(); err != io.EOF {
		t.Errorf("at end: got %v, want io.EOF", err)
	}
	if cap(r.buf) > retainedBufferSize {
		t.Errorf("reader retains %d bytes, want at most %d", cap(r.buf), retainedBufferSize)
	}

	// A session that only sees heartbeats keeps a small buffer.
	stream.Reset()
	for range 3 {
		if err := w.WriteEnvelope(Envelope{Version, 1, &Heartbeat{}}); err != nil {
			t.Fatal(err)
		}
	}
	r = NewReader(&stream, mustCodec(t, Either, Limits{}))
	for range 3 {
		if _, err := r.ReadEnvelope(); err != nil {
			t.Fatal(err)
		}
	}
	if cap(r.buf) != minReadBuffer {
		t.Errorf("heartbeat-only reader holds %d bytes, want %d", cap(r.buf), minReadBuffer)
	}
	if w.buf.Cap() > retainedBufferSize {
		t.Errorf("writer retains %d bytes, want at most %d", w.buf.Cap(), retainedBufferSize)
	}
}

func TestReaderTruncated(t *testing.T) {
	hb := mustFrame(t, Envelope{Version, 1, &Heartbeat{UptimeSeconds: 1}})
	big := mustFrame(t, Envelope{Version, 2, &Deploy{App: "a", Sequence: 1, Artifact: make([]byte, 100<<10)}})
	tests := []struct {
		name string
		in   []byte
	}{
		{"inside length prefix", hb[:2]},
		{"after length prefix", hb[:4]},
		{"inside body", hb[:len(hb)-1]},
		{"inside large body", big[:len(big)-1]},
		{"large body barely started", big[:10]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(tt.in), mustCodec(t, Either, Limits{}))
			_, err := r.ReadEnvelope()
			if !errors.Is(err, ErrTruncated) || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("got %v, want ErrTruncated and io.ErrUnexpectedEOF", err)
			}
			if _, ok := ReplyTo(err); ok {
				t.Errorf("ReplyTo(%v): got a reply, want none", err)
			}
		})
	}
}

// TestReaderStaysAligned checks that the recoverable errors consume exactly
// their frame, so the session can answer and go on.
func TestReaderStaysAligned(t *testing.T) {
	c := mustCodec(t, Gateway, Limits{MaxArrayElements: 16})
	hb := Envelope{Version, 9, &Heartbeat{UptimeSeconds: 9}}
	var stream []byte
	stream = append(stream, 0, 0, 0, 0)                                              // zero-length frame
	stream = append(stream, frameOf(unhex(t, "84 01 18 2a 18 63 a1 01 02"))...)      // unknown type
	stream = append(stream, frameOf(unhex(t, "84 02 03 07 a0"))...)                  // newer version
	stream = append(stream, frameOf(heartbeatWithExtra(nestedArrays(100)))...)       // too deep
	stream = append(stream, frameOf(heartbeatWithExtra(unhex(t, "91")))...)          // too many elements
	stream = append(stream, frameOf(unhex(t, "84 01 05 07 a2 01 01 01 02"))...)      // duplicate key
	stream = append(stream, mustFrame(t, Envelope{Version, 4, &Start{App: "x"}})...) // wrong direction
	stream = append(stream, mustFrame(t, hb)...)
	wantErrs := []error{ErrMalformed, ErrUnsupported, ErrUnsupportedVersion, ErrTooDeep, ErrTooManyElements, ErrMalformed, ErrWrongDirection}

	r := NewReader(bytes.NewReader(stream), c)
	for i, want := range wantErrs {
		_, err := r.ReadEnvelope()
		if !errors.Is(err, want) {
			t.Fatalf("frame #%d: got %v, want %v", i, err, want)
		}
	}
	got, err := r.ReadEnvelope()
	if err != nil {
		t.Fatalf("heartbeat after errors: %v", err)
	}
	if !reflect.DeepEqual(got, hb) {
		t.Errorf("got %+v, want %+v", got, hb)
	}
}

func TestReaderFrameTooLarge(t *testing.T) {
	tests := []struct {
		name string
		max  int64
		n    uint32
	}{
		{"default limit", 0, DefaultMaxFrameSize + 1},
		{"largest prefix", 0, 0xffffffff},
		{"configured limit", 1000, 1001},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := binary.BigEndian.AppendUint32(nil, tt.n)
			r := NewReader(bytes.NewReader(append(in, 0x84, 1, 2, 3, 4, 5)), mustCodec(t, Either, Limits{MaxFrameSize: tt.max}))
			_, err := r.ReadFrame()
			var le *LimitError
			if !errors.As(err, &le) || !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("got %v, want *LimitError matching ErrFrameTooLarge", err)
			}
			if le.Got != int64(tt.n) || le.Limit != LimitFrameSize {
				t.Errorf("got %+v, want limit %q got %d", le, LimitFrameSize, tt.n)
			}
		})
	}
}

// allocatedBytes returns the bytes allocated by f, averaged over runs.
func allocatedBytes(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestHugeDeclaredLengthDoesNotAllocate checks that a 10-byte input declaring
// a huge frame is refused before its size is allocated, and that a frame
// declared within limits costs memory only as its bytes arrive.
func TestHugeDeclaredLengthDoesNotAllocate(t *testing.T) {
	c := mustCodec(t, Either, Limits{})
	tests := []struct {
		name     string
		in       []byte
		maxBytes uint64
		wantIs   error
	}{
		// The reader and its error: 160 bytes, whatever the length declared.
		{"4 GiB declared", unhex(t, "ffffffff 84 01 05 07 a0 00"), 192, ErrFrameTooLarge},
		// One read chunk, then the same 300-odd bytes of bookkeeping.
		{"1 MiB declared, 6 bytes sent", unhex(t, "00100000 84 01 05 07 a0 00"), readChunk + 512, ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.in) != 10 {
				t.Fatalf("input is %d bytes, want 10", len(tt.in))
			}
			var err error
			// Enough runs that what the runtime allocates meanwhile (a
			// few hundred bytes now and then) does not count.
			got := allocatedBytes(2000, func() {
				_, err = NewReader(bytes.NewReader(tt.in), c).ReadEnvelope()
			})
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("got %v, want %v", err, tt.wantIs)
			}
			t.Logf("allocated %d bytes per read", got)
			if got > tt.maxBytes {
				t.Errorf("allocated %d bytes per read, want at most %d", got, tt.maxBytes)
			}
		})
	}
}

// slowReader returns one byte per Read call.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return s.r.Read(p)
}

func TestReaderShortReads(t *testing.T) {
	env := Envelope{Version, 2, &Deploy{App: "a", Sequence: 1, Artifact: bytes.Repeat([]byte{7}, 70<<10)}}
	r := NewReader(slowReader{bytes.NewReader(mustFrame(t, env))}, mustCodec(t, Device, Limits{}))
	got, err := r.ReadEnvelope()
	if err != nil {
		t.Fatalf("ReadEnvelope: %v", err)
	}
	if !reflect.DeepEqual(got, env) {
		t.Error("got a different envelope back")
	}
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name   string
		side   Side
		lim    Limits
		env    Envelope
		wantIs error
	}{
		{"gateway sends heartbeat", Gateway, Limits{}, Envelope{Version, 2, &Heartbeat{}}, ErrWrongDirection},
		{"device sends deploy", Device, Limits{}, Envelope{Version, 1, &Deploy{App: "a", Artifact: []byte{1}}}, ErrWrongDirection},
		{"frame above peer limit", Gateway, Limits{MaxFrameSize: 100}, Envelope{Version, 2, &Deploy{App: "a", Artifact: make([]byte, 100)}}, ErrFrameTooLarge},
		{"missing field", Gateway, Limits{}, Envelope{Version, 2, &Deploy{App: "a"}}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := NewWriter(&out, mustCodec(t, tt.side, tt.lim)).WriteEnvelope(tt.env)
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("got %v, want %v", err, tt.wantIs)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %d bytes, want none", out.Len())
			}
		})
	}
}

// TestWriterConcurrent writes from many goroutines and checks that frames do
// not interleave (run with -race).
func TestWriterConcurrent(t *testing.T) {
	const writers, perWriter = 8, 50
	var stream bytes.Buffer // not safe for concurrent use: the race detector sees overlapping writes
	w := NewWriter(&stream, mustCodec(t, Device, Limits{}))
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				var env Envelope
				if i%10 == 0 {
					env = Envelope{Version, uint64(g*perWriter + i), &MetricsReport{Apps: []AppMetrics{{App: "x", Fuel: uint64(i)}}}}
				} else {
					env = Envelope{Version, uint64(g*perWriter + i), &Heartbeat{UptimeSeconds: uint32(i)}}
				}
				if err := w.WriteEnvelope(env); err != nil {
					t.Errorf("WriteEnvelope: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	r := NewReader(&stream, mustCodec(t, Gateway, Limits{}))
	seen := make(map[uint64]bool)
	for {
		env, err := r.ReadEnvelope()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadEnvelope after %d frames: %v", len(seen), err)
		}
		seen[env.MessageID] = true
	}
	if len(seen) != writers*perWriter {
		t.Errorf("got %d distinct frames, want %d", len(seen), writers*perWriter)
	}
}
