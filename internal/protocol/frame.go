package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// A frame on the TLS stream is a 4-byte big-endian unsigned length followed
// by that many bytes: one encoded envelope.
const frameHeaderLen = 4

const (
	// retainedBufferSize is the largest buffer a Reader or Writer keeps
	// between frames. Larger frames (deploys) get a buffer of their own, so
	// that an idle session holds at most this much.
	retainedBufferSize = 4 << 10
	// readChunk is the most a Reader allocates ahead of the bytes actually
	// received, so a peer declaring a large frame and sending little
	// cannot make it allocate the declared size.
	readChunk = 64 << 10
	// minReadBuffer is the first buffer a Reader allocates.
	minReadBuffer = 256
)

// Reader reads frames from a stream and decodes them. It is not safe for
// concurrent use.
type Reader struct {
	r     io.Reader
	codec *Codec
	hdr   [frameHeaderLen]byte
	buf   []byte
}

// NewReader returns a Reader that reads frames from r and decodes them with
// c, under c's limits.
func NewReader(r io.Reader, c *Codec) *Reader {
	return &Reader{r: r, codec: c}
}

// ReadFrame reads the next frame and returns its body, which is valid until
// the next call. The length prefix is checked against MaxFrameSize before
// the body is read.
//
// At a clean end of stream between frames it returns io.EOF. A stream that
// ends inside a frame gives an error matching ErrTruncated and
// io.ErrUnexpectedEOF. A length above MaxFrameSize gives a *LimitError
// matching ErrFrameTooLarge; the stream is then unaligned and must be closed.
// A zero length gives a *MalformedError; the stream stays aligned.
func (r *Reader) ReadFrame() ([]byte, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, readError("frame header", err)
	}
	n := int64(binary.BigEndian.Uint32(r.hdr[:]))
	if limit := r.codec.limits.MaxFrameSize; n > limit {
		return nil, &LimitError{Limit: LimitFrameSize, Max: limit, Got: n}
	}
	if n == 0 {
		return nil, &MalformedError{Err: errEmptyFrame}
	}
	if n <= retainedBufferSize {
		if int(n) > cap(r.buf) {
			// Grow geometrically from a small start: an idle session that
			// only ever sees heartbeats holds a few hundred bytes.
			r.buf = make([]byte, min(max(int(n), 2*cap(r.buf), minReadBuffer), retainedBufferSize))
		}
		b := r.buf[:n]
		if _, err := io.ReadFull(r.r, b); err != nil {
			return nil, readError("frame body", err)
		}
		return b, nil
	}
	return r.readLarge(int(n))
}

// readLarge reads an n-byte body into a buffer grown as bytes arrive.
func (r *Reader) readLarge(n int) ([]byte, error) {
	b := make([]byte, 0, min(n, readChunk))
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), cap(b)))
		}
		m := min(n, cap(b))
		got, err := io.ReadFull(r.r, b[len(b):m])
		b = b[:len(b)+got]
		if err != nil {
			return nil, readError("frame body", err)
		}
	}
	return b, nil
}

// readError wraps an error from the underlying stream.
func readError(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read %s: %w: %w", what, ErrTruncated, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read %s: %w", what, err)
}

// ReadEnvelope reads and decodes the next frame. Besides the errors of
// ReadFrame, it returns those of Codec.Decode, after which the stream is
// still aligned: answer with ReplyTo and read on.
func (r *Reader) ReadEnvelope() (Envelope, error) {
	frame, err := r.ReadFrame()
	if err != nil {
		return Envelope{}, err
	}
	return r.codec.Decode(frame)
}

// Writer encodes envelopes and writes them as frames, one Write call per
// frame. It is safe for concurrent use: frames are never interleaved.
type Writer struct {
	w     io.Writer
	codec *Codec
	mu    sync.Mutex
	buf   bytes.Buffer
}

// NewWriter returns a Writer that writes frames to w. It refuses messages
// that c's side may not send and frames larger than c's MaxFrameSize (the
// peer would refuse them).
func NewWriter(w io.Writer, c *Codec) *Writer {
	return &Writer{w: w, codec: c}
}

// WriteEnvelope encodes env and writes it as one frame.
func (w *Writer) WriteEnvelope(env Envelope) error {
	if env.Message == nil {
		return fmt.Errorf("protocol: write message %d: %w", env.MessageID, errNilMessage)
	}
	if err := w.codec.checkSend(env.MessageID, env.Message.Type()); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.trim()
	w.buf.Reset()
	w.buf.Write(make([]byte, frameHeaderLen))
	if err := encodeTo(&w.buf, env); err != nil {
		return err
	}
	b := w.buf.Bytes()
	n := int64(len(b) - frameHeaderLen)
	if limit := w.codec.limits.MaxFrameSize; n > limit {
		return &LimitError{Limit: LimitFrameSize, Max: limit, Got: n, MessageID: env.MessageID}
	}
	binary.BigEndian.PutUint32(b, uint32(n)) //nolint:gosec // n <= MaxFrameSize, checked above
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("protocol: write %s frame: %w", env.Message.Type(), err)
	}
	return nil
}

// trim drops the buffer after a large frame, so that an idle session holds
// little memory. The caller holds w.mu.
func (w *Writer) trim() {
	if w.buf.Cap() > retainedBufferSize {
		w.buf = bytes.Buffer{}
	}
}

// WriteFrame writes body, an already encoded envelope, as one frame. It does
// not check the body; it exists for relaying frames and for tests that need
// to send what Encode would refuse.
func (w *Writer) WriteFrame(body []byte) error {
	n := int64(len(body))
	if limit := w.codec.limits.MaxFrameSize; n > limit {
		return &LimitError{Limit: LimitFrameSize, Max: limit, Got: n}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.trim()
	w.buf.Reset()
	w.buf.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}) //nolint:gosec // the big-endian length prefix: keeping each byte is the point
	w.buf.Write(body)
	if _, err := w.w.Write(w.buf.Bytes()); err != nil {
		return fmt.Errorf("protocol: write frame: %w", err)
	}
	return nil
}
