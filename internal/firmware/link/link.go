// Package link is the connectivity manager of the simulated device (the
// "WiFi manager" of the firmware architecture).
//
// A [Manager] owns the device's radio: it dials the gateway endpoints in
// order, sticks to the one that works, rotates to the next when one fails,
// and waits with exponential backoff and full jitter (drawn from an injected
// random source, timed by an injected [hal.Clock]) once a whole round of
// endpoints has failed or an established link was lost. Connections it hands
// out are [Conn] values: net.Conn wrappers that model the medium — added
// latency, a probability that any read or write finds the link gone — and
// that fault injection can cut at any moment with [Manager.Flap].
//
// Two media are modelled. [WiFi] reports a received signal strength (RSSI,
// dBm) and a link quality derived from it. [Wired] is the serial/ethernet
// link of boards without a radio (HiFive1): it has no RSSI and its quality
// is 100 while up.
//
// Typical use by the gateway client:
//
//	conn, err := m.Connect(ctx)   // blocks through backoff and failover
//	... TLS handshake and session set-up on conn ...
//	m.Established()               // the endpoint works: stick to it, reset backoff
//	... session runs until conn fails ...
//	m.Lost(err)                   // next Connect waits a jittered backoff
//
// If the handshake or enrollment fails instead, [Manager.Reject] makes the
// next Connect try the next endpoint.
package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wasmbed/wasmbed/internal/firmware/hal"
)

// Medium is the physical link kind of a device.
type Medium uint8

const (
	// WiFi is a radio link with RSSI (ESP32).
	WiFi Medium = iota + 1
	// Wired is a serial/ethernet link without RSSI (HiFive1).
	Wired
)

// String returns "wifi" or "wired".
func (m Medium) String() string {
	switch m {
	case WiFi:
		return "wifi"
	case Wired:
		return "wired"
	default:
		return fmt.Sprintf("medium(%d)", uint8(m))
	}
}

// State is the link state reported by [Manager.Status].
type State uint8

const (
	// Down means no connection is open.
	Down State = iota
	// Connecting means Connect is dialing or waiting out a backoff.
	Connecting
	// Up means a connection is open.
	Up
)

// String returns the lower-case state name.
func (s State) String() string {
	switch s {
	case Down:
		return "down"
	case Connecting:
		return "connecting"
	case Up:
		return "up"
	default:
		return fmt.Sprintf("state(%d)", uint8(s))
	}
}

// Conditions describe the simulated medium.
type Conditions struct {
	// Latency is added to every write; Jitter adds a uniform [0, Jitter].
	Latency time.Duration
	Jitter  time.Duration
	// DropProbability is the chance, per read or write, that the link is
	// found gone (the connection is cut and the operation fails with
	// [ErrLinkDropped]).
	DropProbability float64
	// RSSI is the mean received signal strength in dBm (WiFi only; zero
	// means -55) and RSSISpread the ± noise of each sample.
	RSSI       int
	RSSISpread int
}

// DialFunc opens a transport connection, like [net.Dialer.DialContext].
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Config configures a [Manager]. Zero fields take the documented defaults.
type Config struct {
	// Medium is the link kind; zero means WiFi.
	Medium Medium
	// Endpoints are the gateway addresses (host:port), tried in order.
	Endpoints []string
	// Dial opens TCP connections; nil means a net.Dialer.
	Dial DialFunc
	// DialTimeout bounds one dial; zero means 10s.
	DialTimeout time.Duration
	// Conditions of the simulated medium.
	Conditions Conditions
	// Backoff between rounds of failed attempts; zero means DefaultBackoff.
	Backoff Backoff
	// Clock times backoff, flaps and latency; nil means hal.SystemClock.
	Clock hal.Clock
	// Rand draws jitter, drops and RSSI noise; nil means a random seed.
	// The Manager serialises its use.
	Rand *rand.Rand
	// Logger receives link events; nil discards them.
	Logger *slog.Logger
}

// Errors returned by the Manager and its connections.
var (
	// ErrNoEndpoints means the Config lists no gateway endpoint.
	ErrNoEndpoints = errors.New("no gateway endpoints")
	// ErrLinkDropped is returned by a [Conn] whose link was cut by the
	// simulated medium or by [Manager.Flap].
	ErrLinkDropped = errors.New("link dropped")
)

// Stats are cumulative link counters.
type Stats struct {
	// Connects counts successful dials, Reconnects those after the first.
	Connects, Reconnects uint64
	// Failures counts failed dials, rejected endpoints and lost links.
	Failures uint64
	// Drops counts links cut by the simulated medium, Flaps by fault injection.
	Drops, Flaps uint64
}

// Status is a snapshot of the link.
type Status struct {
	Medium   Medium
	State    State
	Endpoint string
	// RSSI in dBm, meaningful only when HasRSSI (WiFi and Up).
	RSSI    int
	HasRSSI bool
	// Quality is 0..100.
	Quality int
	// LossPermille is the medium's drop probability in thousandths.
	LossPermille int
	Stats
}

// Manager is the connectivity manager of one device. It is safe for
// concurrent use.
type Manager struct {
	medium    Medium
	endpoints []string
	dial      DialFunc
	timeout   time.Duration
	backoff   Backoff
	clock     hal.Clock
	log       *slog.Logger

	mu        sync.Mutex
	rand      *rand.Rand
	cond      Conditions
	state     State
	cur       int       // endpoint in use or next to try
	tried     int       // endpoints tried since the last wait or success
	attempt   int       // backoff waits since the last success
	pendWait  bool      // a backoff wait is due before the next dial
	downUntil time.Time // flap in progress
	conn      *Conn
	stats     Stats
	everUp    bool
}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, ErrNoEndpoints
	}
	m := &Manager{
		medium:    cfg.Medium,
		endpoints: append([]string(nil), cfg.Endpoints...),
		dial:      cfg.Dial,
		timeout:   cfg.DialTimeout,
		backoff:   cfg.Backoff,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		rand:      cfg.Rand,
		cond:      cfg.Conditions,
	}
	if m.medium == 0 {
		m.medium = WiFi
	}
	if m.dial == nil {
		m.dial = (&net.Dialer{}).DialContext
	}
	if m.timeout <= 0 {
		m.timeout = 10 * time.Second
	}
	if m.backoff == (Backoff{}) {
		m.backoff = DefaultBackoff
	}
	if m.clock == nil {
		m.clock = hal.SystemClock{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.rand == nil {
		m.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) //nolint:gosec // simulated link noise (drops, latency jitter), never keys
	}
	if m.cond.RSSI == 0 {
		m.cond.RSSI = -55
	}
	return m, nil
}

// Medium returns the link kind.
func (m *Manager) Medium() Medium { return m.medium }

// Endpoints returns the configured gateway endpoints.
func (m *Manager) Endpoints() []string { return append([]string(nil), m.endpoints...) }

// SetConditions replaces the simulated medium conditions.
func (m *Manager) SetConditions(c Conditions) {
	if c.RSSI == 0 {
		c.RSSI = -55
	}
	m.mu.Lock()
	m.cond = c
	m.mu.Unlock()
}

// Connect dials the gateway, waiting out flaps and backoff and failing over
// between endpoints, until a connection is open or ctx is done.
func (m *Manager) Connect(ctx context.Context) (*Conn, error) {
	for {
		m.mu.Lock()
		if m.conn != nil {
			c := m.conn
			m.mu.Unlock()
			c.drop()
			m.mu.Lock()
		}
		m.state = Connecting
		var wait time.Duration
		now := m.clock.Now()
		if now.Before(m.downUntil) {
			wait = m.downUntil.Sub(now)
		} else if m.pendWait {
			m.attempt++
			wait = m.backoff.Delay(m.attempt, m.rand)
			m.pendWait = false
			m.tried = 0
		}
		m.mu.Unlock()
		if wait > 0 {
			if err := hal.Sleep(ctx, m.clock, wait); err != nil {
				m.setState(Down)
				return nil, fmt.Errorf("connect: %w", err)
			}
			continue // re-check: a flap may have started meanwhile
		}
		if err := ctx.Err(); err != nil {
			m.setState(Down)
			return nil, fmt.Errorf("connect: %w", err)
		}

		m.mu.Lock()
		ep := m.endpoints[m.cur]
		m.mu.Unlock()
		dctx, cancel := context.WithTimeout(ctx, m.timeout)
		raw, err := m.dial(dctx, "tcp", ep)
		cancel()
		if err != nil {
			m.log.Debug("gateway dial failed", "endpoint", ep, "err", err)
			m.fail(true)
			continue
		}
		c := &Conn{Conn: raw, m: m, endpoint: ep}
		// The connection outlives the dial: its context ends when it is
		// closed, not with ctx.
		c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
		m.mu.Lock()
		if m.clock.Now().Before(m.downUntil) {
			// The link went down while dialing.
			m.mu.Unlock()
			_ = raw.Close()
			continue
		}
		m.conn = c
		m.state = Up
		m.stats.Connects++
		if m.everUp {
			m.stats.Reconnects++
		}
		m.everUp = true
		m.mu.Unlock()
		m.log.Debug("link up", "endpoint", ep)
		return c, nil
	}
}

// Established reports that the session on the current connection is up:
// the endpoint is good, so later reconnects stay on it and the backoff is
// reset.
func (m *Manager) Established() {
	m.mu.Lock()
	m.attempt, m.tried, m.pendWait = 0, 0, false
	m.mu.Unlock()
}

// Reject reports that the current endpoint refused the device (handshake or
// session set-up failed): the next Connect tries the next endpoint, and
// backs off once all of them failed in a row.
func (m *Manager) Reject(err error) {
	m.log.Debug("gateway endpoint rejected", "endpoint", m.Endpoint(), "err", err)
	m.closeCurrent()
	m.fail(true)
}

// Lost reports that an established session ended: the next Connect waits a
// jittered backoff and retries the same endpoint.
func (m *Manager) Lost(err error) {
	m.log.Debug("link lost", "endpoint", m.Endpoint(), "err", err)
	m.closeCurrent()
	m.mu.Lock()
	m.stats.Failures++
	m.pendWait = true
	m.tried = 0
	m.mu.Unlock()
}

// Flap cuts the current connection, if any, and keeps the link down for d.
func (m *Manager) Flap(d time.Duration) {
	m.mu.Lock()
	until := m.clock.Now().Add(d)
	if until.After(m.downUntil) {
		m.downUntil = until
	}
	m.stats.Flaps++
	c := m.conn
	m.mu.Unlock()
	m.log.Debug("link flap", "down", d)
	if c != nil {
		c.drop()
	}
}

// Endpoint returns the endpoint in use (or to be tried next).
func (m *Manager) Endpoint() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.endpoints[m.cur]
}

// Status samples the link. For WiFi it draws a fresh RSSI sample.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{Medium: m.medium, State: m.state, Endpoint: m.endpoints[m.cur], Stats: m.stats,
		LossPermille: int(m.cond.DropProbability * 1000)}
	if m.state != Up {
		return s
	}
	if m.medium == Wired {
		s.Quality = 100
		return s
	}
	s.HasRSSI = true
	s.RSSI = m.cond.RSSI
	if m.cond.RSSISpread > 0 {
		s.RSSI += m.rand.IntN(2*m.cond.RSSISpread+1) - m.cond.RSSISpread
	}
	s.Quality = min(max(2*(s.RSSI+100), 0), 100)
	return s
}

func (m *Manager) setState(s State) {
	m.mu.Lock()
	m.state = s
	m.mu.Unlock()
}

// fail records a failed attempt at the current endpoint; rotate moves on.
func (m *Manager) fail(rotate bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Failures++
	if rotate {
		m.cur = (m.cur + 1) % len(m.endpoints)
		m.tried++
		if m.tried >= len(m.endpoints) {
			m.pendWait = true
		}
	}
}

func (m *Manager) closeCurrent() {
	m.mu.Lock()
	c := m.conn
	m.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// detach forgets c if it is the current connection.
func (m *Manager) detach(c *Conn) {
	m.mu.Lock()
	if m.conn == c {
		m.conn = nil
		if m.state == Up {
			m.state = Down
		}
	}
	m.mu.Unlock()
}

// roll draws whether the medium drops the link now.
func (m *Manager) roll() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.cond.DropProbability
	return p > 0 && m.rand.Float64() < p
}

func (m *Manager) latency() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.cond.Latency
	if m.cond.Jitter > 0 {
		d += time.Duration(m.rand.Int64N(int64(m.cond.Jitter) + 1))
	}
	return d
}

// Conn is a connection over the simulated medium. Deadlines and addresses
// are those of the underlying connection.
type Conn struct {
	net.Conn
	m        *Manager
	endpoint string
	dropped  atomic.Bool
	closed   atomic.Bool
	// ctx ends when the connection is closed, cutting a write's latency
	// short.
	ctx    context.Context
	cancel context.CancelFunc
}

// Endpoint returns the gateway address this connection was dialed to.
func (c *Conn) Endpoint() string { return c.endpoint }

// Read reads from the link.
func (c *Conn) Read(p []byte) (int, error) {
	if c.dropped.Load() {
		return 0, ErrLinkDropped
	}
	if c.m.roll() {
		c.m.countDrop()
		c.drop()
		return 0, ErrLinkDropped
	}
	n, err := c.Conn.Read(p)
	if err != nil && c.dropped.Load() {
		return n, ErrLinkDropped
	}
	return n, err
}

// Write writes to the link after the medium's latency.
func (c *Conn) Write(p []byte) (int, error) {
	if c.dropped.Load() {
		return 0, ErrLinkDropped
	}
	if c.m.roll() {
		c.m.countDrop()
		c.drop()
		return 0, ErrLinkDropped
	}
	if d := c.m.latency(); d > 0 {
		// Cut short by Close: the write below then fails.
		_ = hal.Sleep(c.ctx, c.m.clock, d)
	}
	n, err := c.Conn.Write(p)
	if err != nil && c.dropped.Load() {
		return n, ErrLinkDropped
	}
	return n, err
}

// Close closes the connection and marks the link down.
func (c *Conn) Close() error {
	c.m.detach(c)
	if c.closed.Swap(true) {
		return nil
	}
	c.cancel()
	return c.Conn.Close()
}

// Dropped reports whether the medium or a flap cut this connection.
func (c *Conn) Dropped() bool { return c.dropped.Load() }

func (c *Conn) drop() {
	c.dropped.Store(true)
	_ = c.Close()
}

func (m *Manager) countDrop() {
	m.mu.Lock()
	m.stats.Drops++
	m.mu.Unlock()
}
