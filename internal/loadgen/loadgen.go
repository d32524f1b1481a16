// Package loadgen runs light simulated devices against a gateway's session
// listener, for load measurements of the gateway: thousands of TLS clients
// in one process, each doing what a device's session does on the wire and
// nothing else.
//
// A light device holds a device certificate (several devices may share
// one), a session cache of its own for resumption and, while connected, its
// TLS connection. Connecting is the device's part of a session's opening:
// TCP connect from one of the configured source addresses, TLS 1.3 handshake
// with the device certificate, and a Heartbeat (the device's first message)
// answered by a HeartbeatAck. Between commands a connected device holds no
// goroutine; it answers nothing, since in this protocol the device speaks
// first: the gateway answers its heartbeats.
//
// The devices normally run in a process apart from the gateway (Start
// re-executes a binary, typically the test binary, which calls RunChild),
// so that the gateway's process holds only its own sockets and memory and
// the process file-descriptor limit applies to each side alone. Commands
// and results travel as JSON lines over the child's stdin and stdout.
//
// Loopback only: the gateway address and the source addresses must be
// loopback addresses (127.0.0.0/8 or ::1); others are refused.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// Identity is a device certificate chain (leaf first) and its key, in PEM.
type Identity struct {
	Chain []byte `json:"chain"`
	Key   []byte `json:"key"`
}

// Setup configures a Fleet.
type Setup struct {
	// Addr is the gateway's session listener (host:port, loopback).
	Addr string `json:"addr"`
	// ServerName is the name or IP address in the gateway's certificate.
	ServerName string `json:"serverName"`
	// Root and GatewayCA are the devices' pins, in PEM.
	Root      []byte `json:"root"`
	GatewayCA []byte `json:"gatewayCA"`
	// Identities are the device certificates; device i uses
	// Identities[i % len(Identities)].
	Identities []Identity `json:"identities"`
	// Sources are the local addresses devices dial from, in turn (each
	// source address has its own range of ephemeral ports). Empty: the
	// system's choice.
	Sources []string `json:"sources"`
	// Concurrency bounds the connections being opened at once. Default 64.
	Concurrency int `json:"concurrency"`
	// Timeout bounds one connection's opening (dial, handshake, first
	// heartbeat). Default 10s.
	Timeout time.Duration `json:"timeout"`
	// Retries is how many times a device whose opening failed tries again
	// (after 20–120 ms), as devices retry a gateway that refused them.
	// Default 10.
	Retries int `json:"retries"`
}

// Op names a command.
type Op string

// Commands a Fleet carries out.
const (
	// OpConnect opens N more devices' sessions and keeps them.
	OpConnect Op = "connect"
	// OpReconnect opens again the sessions of every device that has one
	// (after the gateway dropped them), resuming when Resume is set.
	OpReconnect Op = "reconnect"
	// OpCycle opens and closes N sessions one after the other, each by the
	// next device in turn (for the cost of one handshake).
	OpCycle Op = "cycle"
	// OpHeartbeat has every connected device send Rounds heartbeats, each
	// waiting for its acknowledgement, Concurrency devices at a time.
	OpHeartbeat Op = "heartbeat"
	// OpClose closes every device's connection, without a goodbye.
	OpClose Op = "close"
)

// Command is one thing for a Fleet to do.
type Command struct {
	Op Op `json:"op"`
	// N is the number of devices (OpConnect) or handshakes (OpCycle).
	N int `json:"n,omitempty"`
	// Rounds is the number of heartbeats per device (OpHeartbeat).
	Rounds int `json:"rounds,omitempty"`
	// Resume keeps each device's session cache, so that its next handshake
	// resumes; without it every handshake is a full one.
	Resume bool `json:"resume,omitempty"`
	// X25519 restricts the key exchange to X25519 (pki.ClientOptions
	// X25519Only). Otherwise devices follow pki.KeyExchanges: the hybrid
	// X25519MLKEM768 on a full handshake, X25519 when resuming.
	X25519 bool `json:"x25519,omitempty"`
	// Hybrid has devices offer the hybrid X25519MLKEM768 on resumptions
	// too (for comparison with the policy above).
	Hybrid bool `json:"hybrid,omitempty"`
	// Addr, when set, replaces the gateway's address from now on.
	Addr string `json:"addr,omitempty"`
}

// Result reports a Command's outcome.
type Result struct {
	Op Op `json:"op"`
	// OK counts the sessions opened (OpConnect, OpReconnect, OpCycle) or the
	// heartbeats acknowledged (OpHeartbeat).
	OK int `json:"ok"`
	// Failed counts openings or heartbeats that failed after their retries.
	Failed int `json:"failed"`
	// Resumed counts the handshakes that resumed a session.
	Resumed int `json:"resumed"`
	// Retried counts the openings tried again.
	Retried int `json:"retried"`
	// Connected is the number of devices holding a session afterwards.
	Connected int `json:"connected"`
	// Elapsed is the command's wall-clock time.
	Elapsed time.Duration `json:"elapsed"`
	// CPU is the process's user and system CPU time during the command.
	CPU time.Duration `json:"cpu"`
	// Err is the first error seen, if any.
	Err string `json:"err,omitempty"`
}

// Fleet is a set of light devices.
type Fleet struct {
	setup   Setup
	base    *tls.Config
	certs   []tls.Certificate
	sources []*net.TCPAddr
	codec   *protocol.Codec
	ids     protocol.IDs
	next    atomic.Uint64 // source address rotation

	mu      sync.Mutex
	addr    string
	devices []*device
}

// device is one light device.
type device struct {
	cert  *tls.Certificate
	cache oneSession
	conn  *tls.Conn
}

// NewFleet checks setup and returns a Fleet with no device yet.
func NewFleet(setup Setup) (*Fleet, error) {
	if setup.Concurrency <= 0 {
		setup.Concurrency = 64
	}
	if setup.Timeout <= 0 {
		setup.Timeout = 10 * time.Second
	}
	if setup.Retries < 0 {
		setup.Retries = 0
	} else if setup.Retries == 0 {
		setup.Retries = 10
	}
	if err := checkLoopback(setup.Addr); err != nil {
		return nil, err
	}
	roots, err := pki.ParseCertificatesPEM(setup.Root)
	if err != nil || len(roots) != 1 {
		return nil, fmt.Errorf("loadgen: root certificate: %w", errors.Join(err, errors.New("want exactly one")))
	}
	opts := pki.ClientOptions{Root: roots[0], ServerName: setup.ServerName}
	if len(setup.GatewayCA) > 0 {
		gw, err := pki.ParseCertificatesPEM(setup.GatewayCA)
		if err != nil || len(gw) != 1 {
			return nil, fmt.Errorf("loadgen: gateway CA: %w", errors.Join(err, errors.New("want exactly one")))
		}
		opts.GatewayCA = gw[0]
	}
	base, err := pki.ClientTLSConfig(opts)
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if len(setup.Identities) == 0 {
		return nil, errors.New("loadgen: no device identity")
	}
	f := &Fleet{setup: setup, base: base, addr: setup.Addr}
	for i, id := range setup.Identities {
		chain, err := pki.ParseCertificatesPEM(id.Chain)
		if err != nil {
			return nil, fmt.Errorf("loadgen: identity %d: %w", i, err)
		}
		key, err := pki.ParsePrivateKeyPEM(id.Key)
		if err != nil {
			return nil, fmt.Errorf("loadgen: identity %d: %w", i, err)
		}
		c, err := pki.NewTLSCertificate(key, chain[0], chain[1:]...)
		if err != nil {
			return nil, fmt.Errorf("loadgen: identity %d: %w", i, err)
		}
		f.certs = append(f.certs, c)
	}
	for _, s := range setup.Sources {
		ip := net.ParseIP(s)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("loadgen: source address %q is not a loopback address", s)
		}
		f.sources = append(f.sources, &net.TCPAddr{IP: ip})
	}
	if f.codec, err = protocol.NewCodec(protocol.Device, protocol.Limits{}); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	if err := f.ids.Init(protocol.Device); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return f, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("loadgen: gateway address: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		if host != "localhost" {
			return fmt.Errorf("loadgen: gateway address %q is not a loopback address", addr)
		}
	}
	return nil
}

// Connected returns the number of devices holding a session.
func (f *Fleet) Connected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, d := range f.devices {
		if d.conn != nil {
			n++
		}
	}
	return n
}

// Do carries out cmd. Every command is bounded: by its count, and each
// connection by Setup.Timeout and Setup.Retries.
func (f *Fleet) Do(ctx context.Context, cmd Command) Result {
	if cmd.Addr != "" {
		if err := checkLoopback(cmd.Addr); err != nil {
			return Result{Op: cmd.Op, Err: err.Error()}
		}
		f.mu.Lock()
		f.addr = cmd.Addr
		f.mu.Unlock()
	}
	cpu0 := ProcessCPU()
	start := time.Now()
	var r Result
	switch cmd.Op {
	case OpConnect:
		f.mu.Lock()
		first := len(f.devices)
		for i := range cmd.N {
			f.devices = append(f.devices, &device{cert: &f.certs[(first+i)%len(f.certs)]})
		}
		todo := f.devices[first:]
		f.mu.Unlock()
		r = f.open(ctx, todo, cmd)
	case OpReconnect:
		f.closeAll()
		f.mu.Lock()
		todo := append([]*device(nil), f.devices...)
		f.mu.Unlock()
		r = f.open(ctx, todo, cmd)
	case OpCycle:
		r = f.cycle(ctx, cmd)
	case OpHeartbeat:
		r = f.heartbeats(ctx, cmd)
	case OpClose:
		f.closeAll()
	default:
		r.Err = fmt.Sprintf("unknown command %q", cmd.Op)
	}
	r.Op = cmd.Op
	r.Elapsed = time.Since(start)
	r.CPU = ProcessCPU() - cpu0
	r.Connected = f.Connected()
	return r
}

// Close closes every device's connection.
func (f *Fleet) Close() { f.closeAll() }

func (f *Fleet) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.devices {
		if d.conn != nil {
			_ = d.conn.Close()
			d.conn = nil
		}
	}
}

// tally collects the outcome of concurrent openings.
type tally struct {
	mu                         sync.Mutex
	ok, failed, resumed, tried int
	err                        error
}

func (t *tally) add(resumed bool, retries int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tried += retries
	if err != nil {
		t.failed++
		if t.err == nil {
			t.err = err
		}
		return
	}
	t.ok++
	if resumed {
		t.resumed++
	}
}

func (t *tally) result() Result {
	r := Result{OK: t.ok, Failed: t.failed, Resumed: t.resumed, Retried: t.tried}
	if t.err != nil {
		r.Err = t.err.Error()
	}
	return r
}

// open opens the sessions of devs, Concurrency at a time.
func (f *Fleet) open(ctx context.Context, devs []*device, cmd Command) Result {
	var t tally
	var wg sync.WaitGroup
	sem := make(chan struct{}, f.setup.Concurrency)
	for _, d := range devs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, resumed, retries, err := f.dialRetry(ctx, d, cmd)
			if err == nil {
				f.mu.Lock()
				d.conn = conn
				f.mu.Unlock()
			}
			t.add(resumed, retries, err)
		})
	}
	wg.Wait()
	return t.result()
}

// cycle opens and closes N sessions in turn.
func (f *Fleet) cycle(ctx context.Context, cmd Command) Result {
	var t tally
	devs := make([]*device, min(len(f.certs), max(cmd.N, 1)))
	for i := range devs {
		devs[i] = &device{cert: &f.certs[i]}
	}
	if cmd.Resume {
		// A first, full handshake gives every device a ticket.
		for _, d := range devs {
			if conn, _, err := f.dial(ctx, d, cmd); err == nil {
				_ = conn.Close()
			}
		}
	}
	for i := range cmd.N {
		conn, resumed, retries, err := f.dialRetry(ctx, devs[i%len(devs)], cmd)
		if err == nil {
			_ = conn.Close()
		}
		t.add(resumed, retries, err)
	}
	return t.result()
}

// dialRetry opens d's session, trying again after a failure.
func (f *Fleet) dialRetry(ctx context.Context, d *device, cmd Command) (*tls.Conn, bool, int, error) {
	var err error
	for try := 0; try <= f.setup.Retries; try++ {
		if try > 0 {
			pause := 20*time.Millisecond + rand.N(100*time.Millisecond) //nolint:gosec // jitter, not a secret
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil, false, try, ctx.Err()
			}
		}
		var conn *tls.Conn
		var resumed bool
		conn, resumed, err = f.dial(ctx, d, cmd)
		if err == nil {
			return conn, resumed, try, nil
		}
	}
	return nil, false, f.setup.Retries, err
}

// dial opens one session: TCP from the next source address, handshake,
// first heartbeat and its acknowledgement.
func (f *Fleet) dial(ctx context.Context, d *device, cmd Command) (*tls.Conn, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, f.setup.Timeout)
	defer cancel()
	dialer := net.Dialer{Control: bindNoPort}
	if n := len(f.sources); n > 0 {
		dialer.LocalAddr = f.sources[f.next.Add(1)%uint64(n)]
	}
	f.mu.Lock()
	addr := f.addr
	f.mu.Unlock()
	raw, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("dial: %w", err)
	}
	cfg := f.base.Clone()
	cfg.Certificates = []tls.Certificate{*d.cert}
	cfg.ClientSessionCache = nil
	resuming := false
	if cmd.Resume {
		cfg.ClientSessionCache = &d.cache
		_, resuming = d.cache.Get("")
	}
	cfg.CurvePreferences = pki.KeyExchanges(resuming && !cmd.Hybrid, cmd.X25519)
	conn := tls.Client(raw, cfg)
	if dl, ok := ctx.Deadline(); ok {
		_ = raw.SetDeadline(dl)
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, false, fmt.Errorf("handshake: %w", err)
	}
	if err := f.roundTrip(conn); err != nil {
		_ = raw.Close()
		return nil, false, fmt.Errorf("first heartbeat: %w", err)
	}
	_ = raw.SetDeadline(time.Time{})
	return conn, conn.ConnectionState().DidResume, nil
}

// roundTrip sends a heartbeat and waits for its acknowledgement.
func (f *Fleet) roundTrip(conn *tls.Conn) error {
	id := f.ids.Next()
	frame, err := protocol.AppendFrame(nil, protocol.Envelope{Version: protocol.Version, MessageID: id,
		Message: &protocol.Heartbeat{UptimeSeconds: 1, FreeMemory: 64 << 10, Link: protocol.Link{RSSI: -50}}})
	if err != nil {
		return err
	}
	if _, err := conn.Write(frame); err != nil {
		return err
	}
	env, err := protocol.NewReader(conn, f.codec).ReadEnvelope()
	if err != nil {
		return err
	}
	if _, ok := env.Message.(*protocol.HeartbeatAck); !ok || env.MessageID != id {
		return fmt.Errorf("got %s %d, want the heartbeat's acknowledgement %d", env.Message.Type(), env.MessageID, id)
	}
	return nil
}

// heartbeats has every connected device send cmd.Rounds heartbeats.
func (f *Fleet) heartbeats(ctx context.Context, cmd Command) Result {
	f.mu.Lock()
	var conns []*tls.Conn
	for _, d := range f.devices {
		if d.conn != nil {
			conns = append(conns, d.conn)
		}
	}
	f.mu.Unlock()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, f.setup.Concurrency)
	for _, c := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = c.SetDeadline(time.Now().Add(f.setup.Timeout))
			defer func() { _ = c.SetDeadline(time.Time{}) }()
			for range cmd.Rounds {
				if ctx.Err() != nil {
					return
				}
				if err := f.roundTrip(c); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	r := Result{OK: int(ok.Load()), Failed: int(failed.Load())}
	if e, _ := firstErr.Load().(string); e != "" {
		r.Err = e
	}
	return r
}

// oneSession is a device's session cache: the last ticket the gateway
// gave it, as a microcontroller keeps one.
type oneSession struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *oneSession) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *oneSession) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	c.cs = cs
	c.mu.Unlock()
}

// bindNoPort lets the kernel choose the source port at connect time, per
// destination, when a source address is bound (IP_BIND_ADDRESS_NO_PORT), so
// a source address is not limited to one ephemeral port range for all
// destinations.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	return setBindNoPort(c)
}
