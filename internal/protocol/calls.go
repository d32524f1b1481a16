package protocol

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Error makes a received Error message usable as a Go error: Calls.Wait
// returns it when the peer refuses a request.
func (m *Error) Error() string {
	s := "protocol: peer error: " + m.Code.String()
	if m.Text != "" {
		s += ": " + m.Text
	}
	return s
}

// ErrConnClosed matches the error a waiting request gets once the session's
// stream has failed or ended; it wraps the stream's error.
var ErrConnClosed = errors.New("protocol: connection closed")

// IDs allocates the message ids one side of a session sends requests with,
// by the odd/even rule of the envelope: a device numbers its requests 1, 3,
// 5, ..., a gateway 2, 4, 6, ..., and a reply carries its request's id, so
// the parity of an id says who started the exchange. It is safe for
// concurrent use. The zero IDs is not usable: use NewIDs.
type IDs struct {
	side Side
	n    atomic.Uint64
}

// NewIDs returns the id allocator of side, which must be Device or Gateway.
func NewIDs(side Side) (*IDs, error) {
	ids := new(IDs)
	return ids, ids.Init(side)
}

// Init prepares an IDs embedded in a larger structure for side, which must
// be Device or Gateway. It must be called before Next.
func (a *IDs) Init(side Side) error {
	if side != Device && side != Gateway {
		return fmt.Errorf("protocol: message ids need a Device or Gateway side, not %v", side)
	}
	a.side = side
	return nil
}

// Next allocates a fresh message id.
func (a *IDs) Next() uint64 {
	n := a.n.Add(1)
	if a.side == Device {
		return 2*n - 1
	}
	return 2 * n
}

// Owns reports whether id is one side allocates, that is whether a message
// carrying id is a reply to a request side sent.
func Owns(side Side, id uint64) bool {
	switch side {
	case Device:
		return id%2 == 1
	case Gateway:
		return id != 0 && id%2 == 0
	}
	return false
}

// Calls routes replies to the requests waiting for them: a sender registers
// a request's id before writing it, the session's reader delivers every
// reply it reads, and the sender waits. It holds nothing while no request is
// outstanding, so an idle session costs a few words. The zero Calls is ready
// to use; it is safe for concurrent use.
type Calls struct {
	mu      sync.Mutex
	pending map[uint64]chan Envelope
	err     error // set once the session ended
	done    chan struct{}
}

// Call is a registered request waiting for its reply.
type Call struct {
	calls *Calls
	id    uint64
	ch    chan Envelope
}

// Register records that a request with id is about to be sent. It fails
// with ErrConnClosed once Close was called.
func (c *Calls) Register(id uint64) (*Call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnClosed, c.err)
	}
	if c.pending == nil {
		c.pending = make(map[uint64]chan Envelope)
	}
	if c.done == nil {
		c.done = make(chan struct{})
	}
	ch := make(chan Envelope, 1)
	c.pending[id] = ch
	return &Call{calls: c, id: id, ch: ch}, nil
}

// Deliver hands env to the request waiting for its id and reports whether
// one was. A reply nobody waits for (late, or never requested) is the
// caller's to handle.
func (c *Calls) Deliver(env Envelope) bool {
	c.mu.Lock()
	ch, ok := c.pending[env.MessageID]
	if ok {
		delete(c.pending, env.MessageID)
		if len(c.pending) == 0 {
			c.pending = nil // an idle session keeps no map
		}
	}
	c.mu.Unlock()
	if ok {
		ch <- env // buffered; each channel gets one reply
	}
	return ok
}

// Pending returns the number of requests waiting for a reply.
func (c *Calls) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Close ends the session's calls: waiting and later requests fail with an
// error matching ErrConnClosed and wrapping err. Only the first Close counts.
func (c *Calls) Close(err error) {
	if err == nil {
		err = errors.New("closed")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	c.pending = nil
	if c.done == nil {
		c.done = make(chan struct{})
	}
	close(c.done)
}

// ID returns the request's message id.
func (call *Call) ID() uint64 { return call.id }

// Cancel forgets the request, when it could not be sent or its reply is no
// longer wanted. A reply arriving later is not delivered.
func (call *Call) Cancel() {
	c := call.calls
	c.mu.Lock()
	if c.pending[call.id] == call.ch {
		delete(c.pending, call.id)
		if len(c.pending) == 0 {
			c.pending = nil
		}
	}
	c.mu.Unlock()
}

// Wait waits for the reply. If the peer answered with an Error message, it
// returns the envelope and the *Error as the error. It returns an error
// matching ErrConnClosed if the session ends first, and ctx's error if ctx
// ends first (the request is then forgotten).
func (call *Call) Wait(ctx context.Context) (Envelope, error) {
	c := call.calls
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case env := <-call.ch:
		if e, ok := env.Message.(*Error); ok {
			return env, e
		}
		return env, nil
	case <-done:
		select {
		case env := <-call.ch: // delivered just before the close
			if e, ok := env.Message.(*Error); ok {
				return env, e
			}
			return env, nil
		default:
		}
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return Envelope{}, fmt.Errorf("%w: %w", ErrConnClosed, err)
	case <-ctx.Done():
		call.Cancel()
		return Envelope{}, ctx.Err()
	}
}
