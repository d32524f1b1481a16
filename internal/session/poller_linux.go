//go:build linux

package session

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller parks idle sessions in an epoll set of the server's own, so that a
// session costs no goroutine between frames. When a parked session's socket
// becomes readable, the poller hands it to a short-lived goroutine that reads
// and handles what arrived (drain) and parks it again. Registrations are
// one-shot, so a session is never served by two goroutines at once.
//
// The Go runtime's poller also watches every socket (edge-triggered); a
// second epoll set on the same descriptors is allowed and does not disturb
// it: reads still go through net.Conn.
type poller struct {
	srv  *Server
	epfd int
	wake [2]int // pipe that wakes epoll_wait on close

	mu     sync.Mutex
	slots  []*Session
	free   []int32
	closed bool
	done   chan struct{}
}

// parkState is a session's place in the poller.
type parkState struct {
	fd   int
	slot int32
	gen  int32
	in   bool // registered in the epoll set
}

// wakeSlot marks the wake-up pipe in epoll events.
const wakeSlot = -1

func newPoller(s *Server) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &poller{srv: s, epfd: epfd, done: make(chan struct{})}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("epoll wake pipe: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeSlot}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	go p.loop()
	go p.sweep()
	return p, nil
}

var errNoPoller = errors.New("no poller on this platform")

func (p *poller) closeFDs() {
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
	_ = syscall.Close(p.epfd)
}

// add parks a new session: it serves what is already buffered, else waits
// for bytes.
func (p *poller) add(s *Session) error {
	sc, ok := s.raw.(syscall.Conn)
	if !ok {
		return fmt.Errorf("connection %T has no file descriptor", s.raw)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errors.New("poller closed")
	}
	var slot int32
	if n := len(p.free); n > 0 {
		slot = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		slot = int32(len(p.slots)) //nolint:gosec // bounded by the process's descriptor limit
		p.slots = append(p.slots, nil)
	}
	p.slots[slot] = s
	s.park.fd, s.park.slot = fd, slot
	s.park.gen++
	p.mu.Unlock()
	p.arm(s)
	return nil
}

// arm waits for the next bytes of s, or serves them at once when crypto/tls
// already holds some.
func (p *poller) arm(s *Session) {
	if s.closed.Load() {
		return
	}
	if s.buffered() {
		p.dispatch(s)
		return
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: s.park.slot, Pad: s.park.gen}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.closed.Load() || p.closed {
		return
	}
	op := syscall.EPOLL_CTL_MOD
	if !s.park.in {
		op = syscall.EPOLL_CTL_ADD
	}
	if err := syscall.EpollCtl(p.epfd, op, s.park.fd, &ev); err != nil {
		go s.ended(fmt.Errorf("epoll: %w", err))
		return
	}
	s.park.in = true
}

// remove takes a closing session out of the poller, before its descriptor
// is closed.
func (p *poller) remove(s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.park.in {
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, s.park.fd, nil)
		s.park.in = false
	}
	if int(s.park.slot) < len(p.slots) && p.slots[s.park.slot] == s {
		p.slots[s.park.slot] = nil
		p.free = append(p.free, s.park.slot)
	}
}

// loop waits for readable sessions and dispatches them.
func (p *poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			p.srv.log.Error("epoll wait failed", "err", err)
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == wakeSlot {
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			p.mu.Lock()
			var s *Session
			if int(ev.Fd) < len(p.slots) {
				s = p.slots[ev.Fd]
			}
			if s != nil && s.park.gen != ev.Pad {
				s = nil // the slot was reused since
			}
			p.mu.Unlock()
			if s != nil {
				p.dispatch(s)
			}
		}
	}
}

// dispatch serves s on a goroutine of its own.
func (p *poller) dispatch(s *Session) {
	if !p.srv.track() {
		return
	}
	go func() {
		defer p.srv.wg.Done()
		p.serve(s)
	}()
}

// serve reads and handles what arrived for s, then parks it again.
func (p *poller) serve(s *Session) {
	if !s.peek.has {
		// Readable, but maybe only TLS records without application data:
		// wait for a first byte, and park again if none comes.
		_ = s.conn.SetReadDeadline(p.srv.now().Add(p.srv.lim.IOTimeout))
		n, err := s.conn.Read(s.peek.b[:])
		switch {
		case n == 1:
			s.peek.has = true
		case errors.Is(err, os.ErrDeadlineExceeded):
			p.arm(s)
			return
		default:
			if err == nil {
				err = errors.New("empty read")
			}
			s.ended(err)
			return
		}
	}
	if err := s.drain(); err != nil {
		s.ended(err)
		return
	}
	p.arm(s)
}

// sweep ends sessions that stayed silent past the idle timeout.
func (p *poller) sweep() {
	period := min(max(p.srv.lim.IdleTimeout/4, 100*time.Millisecond), 10*time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	var idle []*Session
	for {
		select {
		case <-t.C:
		case <-p.done:
			return
		}
		limit := p.srv.now().Add(-p.srv.lim.IdleTimeout).UnixNano()
		idle = idle[:0]
		p.mu.Lock()
		for _, s := range p.slots {
			if s != nil && s.lastHeard.Load() < limit {
				idle = append(idle, s)
			}
		}
		p.mu.Unlock()
		for _, s := range idle {
			s.ended(errIdle)
		}
	}
}

// close stops the poller; sessions still parked are closed by the server.
func (p *poller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wake[1], []byte{1})
	<-p.done
	p.closeFDs()
}
