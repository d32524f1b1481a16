package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Rollout, signing and device counters, served with controller-runtime's
// own metrics. Labels are bounded: reasons and decisions come from fixed
// sets.
var (
	artifactsIssued = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wasmbed_controller_artifacts_issued_total",
		Help: "Per-device artifacts signed and written into DeviceApplications.",
	})
	rolloutsPaused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wasmbed_controller_rollouts_paused_total",
		Help: "Rollouts paused by their failure threshold.",
	})
	rolloutsResumed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wasmbed_controller_rollouts_resumed_total",
		Help: "Paused rollouts resumed by an operator.",
	})
	modulesRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wasmbed_controller_modules_refused_total",
		Help: "Application versions refused before delivery, by reason.",
	}, []string{"reason"})
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wasmbed_controller_application_status_writes_total",
		Help: "Application status writes.",
	})
	statusWritesDeferred = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "wasmbed_controller_application_status_writes_deferred_total",
		Help: "Application status changes deferred to coalesce writes.",
	})
	csrDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wasmbed_controller_certificate_requests_total",
		Help: "Certificate signing requests decided, by signer, decision and reason.",
	}, []string{"signer", "decision", "reason"})
	devicesUnreachable = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wasmbed_controller_devices_unreachable_total",
		Help: "Devices marked Unreachable, by reason.",
	}, []string{"reason"})
)

func init() {
	ctrlmetrics.Registry.MustRegister(artifactsIssued, rolloutsPaused, rolloutsResumed, modulesRefused,
		statusWrites, statusWritesDeferred, csrDecisions, devicesUnreachable)
}
