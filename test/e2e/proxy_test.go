package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy is a TCP proxy on loopback between devices and a gateway, through
// which a test breaks the network: it cuts every connection at once,
// refuses new ones, or stalls the bytes in flight (what heavy packet loss
// looks like to TCP: nothing arrives until the retransmissions get
// through).
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	refuse  bool
	stalled chan struct{} // closed when the current stall ends; nil when none
	cutCh   chan struct{} // closed by the next Cut
	closed  bool

	accepted, cuts, refused atomic.Int64
	wg                      sync.WaitGroup
}

// newProxy listens on a free loopback port and forwards to target.
func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, cutCh: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is the address devices dial.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse || p.closed
		p.mu.Unlock()
		if refuse {
			p.refused.Add(1)
			_ = c.Close()
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	defer p.wg.Done()
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := d.DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(up, c) }()
	go func() { defer wg.Done(); p.pipe(c, up) }()
	wg.Wait()
	p.untrack(c, up)
}

// pipe copies src to dst, waiting out stalls, until either side fails;
// then it closes both so the other direction ends too.
func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitStall()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// waitStall waits until the current stall ends or a cut ends the
// connections.
func (p *proxy) waitStall() {
	p.mu.Lock()
	ch, cut := p.stalled, p.cutCh
	p.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-cut:
		}
	}
}

func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// Cut closes every open connection, as a link going down does, and returns
// how many it closed.
func (p *proxy) Cut() int {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	close(p.cutCh)
	p.cutCh = make(chan struct{})
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, not a polite close
		}
		_ = c.Close()
	}
	p.cuts.Add(1)
	return len(conns) / 2
}

// Refuse makes the proxy close new connections at once (on) or forward
// them again (off).
func (p *proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Stall holds every byte in flight, both ways, for d.
func (p *proxy) Stall(d time.Duration) {
	p.mu.Lock()
	if p.stalled != nil {
		p.mu.Unlock()
		return
	}
	ch := make(chan struct{})
	p.stalled = ch
	p.mu.Unlock()
	time.AfterFunc(d, func() {
		p.mu.Lock()
		p.stalled = nil
		p.mu.Unlock()
		close(ch)
	})
}

// Open returns the number of connections being forwarded.
func (p *proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	if err := p.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return
	}
	p.Cut()
	p.wg.Wait()
}

// TestProxy checks the proxy itself: it forwards, a cut ends the
// connection, refusing closes new ones, and a stall holds bytes back.
func TestProxy(t *testing.T) {
	var lc net.ListenConfig
	echo, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	p := newProxy(t, echo.Addr().String())
	dial := func() net.Conn {
		var d net.Dialer
		c, err := d.DialContext(t.Context(), "tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	roundTrip := func(c net.Conn, deadline time.Duration) error {
		_ = c.SetDeadline(time.Now().Add(deadline))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}

	c := dial()
	if err := roundTrip(c, 5*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Stall(time.Hour)
	if err := roundTrip(c, 200*time.Millisecond); err == nil {
		t.Error("a stalled proxy forwarded bytes")
	}
	if n := p.Cut(); n != 1 {
		t.Errorf("cut %d connections, want 1", n)
	}
	if err := roundTrip(c, 5*time.Second); err == nil {
		t.Error("a cut connection still works")
	}
	_ = c.Close()

	p.Refuse(true)
	c = dial()
	if err := roundTrip(c, 5*time.Second); err == nil {
		t.Error("a refusing proxy forwarded a new connection")
	}
	_ = c.Close()
	if p.refused.Load() == 0 {
		t.Error("no connection counted as refused")
	}
}
