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

// memSample is the fleet process's live memory after a full collection.
type memSample struct {
	heap, stacks, sys uint64
}

func sampleMem() memSample {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapAlloc, stacks: ms.StackInuse, sys: ms.Sys - ms.HeapReleased}
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
	idleBytes        float64 // heap + stacks per device, no application
	idleHeap         float64
	appBytes         float64 // heap + stacks per device, one app running
	appsRunning      int
	goroutinesPerDev float64
}

func (f fleetFigures) String() string {
	return fmt.Sprintf("devices=%d startup=%s devices/s=%.0f idle=%.1f KiB/device (heap %.1f KiB) with-app=%.1f KiB/device apps_running=%d goroutines/device=%.2f",
		f.devices, f.startup.Round(time.Millisecond), float64(f.devices)/f.startup.Seconds(),
		f.idleBytes/1024, f.idleHeap/1024, f.appBytes/1024, f.appsRunning, f.goroutinesPerDev)
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
	base := sampleMem()
	baseG := runtime.NumGoroutine()
	f, err := sim.New(ctx, sim.Options{
		Devices: n, Gateways: []string{g.info.Session}, EnrollGateways: []string{g.info.Enroll},
		Root: certs[0], Seed: 1, SourceAddrs: sources, Engine: eng, SummaryInterval: -1,
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
	idle := sampleMem()
	fig.idleBytes = float64(idle.heap+idle.stacks-base.heap-base.stacks) / float64(n)
	fig.idleHeap = float64(idle.heap-base.heap) / float64(n)
	fig.goroutinesPerDev = float64(runtime.NumGoroutine()-baseG) / float64(n)
	if path := os.Getenv("WASMBED_SIM_HEAPPROFILE"); path != "" {
		writeHeapProfile(tb, path)
	}
	if withApp {
		ans := g.ask(tb, "deploy "+apps.Blinky)
		for f.Summary().AppsRunning < n {
			if ctx.Err() != nil {
				tb.Fatalf("apps running: %d of %d (%s)", f.Summary().AppsRunning, n, ans)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second)
		withApp := sampleMem()
		fig.appBytes = float64(withApp.heap+withApp.stacks-base.heap-base.stacks) / float64(n)
		fig.appsRunning = f.Summary().AppsRunning
	}
	return fig
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
	if fig.goroutinesPerDev > 1.1 {
		t.Errorf("goroutines per idle device: got %.2f, want at most one", fig.goroutinesPerDev)
	}
}

// BenchmarkFleet starts b.N devices against a gateway child and reports
// devices started per second and live memory per idle device (heap and
// goroutine stacks, after GC). Run it as
// go test -bench Fleet -benchtime=1000x -run '^$' ./internal/sim/.
func BenchmarkFleet(b *testing.B) {
	n := b.N
	b.ReportAllocs()
	fig := measureFleet(b, n, false, 10*time.Minute)
	b.ReportMetric(float64(n)/fig.startup.Seconds(), "devices/s")
	b.ReportMetric(fig.idleBytes, "idle-B/device")
	b.ReportMetric(fig.goroutinesPerDev, "goroutines/device")
}
