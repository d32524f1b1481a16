package session_test

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/internal/loadgen"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/procmem"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// The load benchmarks run the gateway's session core in the test process
// and light devices (package loadgen) in child processes: this test binary
// re-executed with loadgen.ChildEnv set. The gateway process then holds
// only its own sockets and memory, and each side has the process's file
// descriptor limit (20,000 here) to itself. Devices dial from several
// loopback source addresses (127.0.0.2, 127.0.0.3, ...) so that no address
// runs out of ephemeral ports. Sizes default to a few hundred devices so
// that `go test -bench . -benchtime 1x` stays quick; the WASMBED_BENCH_*
// variables (docs/benchmarks.md) give the large runs.

func TestMain(m *testing.M) {
	if loadgen.IsChild() {
		if err := loadgen.RunChild(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// devicesPerChild bounds the devices one child process holds, below the
// process's descriptor limit.
const devicesPerChild = 10000

// countHandler accepts every device and counts sessions.
type countHandler struct {
	opened, closed, handled atomic.Int64
}

func (h *countHandler) Open(context.Context, *session.Session) error { h.opened.Add(1); return nil }
func (h *countHandler) Handle(*session.Session, protocol.Envelope)   { h.handled.Add(1) }
func (h *countHandler) Closed(*session.Session, session.CloseReason, error) {
	h.closed.Add(1)
}

// loadGateway is a session server on loopback with what devices need to
// reach it.
type loadGateway struct {
	pki  *testPKI
	lim  session.Limits
	h    *countHandler
	srv  *session.Server
	addr string
	ids  []loadgen.Identity
	// bare, when set, is a plain crypto/tls server with a goroutine per
	// connection instead of the session core.
	bare *bareServer
}

// newLoadGateway starts a gateway (a bare TLS server when bare is set)
// with 16 device identities. Devices present their leaf alone, as the
// firmware does; withCA has them send the device CA too.
func newLoadGateway(b *testing.B, lim session.Limits, bare, withCA bool) *loadGateway {
	b.Helper()
	g := &loadGateway{pki: newTestPKI(b), lim: lim}
	for i := range 16 {
		pub, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			b.Fatal(err)
		}
		c, err := g.pki.ca.IssueDevice(pub, pki.DeviceOptions{DeviceID: fmt.Sprintf("load-%02d", i)})
		if err != nil {
			b.Fatal(err)
		}
		keyPEM, err := pki.EncodePrivateKeyPEM(key)
		if err != nil {
			b.Fatal(err)
		}
		chain := append([]*x509.Certificate{c.Leaf}, c.Chain...)
		if !withCA {
			chain = chain[:1]
		}
		g.ids = append(g.ids, loadgen.Identity{Chain: pki.EncodeCertificatesPEM(chain...), Key: keyPEM})
	}
	if bare {
		g.bare = startBare(b, g.pki.serverTLS)
		g.addr = g.bare.ln.Addr().String()
		return g
	}
	g.start(b, "127.0.0.1:0")
	b.Cleanup(func() { g.stop() })
	return g
}

// start serves sessions on addr.
func (g *loadGateway) start(b *testing.B, addr string) {
	b.Helper()
	g.h = &countHandler{}
	srv, err := session.NewServer(session.Config{Handler: g.h, Limits: g.lim})
	if err != nil {
		b.Fatal(err)
	}
	var ln net.Listener
	for try := 0; ; try++ {
		ln, err = net.Listen("tcp", addr)
		if err == nil || try == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		b.Fatal(err)
	}
	g.srv, g.addr = srv, ln.Addr().String()
	go func() { _ = srv.ServeSessions(ln, g.pki.serverTLS) }()
}

// stop closes the server abruptly, as a crashing gateway would, and waits
// for its goroutines.
func (g *loadGateway) stop() {
	if g.srv == nil {
		return
	}
	g.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = g.srv.Shutdown(ctx)
	g.srv = nil
}

// sessions returns the live sessions (connections, for the bare server).
func (g *loadGateway) sessions() int {
	if g.bare != nil {
		return int(g.bare.live.Load())
	}
	return g.srv.Sessions()
}

// waitSessions waits, at most limit, for n live sessions.
func (g *loadGateway) waitSessions(b *testing.B, n int, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for g.sessions() != n {
		if time.Now().After(deadline) {
			b.Fatalf("got %d sessions, want %d", g.sessions(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fleet is the devices' child processes.
type fleet struct {
	procs []*loadgen.Process
	sizes []int
}

// startFleet starts enough children for n devices (without connecting
// them), each dialing from sources of its own.
func startFleet(b *testing.B, g *loadGateway, n, concurrency int) *fleet {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	f := &fleet{}
	children := max(1, (n+devicesPerChild-1)/devicesPerChild)
	for c := range children {
		var sources []string
		// Eight source addresses: the gateway admits at most 64 pending
		// handshakes per source (Limits.MaxPendingPerSource), and a device
		// whose connection it refuses drops its ticket.
		for i := range 8 {
			sources = append(sources, fmt.Sprintf("127.0.%d.%d", c, 2+i))
		}
		p, err := loadgen.Start(b.Context(), exe, []string{"-test.run=^$"}, loadgen.Setup{
			Addr: g.addr, ServerName: "127.0.0.1",
			Root:       pki.EncodeCertificatesPEM(g.pki.ca.Root.Cert),
			GatewayCA:  pki.EncodeCertificatesPEM(g.pki.ca.GatewayCA.Cert),
			Identities: g.ids, Sources: sources, Concurrency: concurrency,
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(p.Close)
		f.procs = append(f.procs, p)
		size := n / children
		if c < n%children {
			size++
		}
		f.sizes = append(f.sizes, size)
	}
	return f
}

// do runs cmd in every child at once (N split between them when cmd.N is
// -1) and sums the results; CPU is the children's total.
func (f *fleet) do(b *testing.B, cmd loadgen.Command) loadgen.Result {
	b.Helper()
	var mu sync.Mutex
	var sum loadgen.Result
	var wg sync.WaitGroup
	for i, p := range f.procs {
		c := cmd
		if c.N < 0 {
			c.N = f.sizes[i]
		}
		wg.Go(func() {
			r, err := p.Do(c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				r.Err = err.Error()
			}
			sum.OK += r.OK
			sum.Failed += r.Failed
			sum.Resumed += r.Resumed
			sum.Retried += r.Retried
			sum.Connected += r.Connected
			sum.CPU += r.CPU
			sum.Elapsed = max(sum.Elapsed, r.Elapsed)
			if sum.Err == "" {
				sum.Err = r.Err
			}
		})
	}
	wg.Wait()
	if sum.Failed > 0 {
		b.Fatalf("%s: %d failed: %s", cmd.Op, sum.Failed, sum.Err)
	}
	return sum
}

// memSample is the gateway process's memory at one moment, as found and
// after a full collection, with the Go runtime's live heap and stacks and
// the goroutines.
type memSample struct {
	found, collected procmem.Usage
	heap, stacks     uint64
	goroutines       int
}

func sampleMem(b *testing.B) memSample {
	b.Helper()
	found, err := procmem.Self()
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	collected, err := procmem.Self()
	if err != nil {
		b.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{found: found, collected: collected, heap: ms.HeapAlloc, stacks: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// BenchmarkIdleSessions measures the gateway process's memory per idle
// session (WASMBED_BENCH_SESSIONS sessions, default 300): growth of
// resident (smaps Rss) and private (smaps Anonymous) memory of the process
// over its baseline, as found with the sessions open and again after a full
// collection, and the Go heap plus goroutine stacks, divided by the number
// of sessions, both over the baseline after a collection. Run one mode per
// process (-bench 'IdleSessions/parked$') for the figures as found: a mode
// run after another reuses the heap the first one left. Each device has
// done its handshake and first heartbeat.
// parked is the product's default (idle sessions in the server's epoll
// set), parked-chain the same with devices that send the device CA after
// their certificate (the gateway pins it and ignores it), goroutine the
// reader-goroutine mode, bare a plain crypto/tls server
// with a goroutine per connection reading the same frames.
func BenchmarkIdleSessions(b *testing.B) {
	n := envInt("WASMBED_BENCH_SESSIONS", 300)
	for _, mode := range []string{"parked", "parked-chain", "goroutine", "bare"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				g := newLoadGateway(b, session.Limits{GoroutinePerSession: mode == "goroutine", IdleTimeout: 10 * time.Minute},
					mode == "bare", mode == "parked-chain")
				f := startFleet(b, g, n, 64)
				base := sampleMem(b)
				r := f.do(b, loadgen.Command{Op: loadgen.OpConnect, N: -1, Resume: true})
				g.waitSessions(b, n, time.Minute)
				time.Sleep(200 * time.Millisecond) // let the last handshakes' goroutines end
				s := sampleMem(b)
				// Both against the baseline after a collection: memory an
				// earlier sub-benchmark freed is then returned, not reused.
				per := func(a, z procmem.Usage) (float64, float64) { return z.Sub(a).Per(n) }
				res, priv := per(base.collected, s.found)
				cres, cpriv := per(base.collected, s.collected)
				b.ReportMetric(res, "resident-B/session")
				b.ReportMetric(priv, "private-B/session")
				b.ReportMetric(cres, "resident-gc-B/session")
				b.ReportMetric(cpriv, "private-gc-B/session")
				b.ReportMetric((float64(s.heap+s.stacks)-float64(base.heap+base.stacks))/float64(n), "heap+stacks-B/session")
				b.ReportMetric(float64(s.goroutines-base.goroutines)/float64(n), "goroutines/session")
				b.Logf("%d sessions opened (%d retried); gateway %v with them, %v after collection",
					r.OK, r.Retried, s.found, s.collected)
				if path := os.Getenv("WASMBED_BENCH_HEAPPROFILE"); path != "" {
					writeHeapProfile(b, path+"."+mode)
				}
			}
		})
	}
}

// writeHeapProfile writes the live heap's profile to path.
func writeHeapProfile(b *testing.B, path string) {
	b.Helper()
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkGatewayHandshake measures the gateway's CPU time per session
// opening (WASMBED_BENCH_HANDSHAKES openings one after the other, default
// 100): the process's user and system time over the openings, with the
// devices in a child process, so only the gateway's work is counted —
// accept, TLS 1.3 handshake with the device certificate's verification (or
// a resumption and its re-check), the session's opening, the first
// heartbeat and its acknowledgement, and the close. The devices' CPU is
// reported apart.
func BenchmarkGatewayHandshake(b *testing.B) {
	n := envInt("WASMBED_BENCH_HANDSHAKES", 100)
	variants := []struct {
		name    string
		cmd     loadgen.Command
		resumed bool
	}{
		{"full/x25519", loadgen.Command{X25519: true}, false},
		{"full/x25519mlkem768", loadgen.Command{}, false},
		{"resumed/x25519", loadgen.Command{Resume: true}, true},
		{"resumed/x25519mlkem768", loadgen.Command{Resume: true, Hybrid: true}, true},
	}
	for _, vr := range variants {
		b.Run(vr.name, func(b *testing.B) {
			g := newLoadGateway(b, session.Limits{}, false, false)
			f := startFleet(b, g, 1, 1)
			var gw, dev time.Duration
			var total int
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			for b.Loop() {
				cpu0 := loadgen.ProcessCPU()
				cmd := vr.cmd
				cmd.Op, cmd.N = loadgen.OpCycle, n
				r := f.do(b, cmd)
				gw += loadgen.ProcessCPU() - cpu0
				dev += r.CPU
				total += r.OK
				if want := map[bool]int{false: 0, true: n}[vr.resumed]; r.Resumed != want {
					b.Fatalf("got %d resumed handshakes, want %d", r.Resumed, want)
				}
			}
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(gw.Microseconds())/float64(total), "gw-cpu-µs/handshake")
			b.ReportMetric(float64(dev.Microseconds())/float64(total), "dev-cpu-µs/handshake")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(total), "gw-B/handshake")
			b.ReportMetric(x25519Reference(), "ref-x25519-cpu-µs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// x25519Reference returns the CPU time of one X25519 key generation and
// shared-secret computation in this process now: the machine's speed at the
// time of a measurement, so that figures taken under different loads can be
// compared (a handshake costs so many X25519 operations).
func x25519Reference() float64 {
	const n = 200
	peer, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return 0
	}
	cpu0 := loadgen.ProcessCPU()
	for range n {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return 0
		}
		if _, err := k.ECDH(peer.PublicKey()); err != nil {
			return 0
		}
	}
	return float64((loadgen.ProcessCPU() - cpu0).Microseconds()) / n
}

// BenchmarkReconnect measures how long WASMBED_BENCH_RECONNECT devices
// (default 300) take to have their sessions again after the gateway
// restarts: the devices connect and receive session tickets, the gateway
// closes abruptly and starts again on the same address with the same
// ticket keys, and every device reconnects at once (each child opening
// WASMBED_BENCH_RECONNECT_CONCURRENCY connections at a time, default 256),
// resuming its session. The time runs from the new listener's start to the
// gateway counting every session; the gateway's CPU over it is reported
// too. x25519 is the devices' policy (pki.KeyExchanges: X25519 alone when
// resuming), x25519mlkem768 resumes with the hybrid key exchange.
func BenchmarkReconnect(b *testing.B) {
	n := envInt("WASMBED_BENCH_RECONNECT", 300)
	conc := envInt("WASMBED_BENCH_RECONNECT_CONCURRENCY", 256)
	for _, hybrid := range []bool{false, true} {
		b.Run(map[bool]string{false: "x25519", true: "x25519mlkem768"}[hybrid], func(b *testing.B) {
			// Devices send no heartbeat while the others connect: no idle
			// timeout may end their sessions meanwhile.
			g := newLoadGateway(b, session.Limits{IdleTimeout: time.Hour}, false, false)
			f := startFleet(b, g, n, conc)
			f.do(b, loadgen.Command{Op: loadgen.OpConnect, N: -1, Resume: true})
			g.waitSessions(b, n, 5*time.Minute)
			var wall, gw time.Duration
			var resumed, retried, rounds int
			for b.Loop() {
				addr := g.addr
				g.stop()
				cpu0 := loadgen.ProcessCPU()
				start := time.Now()
				g.start(b, addr)
				r := f.do(b, loadgen.Command{Op: loadgen.OpReconnect, Resume: true, Hybrid: hybrid})
				g.waitSessions(b, n, 5*time.Minute)
				wall += time.Since(start)
				gw += loadgen.ProcessCPU() - cpu0
				resumed += r.Resumed
				retried += r.Retried
				rounds++
			}
			b.ReportMetric(wall.Seconds()/float64(rounds), "s-to-reconnect-all")
			b.ReportMetric(float64(n*rounds)/wall.Seconds(), "sessions/s")
			b.ReportMetric(float64(gw.Microseconds())/float64(n*rounds), "gw-cpu-µs/session")
			b.ReportMetric(100*float64(resumed)/float64(n*rounds), "resumed-%")
			b.ReportMetric(float64(retried)/float64(rounds), "retries")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkHeartbeats measures the gateway's CPU per heartbeat answered:
// WASMBED_BENCH_HB_SESSIONS parked sessions (default 200) each send
// WASMBED_BENCH_HB_ROUNDS heartbeats (default 20), each waiting for its
// acknowledgement, 64 devices at a time. heartbeats/s-per-core is one
// second of CPU divided by the gateway's CPU per heartbeat.
func BenchmarkHeartbeats(b *testing.B) {
	n := envInt("WASMBED_BENCH_HB_SESSIONS", 200)
	rounds := envInt("WASMBED_BENCH_HB_ROUNDS", 20)
	g := newLoadGateway(b, session.Limits{IdleTimeout: time.Hour}, false, false)
	f := startFleet(b, g, n, 64)
	f.do(b, loadgen.Command{Op: loadgen.OpConnect, N: -1, Resume: true, X25519: true})
	g.waitSessions(b, n, 5*time.Minute)
	var gw, wall time.Duration
	var count int
	for b.Loop() {
		cpu0 := loadgen.ProcessCPU()
		start := time.Now()
		r := f.do(b, loadgen.Command{Op: loadgen.OpHeartbeat, Rounds: rounds})
		wall += time.Since(start)
		gw += loadgen.ProcessCPU() - cpu0
		count += r.OK
	}
	if count != n*rounds*b.N {
		b.Fatalf("got %d heartbeats acknowledged, want %d", count, n*rounds*b.N)
	}
	per := float64(gw.Nanoseconds()) / float64(count)
	b.ReportMetric(per/1000, "gw-cpu-µs/heartbeat")
	b.ReportMetric(1e9/per, "heartbeats/s-per-core")
	b.ReportMetric(float64(count)/wall.Seconds(), "heartbeats/s")
	b.ReportMetric(0, "ns/op")
}

// bareServer is a plain crypto/tls server with a goroutine per
// connection, the baseline the session core's memory is compared with: it
// answers heartbeats and keeps each connection's goroutine blocked in a read.
type bareServer struct {
	ln    net.Listener
	live  atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startBare(b *testing.B, cfg *tls.Config) *bareServer {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	codec, err := protocol.NewCodec(protocol.Gateway, protocol.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	s := &bareServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(c, cfg, codec) })
		}
	})
	b.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *bareServer) serve(c net.Conn, cfg *tls.Config, codec *protocol.Codec) {
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	s.live.Add(1)
	defer s.live.Add(-1)
	r, w := protocol.NewReader(tc, codec), protocol.NewWriter(tc, codec)
	for {
		env, err := r.ReadEnvelope()
		if err != nil {
			return
		}
		if _, ok := env.Message.(*protocol.Heartbeat); ok {
			err = w.WriteEnvelope(protocol.Envelope{Version: protocol.Version, MessageID: env.MessageID, Message: &protocol.HeartbeatAck{ServerTime: 1}})
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
