package protocol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Error makes a received Error message usable as a Go error: Conn.Request
// returns it when the peer refuses a request.
func (m *Error) Error() string {
	s := "protocol: peer error: " + m.Code.String()
	if m.Text != "" {
		s += ": " + m.Text
	}
	return s
}

// ErrConnClosed matches the error Conn.Request returns once the stream has
// failed or ended; it wraps the stream's error.
var ErrConnClosed = errors.New("protocol: connection closed")

// Conn runs one side of a session over a stream. It numbers the messages it
// sends by the odd/even rule (odd ids for a device, even for a gateway) and
// routes replies to the Requests waiting for them.
//
// Exactly one goroutine must call Receive in a loop: it reads the stream,
// hands replies to waiting Requests and returns everything else. Request,
// Send and Reply may be called from any goroutine.
type Conn struct {
	r      *Reader
	w      *Writer
	side   Side
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan result
	err     error
	done    chan struct{}
}

type result struct {
	env Envelope
	err error
}

// NewConn returns a Conn that reads and writes frames on rw with codec c,
// whose side (Device or Gateway) determines the ids the Conn allocates.
func NewConn(rw io.ReadWriter, c *Codec) (*Conn, error) {
	if c.Side() != Device && c.Side() != Gateway {
		return nil, fmt.Errorf("protocol: a Conn needs a Device or Gateway codec, not %v", c.Side())
	}
	return &Conn{
		r:       NewReader(rw, c),
		w:       NewWriter(rw, c),
		side:    c.Side(),
		pending: make(map[uint64]chan result),
		done:    make(chan struct{}),
	}, nil
}

// NextID allocates a fresh message id for this side.
func (c *Conn) NextID() uint64 {
	n := c.nextID.Add(1)
	if c.side == Device {
		return 2*n - 1
	}
	return 2 * n
}

// own reports whether id was allocated by this side.
func (c *Conn) own(id uint64) bool {
	return id != 0 && (id%2 == 1) == (c.side == Device)
}

// Send sends msg with a fresh id, without waiting for a reply, and returns
// the id. A reply, if any, is returned by Receive.
func (c *Conn) Send(msg Message) (uint64, error) {
	id := c.NextID()
	return id, c.w.WriteEnvelope(Envelope{Version: Version, MessageID: id, Message: msg})
}

// Reply sends msg as the reply to the message with id to.
func (c *Conn) Reply(to uint64, msg Message) error {
	return c.w.WriteEnvelope(Envelope{Version: Version, MessageID: to, Message: msg})
}

// Request sends msg with a fresh id and waits for the reply carrying that id.
// If the peer answers with an Error message, Request returns the envelope
// and the *Error as the error. It returns an error matching ErrConnClosed if
// the stream fails first, and ctx's error if ctx ends first (a late reply is
// then returned by Receive).
func (c *Conn) Request(ctx context.Context, msg Message) (Envelope, error) {
	id := c.NextID()
	ch := make(chan result, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return Envelope{}, fmt.Errorf("%w: %w", ErrConnClosed, err)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	if err := c.w.WriteEnvelope(Envelope{Version: Version, MessageID: id, Message: msg}); err != nil {
		forget()
		return Envelope{}, err
	}
	select {
	case res := <-ch:
		if res.err != nil {
			return Envelope{}, res.err
		}
		if e, ok := res.env.Message.(*Error); ok {
			return res.env, e
		}
		return res.env, nil
	case <-c.done:
		forget()
		return Envelope{}, fmt.Errorf("%w: %w", ErrConnClosed, c.err)
	case <-ctx.Done():
		forget()
		return Envelope{}, ctx.Err()
	}
}

// Receive reads until it has a message that no Request is waiting for, and
// returns it: a request or notification from the peer, or a reply to a
// message sent with Send.
//
// Decode errors are returned as by Reader.ReadEnvelope (answer them with
// ReplyTo and call Receive again), except those about a reply a Request is
// waiting for, which go to that Request. Any other error (io.EOF, I/O errors,
// ErrTruncated, ErrFrameTooLarge) ends the Conn: pending and later Requests
// fail with ErrConnClosed.
func (c *Conn) Receive() (Envelope, error) {
	for {
		env, err := c.r.ReadEnvelope()
		if err != nil {
			var r replier
			if !errors.As(err, &r) || errors.Is(err, ErrFrameTooLarge) {
				c.fail(err)
				return Envelope{}, err
			}
			if id, _ := r.reply(); c.own(id) && c.deliver(id, result{err: err}) {
				continue
			}
			return Envelope{}, err
		}
		if c.own(env.MessageID) && c.deliver(env.MessageID, result{env: env}) {
			continue
		}
		return env, nil
	}
}

// deliver hands res to the Request waiting for id, if any.
func (c *Conn) deliver(id uint64, res result) bool {
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		ch <- res // buffered; each channel gets one result
	}
	return ok
}

// fail records the stream's error and releases waiting Requests.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
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
	w.buf.Write([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	w.buf.Write(body)
	if _, err := w.w.Write(w.buf.Bytes()); err != nil {
		return fmt.Errorf("protocol: write frame: %w", err)
	}
	return nil
}
