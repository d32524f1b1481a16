// Package platform runs the whole of Wasmbed in one process, as `wasmbed up`
// does: the embedded control plane, the platform's certificates and roles,
// the controller, one or more gateway replicas and a simulated fleet of both
// board types, enrolled through the real pairing flow, with a sample
// application deployed. Every component runs with its own identity and the
// permissions it has on a real cluster (the embedded control plane signs a
// client certificate per service account), so what works here works there.
//
//	p, err := platform.Start(ctx, platform.Options{DataDir: dir, Devices: 4, Sample: true})
//	...
//	fmt.Println(p.Endpoints())
//	err = p.Wait() // until ctx ends or a component fails
//
// State lives in the data directory: the control plane's etcd, the root
// CA (its key never enters the cluster) and each simulated device's flash,
// so a second Start resumes: devices keep their identities and flash,
// applications are still there and still run.
package platform

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/wasmbed/wasmbed/internal/controlplane"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/sim"
)

// Default ports of the first gateway replica; replica i adds i to each.
const (
	DefaultSessionPort = 4423
	DefaultEnrollPort  = 4523
	DefaultHTTPPort    = 8080
)

// maxDevices bounds the simulated fleet: each device holds a connection, and
// a process may hold 20,000 file descriptors.
const maxDevices = 20000

// Options configure Start. Zero values take the documented defaults.
type Options struct {
	// DataDir holds the platform's state. Required.
	DataDir string
	// APIPort is the API server's port on 127.0.0.1; 0 picks a free one.
	APIPort int
	// Host is the loopback address the gateways listen on and their
	// certificates name; default 127.0.0.1.
	Host string
	// Gateways is the number of gateway replicas; default 1.
	Gateways int
	// SessionPort, EnrollPort and HTTPPort are the first replica's ports;
	// replica i listens on each plus i. Zero picks free ports.
	SessionPort, EnrollPort, HTTPPort int
	// Devices is the size of the simulated fleet; 0 runs none (real
	// hardware only).
	Devices int
	// Mix is the fleet's board mix (sim.ParseMix); default both boards
	// alike.
	Mix string
	// Sample deploys the blinky sample application to every device.
	Sample bool
	// MemoryFlash keeps the simulated devices' flash in memory instead of
	// files under DataDir/devices: a device then needs one file descriptor
	// instead of two, and enrolls again after a restart.
	MemoryFlash bool
	// SourceAddrs are loopback addresses the simulated devices dial from,
	// round robin, as devices of a real fleet come from many addresses
	// (a gateway bounds the connections pending per source); default the
	// host's.
	SourceAddrs []string
	// StartRate paces the simulated fleet's start, in devices per second,
	// as devices of a real fleet are switched on over time; zero starts
	// them all at once.
	StartRate float64
	// HeartbeatInterval of gateways and simulated devices; default 30s.
	HeartbeatInterval time.Duration
	// GatewayExec, when set, is the path of a wasmbed binary: the gateways
	// then run as child processes (`GatewayExec gateway ...`, with a
	// kubeconfig of the gateway's service account in DataDir/gateways and
	// their logs beside it) instead of in this process, so that they can
	// be measured, or killed, on their own.
	GatewayExec string
	// GatewayArgs are further flags of child gateways, e.g.
	// --last-seen-period.
	GatewayArgs []string
	// Progress, when set, is told each stage as it completes.
	Progress func(Stage)
	// Logger receives the components' logs; nil discards them.
	Logger *slog.Logger
}

// Stage is a step of Start, reported as it completes.
type Stage struct {
	// Name says what is ready, e.g. "control plane".
	Name string
	// Detail adds what is worth knowing, e.g. the number of devices.
	Detail string
	// Took is how long the step took.
	Took time.Duration
}

func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("platform: a data directory is required")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if ip := net.ParseIP(o.Host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("platform: host %q must be a loopback address", o.Host)
	}
	if o.Gateways == 0 {
		o.Gateways = 1
	}
	if o.Gateways < 1 || o.Gateways > 16 {
		return fmt.Errorf("platform: %d gateways, want 1 to 16", o.Gateways)
	}
	if o.Devices < 0 || o.Devices > maxDevices {
		return fmt.Errorf("platform: %d devices, want 0 to %d", o.Devices, maxDevices)
	}
	if o.Mix == "" {
		o.Mix = "esp32=1,hifive1=1"
	}
	if _, err := sim.ParseMix(o.Mix); err != nil {
		return fmt.Errorf("platform: %w", err)
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(Stage) {}
	}
	for _, p := range []int{o.APIPort, o.SessionPort, o.EnrollPort, o.HTTPPort} {
		if p < 0 || p+o.Gateways > 65535 {
			return fmt.Errorf("platform: port %d out of range", p)
		}
	}
	return nil
}

// Endpoint is where one gateway replica serves.
type Endpoint struct {
	// Name is the replica's name.
	Name string `json:"name"`
	// Session, Enroll and HTTP are its listeners' addresses.
	Session string `json:"session"`
	Enroll  string `json:"enroll"`
	HTTP    string `json:"http"`
	// PID is the process of a replica run as a child process.
	PID int `json:"pid,omitempty"`
}

// Platform is a running platform.
type Platform struct {
	opts   Options
	cp     *controlplane.ControlPlane
	admin  *rest.Config
	bundle trustPins
	token  string
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	errs   chan error

	mu        sync.Mutex
	gateways  []*runningGateway
	fleet     *sim.Fleet
	fleetStop context.CancelFunc
	fleetDone chan struct{}
	ctrlStop  context.CancelFunc
	ctrlDone  chan error
}

// trustPins are what simulated devices pin.
type trustPins struct{ root, gatewayCA, deviceCA *x509.Certificate }

// runningGateway is one replica.
type runningGateway struct {
	Endpoint
	gw     *gateway.Gateway // nil for a child process
	proc   *childGateway    // nil for an in-process replica
	cancel context.CancelFunc
	done   chan error
}

// DataDirFiles are the data directory's entries Start creates; anything
// else in a non-empty directory makes it refuse, so that it never writes
// into a directory that is not its own.
var dataDirFiles = map[string]bool{
	"etcd": true, "pki": true, "kubeconfig": true, "lock": true, "wasmbed.lock": true,
	"platform-pki": true, "devices": true, "endpoints.json": true, "gateways": true,
}

// checkDataDir refuses a data directory that is not one of ours.
func checkDataDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", dir, err)
	}
	for _, e := range entries {
		if !dataDirFiles[e.Name()] {
			return fmt.Errorf("data directory %s holds %q, which wasmbed did not create: choose an empty or a wasmbed directory", dir, e.Name())
		}
	}
	return nil
}

// checkPorts fails with a *controlplane.PortInUseError if a port the
// platform will listen on is taken, before anything is started.
func (o *Options) checkPorts(ctx context.Context) error {
	var lc net.ListenConfig
	ports := []int{}
	if o.APIPort != 0 {
		ports = append(ports, o.APIPort)
	}
	for i := range o.Gateways {
		for _, base := range []int{o.SessionPort, o.EnrollPort, o.HTTPPort} {
			if base != 0 {
				ports = append(ports, base+i)
			}
		}
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			return fmt.Errorf("platform: port %d given twice", p)
		}
		seen[p] = true
		host := o.Host
		if p == o.APIPort {
			host = "127.0.0.1"
		}
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return &controlplane.PortInUseError{Address: addr, Err: err}
		}
		_ = ln.Close()
	}
	return nil
}

// gatewayAddr returns replica i's address for a base port (0: any free).
func (o *Options) gatewayAddr(base, i int) string {
	port := 0
	if base != 0 {
		port = base + i
	}
	return net.JoinHostPort(o.Host, strconv.Itoa(port))
}

// devicesDir is where the simulated devices keep their flash.
func (o *Options) devicesDir() string { return filepath.Join(o.DataDir, "devices") }
