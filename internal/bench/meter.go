package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/examples/apps"
	"github.com/wasmbed/wasmbed/internal/gateway"
	"github.com/wasmbed/wasmbed/internal/platform"
	"github.com/wasmbed/wasmbed/internal/procmem"
)

// meter reads the figures of a running platform.
type meter struct {
	client   client.WithWatch
	kube     kubernetes.Interface
	gateways []platform.Endpoint
}

func newMeter(p *platform.Platform) (*meter, error) {
	scheme, err := gateway.NewScheme()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cfg := p.AdminConfig()
	cfg.QPS, cfg.Burst = 100, 200
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	m := &meter{client: c, kube: kube, gateways: p.Endpoints().Gateways}
	for _, g := range m.gateways {
		if g.PID == 0 {
			return nil, errNoGateway
		}
	}
	return m, nil
}

// gatewayMemory sums the gateways' memory.
func (m *meter) gatewayMemory() (procmem.Usage, error) {
	var sum procmem.Usage
	for _, g := range m.gateways {
		u, err := procmem.Of(g.PID)
		if err != nil {
			return sum, fmt.Errorf("bench: memory of %s: %w", g.Name, err)
		}
		sum.Resident += u.Resident
		sum.Private += u.Private
		sum.Source = u.Source
	}
	return sum, nil
}

// clockTicks is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux architecture Go supports).
const clockTicks = 100

// gatewayCPU sums the gateways' user and system CPU time.
func (m *meter) gatewayCPU() (time.Duration, error) {
	var sum time.Duration
	for _, g := range m.gateways {
		d, err := processCPU(g.PID)
		if err != nil {
			return 0, fmt.Errorf("bench: CPU of %s: %w", g.Name, err)
		}
		sum += d
	}
	return sum, nil
}

// processCPU reads utime + stime of pid from /proc/PID/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil //nolint:gosec // CPU clock ticks of one process, far below 2^63
}

// writeVerbs are the API server's verbs that change stored state.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "DELETE": true, "APPLY": true, "DELETECOLLECTION": true}

// apiWrites returns the API server's write requests so far, by resource
// (and subresource), from its apiserver_request_total counter.
func (m *meter) apiWrites(ctx context.Context) (map[string]float64, error) {
	raw, err := m.kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: API server metrics: %w", err)
	}
	fams, err := parseMetrics(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("bench: API server metrics: %w", err)
	}
	out := map[string]float64{}
	for _, mt := range fams["apiserver_request_total"].GetMetric() {
		l := labels(mt)
		if !writeVerbs[l["verb"]] {
			continue
		}
		res := l["resource"]
		if s := l["subresource"]; s != "" {
			res += "/" + s
		}
		out[res] += mt.GetCounter().GetValue()
	}
	return out, nil
}

// gatewayCounter sums a counter over the gateways' /metrics.
func (m *meter) gatewayCounter(ctx context.Context, name string) (float64, error) {
	var sum float64
	for _, g := range m.gateways {
		fams, err := scrape(ctx, "http://"+g.HTTP+"/metrics")
		if err != nil {
			return 0, fmt.Errorf("bench: metrics of %s: %w", g.Name, err)
		}
		for _, mt := range fams[name].GetMetric() {
			sum += mt.GetCounter().GetValue() + mt.GetGauge().GetValue()
		}
	}
	return sum, nil
}

// scrape reads a Prometheus text endpoint.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(bufio.NewReader(io.LimitReader(resp.Body, 64<<20)))
}

func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		out[lp.GetName()] = lp.GetValue()
	}
	return out
}

// benchApp is the application the bench rolls out.
const benchApp = "bench"

// rollout creates an Application for every device and times each device's
// DeviceApplication from the creation to Running.
func (m *meter) rollout(ctx context.Context, n int, maxUpdating *intstr.IntOrString, timeout time.Duration) (Percentiles, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	app := &wasmbedv1.Application{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: benchApp},
		Spec: wasmbedv1.ApplicationSpec{
			Name: benchApp, Version: "1.0", WasmBinary: apps.MustLoad(apps.Blinky),
			Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: wasmbedv1.LabelDeviceType, Operator: metav1.LabelSelectorOpExists},
			}},
			Strategy: wasmbedv1.RolloutStrategy{MaxUpdating: maxUpdating},
		},
	}
	sel := client.MatchingLabels{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(benchApp)}
	running := map[string]time.Duration{}
	start := time.Now()
	if err := m.client.Create(ctx, app); err != nil {
		return Percentiles{}, "", fmt.Errorf("bench: create the application: %w", err)
	}
	strategy := wasmbedv1.DefaultMaxUpdating
	if app.Spec.Strategy.MaxUpdating != nil {
		strategy = app.Spec.Strategy.MaxUpdating.String()
	}
	see := func(da *wasmbedv1.DeviceApplication) {
		if da.Status.Phase == wasmbedv1.DeviceApplicationPhaseRunning {
			if _, ok := running[da.Name]; !ok {
				running[da.Name] = time.Since(start)
			}
		}
	}
	for len(running) < n {
		// List, then watch from there; a watch the server ends is
		// started again the same way.
		var list wasmbedv1.DeviceApplicationList
		if err := m.client.List(ctx, &list, client.InNamespace("default"), sel); err != nil {
			return Percentiles{}, "", fmt.Errorf("bench: rollout: %d of %d devices Running: %w", len(running), n, err)
		}
		for i := range list.Items {
			see(&list.Items[i])
		}
		if len(running) >= n {
			break
		}
		w, err := m.client.Watch(ctx, &wasmbedv1.DeviceApplicationList{}, client.InNamespace("default"), sel,
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
		if err != nil {
			return Percentiles{}, "", fmt.Errorf("bench: rollout: %d of %d devices Running: %w", len(running), n, err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
			if da, ok := ev.Object.(*wasmbedv1.DeviceApplication); ok {
				see(da)
			}
			if len(running) >= n {
				break
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return Percentiles{}, "", fmt.Errorf("bench: rollout: %d of %d devices Running after %v", len(running), n, timeout)
		}
	}
	ds := make([]time.Duration, 0, len(running))
	for _, d := range running {
		ds = append(ds, d)
	}
	return percentiles(ds), strategy, nil
}

// steady measures writes, CPU and heartbeats over window.
func (m *meter) steady(ctx context.Context, r *Report, window time.Duration) error {
	w0, err := m.apiWrites(ctx)
	if err != nil {
		return err
	}
	c0, err := m.gatewayCPU()
	if err != nil {
		return err
	}
	h0, err := m.gatewayCounter(ctx, "wasmbed_gateway_heartbeats_total")
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := sleep(ctx, window); err != nil {
		return err
	}
	w1, err := m.apiWrites(ctx)
	if err != nil {
		return err
	}
	c1, err := m.gatewayCPU()
	if err != nil {
		return err
	}
	h1, err := m.gatewayCounter(ctx, "wasmbed_gateway_heartbeats_total")
	if err != nil {
		return err
	}
	elapsed := time.Since(t0)
	r.Steady = elapsed
	r.Writes = map[string]float64{}
	var total float64
	for res, v := range w1 {
		if d := v - w0[res]; d > 0 {
			r.Writes[res] = d
			total += d
		}
	}
	hours := elapsed.Hours()
	devices := float64(r.Devices)
	// Leases (the gateways', the controller's leader election, the API
	// server's own) are written at a fixed rate whatever the fleet.
	leases := r.Writes["leases"]
	r.LeaseWritesPerHour = leases / hours
	r.WritesPerDeviceHour = (total - leases) / devices / hours
	// Device status writes at steady state are the lastSeen refreshes,
	// whose rate is inversely proportional to the period.
	status := r.Writes["devices/status"]
	scale := min(r.LastSeenPeriod.Hours(), 1)
	r.ProjectedPerDeviceHour = ((total - leases - status) + status*scale) / devices / hours
	r.GatewayCPU = c1 - c0
	r.CPUPer1000 = r.GatewayCPU.Seconds() / elapsed.Seconds() / (devices / 1000)
	r.Heartbeats = (h1 - h0) / elapsed.Seconds()
	return nil
}
