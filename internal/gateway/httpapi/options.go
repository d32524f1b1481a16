package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// MaxModuleSize is the largest WebAssembly module a deploy accepts, in bytes:
// 768 KiB, whose base64 form (1 MiB) is the most an Application's
// spec.wasmBinary holds.
const MaxModuleSize = fleetctl.MaxModuleSize

// Fleet is what only the gateway knows: the devices whose sessions it holds
// and whether it is ready to serve. The gateway implements it; the API never
// reaches into its session internals.
type Fleet interface {
	// DeviceMetrics returns the last metrics report of a device whose
	// session this replica holds, and false when it holds no report for it.
	// It must not block.
	DeviceMetrics(namespace, name string) (DeviceMetrics, bool)
	// Ready returns nil when the gateway can serve: its caches are synced
	// and its device listener is up. The error says what is missing; it is
	// logged, never shown to callers.
	Ready() error
}

// DeviceMetrics is the last metrics report a device sent to the gateway
// replica that holds its session.
type DeviceMetrics struct {
	// ReceivedAt is when the gateway received the report.
	ReceivedAt time.Time `json:"receivedAt"`
	// UptimeSeconds is the time since the device booted.
	UptimeSeconds uint32 `json:"uptimeSeconds"`
	// FreeMemoryBytes is the device's free heap.
	FreeMemoryBytes uint32 `json:"freeMemoryBytes"`
	// Link is the quality of the device's network link.
	Link LinkMetrics `json:"link"`
	// Applications holds one entry per installed application.
	Applications []AppMetrics `json:"applications"`
}

// LinkMetrics is the quality of a device's network link.
type LinkMetrics struct {
	// RSSI is the received signal strength in dBm, typically -100..0.
	RSSI int16 `json:"rssi"`
	// LossPermille is the share of lost packets, in thousandths.
	LossPermille uint16 `json:"lossPermille"`
}

// AppMetrics holds the counters of one application on a device, each
// counted since the application last started.
type AppMetrics struct {
	// Name is the application's name as the device knows it (spec.name).
	Name string `json:"name"`
	// MemoryBytes is the application's current linear memory size.
	MemoryBytes uint64 `json:"memoryBytes"`
	// Fuel is the CPU budget consumed.
	Fuel uint64 `json:"fuel"`
	// CPUMicros is the CPU time used, in microseconds.
	CPUMicros uint64 `json:"cpuMicros"`
	// Executions counts completed invocations.
	Executions uint64 `json:"executions"`
	// Traps counts traps.
	Traps uint64 `json:"traps"`
}

// Informers gives access to the shared informers behind the cache-backed
// Reader, for streaming changes to watchers. controller-runtime's
// cache.Cache implements it.
type Informers interface {
	// GetInformer returns the informer of obj's kind, starting it if needed.
	GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error)
}

// Options configures the HTTP API. Reader, Writer, Fleet, Authenticator and
// Authorizer are required; every other field has a usable zero value.
type Options struct {
	// Reader serves every list and get. It should be the gateway's
	// informer-backed cache: the API makes no API-server request per read.
	// It must cover Devices, Applications and DeviceApplications, and the
	// pairing ConfigMap in the system namespace.
	Reader client.Reader
	// Writer performs the writes (deploy, start, stop, delete, revoke,
	// pairing) with the gateway's own identity, after the caller's
	// permission has been checked.
	Writer client.Client
	// Fleet answers what only the gateway knows.
	Fleet Fleet
	// Events, when set, serves the events routes: it lists
	// events.k8s.io/v1 Events, which the gateway does not cache, so it
	// should read Kubernetes directly (a manager's APIReader). Without it
	// those routes answer 501.
	Events client.Reader
	// Informers, when set, enables watching lists (?watch=true) as
	// server-sent events. Without it a watch is answered 501.
	Informers Informers

	// Authenticator identifies callers from their requests, normally by
	// bearer token through Kubernetes TokenReview (see NewDelegatingAuth).
	Authenticator authenticator.Request
	// Authorizer decides whether a caller may perform a request's mapped
	// Kubernetes action, normally through SubjectAccessReview.
	Authorizer authorizer.Authorizer

	// SystemNamespace holds the pairing window. Defaults to
	// wasmbedv1.DefaultSystemNamespace.
	SystemNamespace string
	// DefaultNamespace receives the Applications deployed without naming a
	// namespace (POST /api/v1/applications). Defaults to "default".
	DefaultNamespace string

	// Clock tells the time of pairing windows and summaries. Defaults to
	// the real clock.
	Clock clock.PassiveClock
	// Logger receives request failures (with their internal causes) and an
	// audit line per change. Defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the API's request metrics. Nil registers none.
	Registerer prometheus.Registerer
	// Gatherer is served at /metrics. Defaults to Registerer when it is a
	// Gatherer too, else prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer

	// MaxWatchers bounds the watches served at once. Defaults to 64.
	MaxWatchers int
	// WatchHeartbeat is the period of keep-alive comments on a watch.
	// Defaults to 30s.
	WatchHeartbeat time.Duration
}

// ErrInvalidOptions reports Options that New cannot work with.
var ErrInvalidOptions = errors.New("httpapi: invalid options")

// withDefaults checks the required fields and fills in defaults.
func (o Options) withDefaults() (Options, error) {
	var missing []string
	if o.Reader == nil {
		missing = append(missing, "Reader")
	}
	if o.Writer == nil {
		missing = append(missing, "Writer")
	}
	if o.Fleet == nil {
		missing = append(missing, "Fleet")
	}
	if o.Authenticator == nil {
		missing = append(missing, "Authenticator")
	}
	if o.Authorizer == nil {
		missing = append(missing, "Authorizer")
	}
	if len(missing) > 0 {
		return o, fmt.Errorf("%w: %v required", ErrInvalidOptions, missing)
	}
	if o.SystemNamespace == "" {
		o.SystemNamespace = wasmbedv1.DefaultSystemNamespace
	}
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	for name, ns := range map[string]string{"SystemNamespace": o.SystemNamespace, "DefaultNamespace": o.DefaultNamespace} {
		if err := validNamespace(ns); err != nil {
			return o, fmt.Errorf("%w: %s %q: %w", ErrInvalidOptions, name, ns, err)
		}
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Gatherer == nil {
		if g, ok := o.Registerer.(prometheus.Gatherer); ok {
			o.Gatherer = g
		} else {
			o.Gatherer = prometheus.DefaultGatherer
		}
	}
	if o.MaxWatchers <= 0 {
		o.MaxWatchers = 64
	}
	if o.WatchHeartbeat <= 0 {
		o.WatchHeartbeat = 30 * time.Second
	}
	return o, nil
}

// MetricsFromReport converts a device's metrics report, received at at, to
// the API's form, for a Fleet whose gateway keeps the protocol's reports.
func MetricsFromReport(r *protocol.MetricsReport, at time.Time) DeviceMetrics {
	m := DeviceMetrics{
		ReceivedAt:      at,
		UptimeSeconds:   r.UptimeSeconds,
		FreeMemoryBytes: r.FreeMemory,
		Link:            LinkMetrics{RSSI: r.Link.RSSI, LossPermille: r.Link.LossPermille},
		Applications:    make([]AppMetrics, 0, len(r.Apps)),
	}
	for _, a := range r.Apps {
		m.Applications = append(m.Applications, AppMetrics{Name: a.App, MemoryBytes: a.MemoryBytes, Fuel: a.Fuel,
			CPUMicros: a.CPUMicros, Executions: a.Executions, Traps: a.Traps})
	}
	return m
}
