package sim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/firmware/client/clienttest"
	"github.com/wasmbed/wasmbed/internal/firmware/device"
	"github.com/wasmbed/wasmbed/internal/firmware/wasm"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/procmem"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/sim"
)

// The fleet-scale measurements run the test gateway in a child process
// (this test binary re-executed with serverEnv set), so that the fleet's
// process holds only device-side sockets and memory: a 10,000-device run
// needs 10,000 sockets on each side, and the process limit is 20,000 file
// descriptors.
const serverEnv = "WASMBED_SIMTEST_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(serverEnv) == "1" {
		os.Exit(serveChild())
	}
	os.Exit(m.Run())
}

// childInfo is what the gateway child announces on its first stdout line.
type childInfo struct {
	Root    string `json:"root"`
	Enroll  string `json:"enroll"`
	Session string `json:"session"`
}

// serveChild runs the test gateway until stdin closes. Commands on stdin,
// one per line, each answered with one line:
//
//	count           → connected enrolled
//	deploy APP      → deployed N running M
func serveChild() int {
	srv, err := clienttest.Start(clienttest.Options{Quiet: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()
	info, _ := json.Marshal(childInfo{Root: string(pki.EncodeCertificatesPEM(srv.Root())), Enroll: srv.EnrollAddr(), Session: srv.SessionAddr()})
	fmt.Println(string(info))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "count":
			fmt.Println(srv.Connected(), srv.Enrolled())
		case "deploy":
			module, err := apps.Load(arg)
			if err != nil {
				fmt.Println("error", err)
				continue
			}
			var sent, running atomic.Int64
			var wg sync.WaitGroup
			sem := make(chan struct{}, 64)
			for _, p := range srv.Peers() {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					st, err := p.Deploy(ctx, arg, 1, module)
					sent.Add(1)
					if err == nil && st.State == 2 {
						running.Add(1)
					}
				}()
			}
			wg.Wait()
			fmt.Println("deployed", sent.Load(), "running", running.Load())
		default:
			fmt.Println("error unknown command")
		}
	}
	return 0
}

// gatewayChild is a running gateway child process.
type gatewayChild struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	info childInfo
}

func startGatewayChild(tb testing.TB) *gatewayChild {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	g := &gatewayChild{cmd: cmd, in: in, out: bufio.NewScanner(outPipe)}
	g.out.Buffer(make([]byte, 64<<10), 1<<20)
	tb.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	if !g.out.Scan() {
		tb.Fatal("gateway child did not start")
	}
	if err := json.Unmarshal(g.out.Bytes(), &g.info); err != nil {
		tb.Fatalf("gateway child: %v", err)
	}
	return g
}

func (g *gatewayChild) ask(tb testing.TB, cmd string) string {
	tb.Helper()
	if _, err := fmt.Fprintln(g.in, cmd); err != nil {
		tb.Fatal(err)
	}
	if !g.out.Scan() {
		tb.Fatalf("gateway child: no answer to %q", cmd)
	}
	return g.out.Text()
}

// memSample is the fleet process's memory at one moment: as the operating
// system counts it (procmem: smaps Rss and Anonymous) both as found and
// after a full collection that returns free pages, and the Go runtime's
// live heap and goroutine stacks after that collection.
type memSample struct {
	found, collected procmem.Usage
	heap, stacks     uint64
}

func sampleMem(tb testing.TB) memSample {
	tb.Helper()
	found, err := procmem.Self()
	if err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	collected, err := procmem.Self()
	if err != nil {
		tb.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{found: found, collected: collected, heap: ms.HeapAlloc, stacks: ms.StackInuse}
}

// perDevice is the growth of a memSample over a baseline, per device, in
// bytes.
type perDevice struct {
	private, resident           float64 // after the collection
	foundPrivate, foundResident float64 // as found, before it
	heap                        float64 // live heap + goroutine stacks
}

func (s memSample) perDevice(base memSample, n int) perDevice {
	var p perDevice
	p.resident, p.private = s.collected.Sub(base.collected).Per(n)
	p.foundResident, p.foundPrivate = s.found.Sub(base.found).Per(n)
	p.heap = (float64(s.heap+s.stacks) - float64(base.heap+base.stacks)) / float64(n)
	return p
}

func (p perDevice) String() string {
	return fmt.Sprintf("private=%.1fKiB resident=%.1fKiB (as found: private=%.1fKiB resident=%.1fKiB) heap+stacks=%.1fKiB",
		p.private/1024, p.resident/1024, p.foundPrivate/1024, p.foundResident/1024, p.heap/1024)
}

// writeHeapProfile writes the live heap to path, for `go tool pprof
// -sample_index=inuse_space`.
func writeHeapProfile(tb testing.TB, path string) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}

// fleetFigures are the measurements of one fleet run.
type fleetFigures struct {
	devices          int
	startup          time.Duration
	idle             perDevice      // sessions open, no application
	idleProcess      procmem.Usage  // the whole fleet process then, after collection
	withApp          perDevice      // one app deployed to every device
	appsDeployed     int            // deployments the gateway sent
	appsStarted      int            // deployments the device answered with "running"
	appsRunning      int            // apps running when withApp was measured
	stopped          map[string]int // apps not running when withApp was measured, by state (resource)
	goroutinesPerDev float64
}

func (f fleetFigures) String() string {
	s := fmt.Sprintf("devices=%d startup=%s devices/s=%.0f goroutines/device=%.2f\n  idle per device: %v\n  idle process: %v",
		f.devices, f.startup.Round(time.Millisecond), float64(f.devices)/f.startup.Seconds(), f.goroutinesPerDev,
		f.idle, f.idleProcess)
	if f.appsRunning > 0 {
		s += fmt.Sprintf("\n  with app per device: %v deployed=%d started=%d running=%d stopped=%v",
			f.withApp, f.appsDeployed, f.appsStarted, f.appsRunning, f.stopped)
	}
	return s
}

// measureFleet runs n devices against a gateway child, until all are
// online, measures them idle, deploys one small app to each and measures
// again.
func measureFleet(tb testing.TB, n int, withApp bool, timeout time.Duration) fleetFigures {
	tb.Helper()
	g := startGatewayChild(tb)
	certs, err := pki.ParseCertificatesPEM([]byte(g.info.Root))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	eng, err := wasm.NewEngine(ctx, wasm.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	defer eng.Close(context.Background())
	var sources []string
	if n > 2000 {
		sources = []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	}
	base := sampleMem(tb)
	baseG := runtime.NumGoroutine()
	f, err := sim.New(ctx, sim.Options{
		Devices: n, Gateways: []string{g.info.Session}, EnrollGateways: []string{g.info.Enroll},
		Root: certs[0], SourceAddrs: sources, Engine: eng, SummaryInterval: -1,
		HeartbeatInterval: 30 * time.Second, MetricsInterval: 5 * time.Minute,
	})
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan sim.Summary, 1)
	start := time.Now()
	go func() { done <- f.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	for f.Summary().Phases[device.Online] < n {
		if ctx.Err() != nil {
			tb.Fatalf("only %d of %d devices online before the timeout: %v", f.Summary().Phases[device.Online], n, f.Summary())
		}
		time.Sleep(50 * time.Millisecond)
	}
	fig := fleetFigures{devices: n, startup: time.Since(start)}
	time.Sleep(2 * time.Second) // let handshake garbage and buffers settle
	idle := sampleMem(tb)
	fig.idle, fig.idleProcess = idle.perDevice(base, n), idle.collected
	fig.goroutinesPerDev = float64(runtime.NumGoroutine()-baseG) / float64(n)
	if path := os.Getenv("WASMBED_SIM_HEAPPROFILE"); path != "" {
		writeHeapProfile(tb, path)
	}
	if withApp {
		// Log the idle figures now: they stand even if the app phase fails.
		tb.Logf("idle: %v", fig)
		ans := g.ask(tb, "deploy "+apps.Blinky)
		if _, err := fmt.Sscanf(ans, "deployed %d running %d", &fig.appsDeployed, &fig.appsStarted); err != nil {
			tb.Fatalf("deploy: %q", ans)
		}
		// Wait, for at most two minutes, until the fleet runs every app
		// the gateway saw start.
		deadline := time.Now().Add(2 * time.Minute)
		for f.Summary().AppsRunning < fig.appsStarted && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second)
		fig.withApp = sampleMem(tb).perDevice(base, n)
		fig.appsRunning = f.Summary().AppsRunning
		fig.stopped = map[string]int{}
		for _, d := range f.Devices() {
			fw := d.Firmware()
			if fw == nil {
				fig.stopped["device off"]++
				continue
			}
			for _, st := range fw.Applications.Statuses(nil) {
				if st.State != protocol.StateRunning {
					fig.stopped[fmt.Sprintf("%v (%s)", st.State, st.Resource)]++
				}
			}
		}
	}

	return fig
}

// maxGoroutinesPerDevice bounds goroutines per idle device with its
// session open (one: its boot loop, which is also its session). The
// memory bound, maxPrivatePerDevice, is in norace_test.go and
// race_test.go: the race detector's shadow memory multiplies it.
const maxGoroutinesPerDevice = 1.1

// checkBounds fails tb when fig exceeds the per-device bounds.
func checkBounds(tb testing.TB, fig fleetFigures) {
	tb.Helper()
	if limit := float64(maxPrivatePerDevice); fig.idle.private > limit {
		tb.Errorf("private memory per idle device: got %.1f KiB, want at most %.0f KiB (%v)", fig.idle.private/1024, limit/1024, fig.idle)
	}
	if fig.goroutinesPerDev > maxGoroutinesPerDevice {
		tb.Errorf("goroutines per idle device: got %.2f, want at most %.1f", fig.goroutinesPerDev, maxGoroutinesPerDevice)
	}
}

// TestFleetMemoryBound runs a few hundred devices with their sessions open
// against a gateway in another process and bounds what each costs the
// fleet's process: private memory and goroutines.
func TestFleetMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 300 devices and a gateway process")
	}
	fig := measureFleet(t, 300, false, 3*time.Minute)
	t.Log(fig)
	checkBounds(t, fig)
}

// TestFleetScale is the large fleet run, opt-in: WASMBED_SIM_SCALE=10000
// go test -run TestFleetScale -v ./internal/sim/ (bounded by
// WASMBED_SIM_SCALE_TIMEOUT, default 10m).
func TestFleetScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WASMBED_SIM_SCALE"))
	if n <= 0 {
		t.Skip("set WASMBED_SIM_SCALE=N to run N devices")
	}
	timeout := 10 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("WASMBED_SIM_SCALE_TIMEOUT")); err == nil {
		timeout = d
	}
	fig := measureFleet(t, n, true, timeout)
	t.Log(fig)
	checkBounds(t, fig)
	// Every device starts the app. On a machine short of CPU for the
	// fleet, a tick can overrun the app's execution time limit, which
	// stops that app: that is the limit working, and the only way an app
	// may stop here.
	if fig.appsStarted != n {
		t.Errorf("apps started: got %d, want %d", fig.appsStarted, n)
	}
	for state, count := range fig.stopped {
		if state != fmt.Sprintf("%v (%s)", protocol.StateLimitExceeded, "execution time") {
			t.Errorf("%d apps stopped in state %s, want only execution-time limit stops", count, state)
		}
	}
}

// BenchmarkFleet starts b.N devices against a gateway child and reports
// devices started per second and, per idle device with its session open,
// private and resident memory (smaps Anonymous and Rss after a full
// collection), live heap plus goroutine stacks, and goroutines. Run it as
// go test -bench Fleet -benchtime=1000x -run '^$' ./internal/sim/.
func BenchmarkFleet(b *testing.B) {
	n := b.N
	b.ReportAllocs()
	fig := measureFleet(b, n, false, 10*time.Minute)
	b.ReportMetric(float64(n)/fig.startup.Seconds(), "devices/s")
	b.ReportMetric(fig.idle.private, "private-B/device")
	b.ReportMetric(fig.idle.resident, "resident-B/device")
	b.ReportMetric(fig.idle.heap, "heap+stacks-B/device")
	b.ReportMetric(fig.goroutinesPerDev, "goroutines/device")
}
