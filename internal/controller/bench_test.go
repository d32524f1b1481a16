package controller

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/fixture"
	"github.com/wasmbed/wasmbed/internal/issuer"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/rollout"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// BenchmarkReconcileCPU measures the controller's own work to roll a
// version out to 1,000 devices, without the API server: planning the
// rollout over 1,000 targets and signing 1,000 artifacts into
// DeviceApplication objects (one op = 1,000 devices). For confidential
// modules each artifact also wraps the content key for its device.
func BenchmarkReconcileCPU(b *testing.B) {
	const n = 1000
	scheme, err := NewScheme()
	if err != nil {
		b.Fatal(err)
	}
	r := &ApplicationReconciler{Scheme: scheme, ArtifactLifetime: DefaultArtifactLifetime}
	signKey, _ := issuer.GenerateSigningKey()
	signer, _ := artifact.NewSigner(signKey)
	issuerKey, _ := issuer.GenerateIssuerKey()
	devices := make([]*wasmbedv1.Device, n)
	sealKeys := make([]*ecdh.PublicKey, n)
	targets := make([]rollout.Target, n)
	for i := range devices {
		k, _ := seal.GenerateKey()
		d := fixture.Device(fmt.Sprintf("d%04d", i), fixture.InNamespace("bench"))
		d.Spec.SealingKey = base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes())
		devices[i], sealKeys[i] = d, k.PublicKey()
		targets[i] = rollout.Target{Device: d.Name, Online: true}
	}
	for _, confidential := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "confidential"}[confidential], func(b *testing.B) {
			app := fixture.Application("blinky", fixture.InNamespace("bench"), fixture.WithModule(blinky))
			app.UID, app.Generation, app.Spec.Version = "uid", 1, "1.0"
			if confidential {
				if err := issuer.SealApplication(app, blinky, issuerKey.PublicKey()); err != nil {
					b.Fatal(err)
				}
			}
			v := benchVersion(b, app, signer, issuerKey)
			all := intstr.FromString("100%")
			strategy, _ := rollout.ResolveStrategy(wasmbedv1.RolloutStrategy{MaxUpdating: &all}, n)
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				plan := rollout.Plan(rollout.Input{Revision: v.record.Revision, Strategy: strategy, Now: now, Targets: targets})
				if len(plan.Assign) != n {
					b.Fatalf("assigned %d", len(plan.Assign))
				}
				for i := range plan.Assign {
					if _, err := r.withArtifact(signer, app, v, devices[i], nil, sealKeys[i], now); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/device")
		})
	}
}

// benchVersion prepares app's version in process, as prepare does, without
// the admission sandbox.
func benchVersion(b *testing.B, app *wasmbedv1.Application, signer *artifact.Signer, issuerKey *ecdh.PrivateKey) *version {
	b.Helper()
	r := &ApplicationReconciler{Keys: &Keys{signer: signer, issuer: issuerKey}, Admission: inProcess{}}
	v, err := r.prepare(b.Context(), app)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// inProcess admits modules in the calling process (trusted benchmark input).
type inProcess struct{}

func (inProcess) Check(ctx context.Context, req modcheck.Request) (modcheck.Verdict, error) {
	return modcheck.FirmwareChecker{}.Check(ctx, req), nil
}

// countingTransport counts the requests a client makes.
type countingTransport struct {
	rt            http.RoundTripper
	reads, writes atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet {
		c.reads.Add(1)
	} else {
		c.writes.Add(1)
	}
	return c.rt.RoundTrip(req)
}

// BenchmarkRollout rolls an application out to a fleet (200 devices, or
// WASMBED_BENCH_DEVICES) with the test playing the gateway, and reports the
// API requests the controller made per device deployed, from apply to
// Running (reads include watch and list requests; writes are creates,
// updates, patches, deletes and Events). ms-to-issue-all is the time from
// apply until every device's DeviceApplication carries its signed artifact
// (the controller's share); ms/rollout the time to Running with the test's
// gateway, which delivers devices one at a time; the process CPU includes
// the embedded API server and etcd.
func BenchmarkRollout(b *testing.B) {
	n := 200
	if s := os.Getenv("WASMBED_BENCH_DEVICES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("WASMBED_BENCH_DEVICES=%q", s)
		}
	}
	var reads, writes, statusWritesN, elapsed, issue, firstIssue, cpu float64
	for range b.N {
		counter := &countingTransport{}
		tb := newTestbed(b, func(o *Options) {
			cfg := rest.CopyConfig(env.Config)
			cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.rt = rt; return counter }
			o.RESTConfig = cfg
			o.StatusInterval = DefaultStatusInterval
		})
		g := newGateway(tb)
		names := make([]string, n)
		for i := range n {
			names[i] = fmt.Sprintf("d%05d", i)
			g.addDevice(names[i])
		}
		all := intstr.FromString("100%")
		app := tb.newApp("blinky", blinky, names...)
		app.Spec.Strategy.MaxUpdating = &all
		app.Spec.TargetDevices = nil
		app.Spec.Selector = &metav1.LabelSelector{}
		// Wait for the controller's caches, then count.
		g.until(wait, func(ctx context.Context) (bool, string) { _, err := g.signingKey(ctx); return err == nil, "keys" })
		r0, w0, s0 := counter.reads.Load(), counter.writes.Load(), counterValue(statusWrites)
		cpu0 := processCPU()
		start := time.Now()
		tb.create(app)
		// First the controller alone: every device's artifact issued.
		devices := g.devices
		g.devices = nil
		var first time.Duration
		a0 := counterValue(artifactsIssued)
		g.until(5*time.Minute, func(context.Context) (bool, string) {
			// The controller's counter, not a list: polling must not load
			// the API server being measured.
			issued := int(counterValue(artifactsIssued) - a0)
			if issued > 0 && first == 0 {
				first = time.Since(start)
			}
			return issued == n, fmt.Sprintf("%d of %d artifacts issued", issued, n)
		})
		firstIssue += float64(first.Milliseconds())
		issue += float64(time.Since(start).Milliseconds())
		g.devices = devices
		g.until(5*time.Minute, tb.phaseIs("blinky", wasmbedv1.ApplicationPhaseRunning))
		elapsed += float64(time.Since(start).Milliseconds())
		cpu += (processCPU() - cpu0).Seconds()
		reads += float64(counter.reads.Load() - r0)
		writes += float64(counter.writes.Load() - w0)
		statusWritesN += counterValue(statusWrites) - s0
		tb.stop()
	}
	runs := float64(b.N)
	b.ReportMetric(reads/runs/float64(n), "reads/device")
	b.ReportMetric(writes/runs/float64(n), "writes/device")
	b.ReportMetric(statusWritesN/runs, "app-status-writes/rollout")
	b.ReportMetric(firstIssue/runs, "ms-to-first-artifact")
	b.ReportMetric(issue/runs, "ms-to-issue-all")
	b.ReportMetric(elapsed/runs, "ms/rollout")
	b.ReportMetric(cpu/runs/float64(n)*1000, "process-cpu-ms/device")
}

// processCPU returns the CPU time this process used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
