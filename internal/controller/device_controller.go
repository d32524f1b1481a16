package controller

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/devicestatus"
)

// freshDeviceGrace is how long a Device created without a status is left to
// its creator before the controller writes its conditions.
const freshDeviceGrace = 10 * time.Second

// DeviceReconciler keeps what the controller knows about a Device true: it
// marks a Connected device Unreachable when the gateway holding its session
// stopped renewing its Lease or the device was not heard from within the
// deadline, keeps the Enrolled, Connected and Ready conditions with Events
// on their transitions, and removes the DeviceApplications of deleted
// Devices.
type DeviceReconciler struct {
	client.Client
	Recorder events.EventRecorder
	// SystemNamespace holds the gateways' Leases.
	SystemNamespace string
	// UnreachableAfter is how long a Connected device may go without a
	// lastSeen refresh.
	UnreachableAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LeaseCheckInterval is how often gateway Leases are checked for
	// expiry.
	LeaseCheckInterval time.Duration

	expired chan event.TypedGenericEvent[*wasmbedv1.Device]
}

// +kubebuilder:rbac:groups=wasmbed.github.io,resources=devices,verbs=get;list;watch
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=devices/status,verbs=update;patch
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=deviceapplications,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=wasmbed-system,resources=leases,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *DeviceReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile implements reconcile.Reconciler.
func (r *DeviceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	dev := &wasmbedv1.Device{}
	if err := r.Get(ctx, req.NamespacedName, dev); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.releaseDeviceApplications(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	now := r.now()
	if wait := freshDeviceGrace - now.Sub(dev.CreationTimestamp.Time); dev.Status.Phase == "" && len(dev.Status.Conditions) == 0 && wait > 0 {
		// A gateway that creates a Device at enrollment writes its status
		// (with the conditions) a moment later; writing the conditions of
		// the empty status now would only race that write.
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	st := dev.Status.DeepCopy()
	var requeue time.Duration
	unreachable := ""
	if st.Phase == wasmbedv1.DevicePhaseConnected {
		reason, wait, err := r.staleness(ctx, dev, now)
		if err != nil {
			return ctrl.Result{}, err
		}
		unreachable, requeue = reason, wait
	}
	if unreachable != "" {
		st.Phase = wasmbedv1.DevicePhaseUnreachable
		devicesUnreachable.WithLabelValues(unreachable).Inc()
	}
	changed := devicestatus.Derive(dev, st, unreachable)
	if !statusEqual(&dev.Status, st) {
		patch := client.MergeFromWithOptions(dev.DeepCopy(), client.MergeFromWithOptimisticLock{})
		dev.Status = *st
		if err := r.Status().Patch(ctx, dev, patch); err != nil {
			// A conflict means a gateway wrote in between: decide again
			// on what it wrote.
			return ctrl.Result{}, err
		}
		devicestatus.Record(r.Recorder, dev, changed)
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

func statusEqual(a, b *wasmbedv1.DeviceStatus) bool {
	if a.Phase != b.Phase || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || x.ObservedGeneration != y.ObservedGeneration {
			return false
		}
	}
	return true
}

// staleness returns why a Connected device is unreachable ("" when it is
// not), or how long until it should be checked again.
func (r *DeviceReconciler) staleness(ctx context.Context, dev *wasmbedv1.Device, now time.Time) (string, time.Duration, error) {
	if dev.Status.Gateway != "" {
		lease := &coordinationv1.Lease{}
		err := r.Get(ctx, client.ObjectKey{Namespace: r.SystemNamespace, Name: dev.Status.Gateway}, lease)
		switch {
		case apierrors.IsNotFound(err):
			return wasmbedv1.ReasonGatewayLost, 0, nil
		case err != nil:
			return "", 0, err
		case leaseExpired(lease, now):
			return wasmbedv1.ReasonGatewayLost, 0, nil
		}
	}
	var seen time.Time
	switch {
	case dev.Status.LastSeen != nil:
		seen = dev.Status.LastSeen.Time
	case dev.Status.ConnectedSince != nil:
		seen = dev.Status.ConnectedSince.Time
	default:
		return "", r.UnreachableAfter, nil
	}
	left := seen.Add(r.UnreachableAfter).Sub(now)
	if left <= 0 {
		return wasmbedv1.ReasonHeartbeatMissed, 0, nil
	}
	return "", left + time.Second, nil
}

// leaseExpired reports whether a Lease was not renewed within its duration.
func leaseExpired(l *coordinationv1.Lease, now time.Time) bool {
	renew := l.Spec.RenewTime
	if renew == nil {
		renew = l.Spec.AcquireTime
	}
	if renew == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return now.After(renew.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// releaseDeviceApplications removes the DeviceApplications of a deleted
// Device: no gateway will confirm their removal.
func (r *DeviceReconciler) releaseDeviceApplications(ctx context.Context, key types.NamespacedName) error {
	list := &wasmbedv1.DeviceApplicationList{}
	if err := r.List(ctx, list, client.InNamespace(key.Namespace), client.MatchingFields{indexDAppDevice: key.Name}); err != nil {
		return err
	}
	jobs := make([]func(context.Context) error, 0, len(list.Items))
	for i := range list.Items {
		da := &list.Items[i]
		jobs = append(jobs, func(ctx context.Context) error {
			if err := releaseDeviceApplication(ctx, r.Client, da); err != nil {
				return err
			}
			if err := r.Delete(ctx, da); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete deviceapplication %s: %w", da.Name, err)
			}
			return nil
		})
	}
	return parallel(ctx, 8, jobs)
}

// SetupWithManager registers the reconciler: Devices (lastSeen refreshes
// filtered out), and, through a LeaseWatcher, the devices of gateways whose
// Lease expired.
func (r *DeviceReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	r.expired = make(chan event.TypedGenericEvent[*wasmbedv1.Device], 1024)
	interval := r.LeaseCheckInterval
	if interval <= 0 {
		interval = time.Second
	}
	if err := mgr.Add(&leaseWatcher{client: mgr.GetClient(), namespace: r.SystemNamespace, interval: interval, now: r.now, out: r.expired}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("device").
		WithOptions(opts).
		For(&wasmbedv1.Device{}, builder.WithPredicates(deviceStatusChanged{})).
		WatchesRawSource(source.Channel(r.expired, &handler.TypedEnqueueRequestForObject[*wasmbedv1.Device]{})).
		Complete(r)
}

// deviceStatusChanged passes Device events other than lastSeen refreshes.
type deviceStatusChanged struct{ predicate.Funcs }

func (deviceStatusChanged) Create(event.CreateEvent) bool { return true }
func (deviceStatusChanged) Delete(event.DeleteEvent) bool { return true }

func (deviceStatusChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*wasmbedv1.Device)
	n, ok2 := e.ObjectNew.(*wasmbedv1.Device)
	if !ok1 || !ok2 {
		return true
	}
	a, b := o.Status, n.Status
	return o.Generation != n.Generation || a.Phase != b.Phase || a.Gateway != b.Gateway ||
		!a.CertificateNotAfter.Equal(b.CertificateNotAfter) || !a.ConnectedSince.Equal(b.ConnectedSince) || !statusEqual(&a, &b)
}

// leaseWatcher checks the gateways' Leases and, when one expires or goes,
// enqueues the devices whose session that gateway held. Devices are looked up
// only on such a transition, through the status.gateway index; at start the
// device reconciler checks every Connected device's Lease itself.
type leaseWatcher struct {
	client    client.Client
	namespace string
	interval  time.Duration
	now       func() time.Time
	out       chan<- event.TypedGenericEvent[*wasmbedv1.Device]

	live map[string]bool // by Lease name, as of the last check
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (w *leaseWatcher) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable.
func (w *leaseWatcher) Start(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (w *leaseWatcher) check(ctx context.Context) {
	logger := log.FromContext(ctx).WithName("lease-watcher")
	leases := &coordinationv1.LeaseList{}
	if err := w.client.List(ctx, leases, client.InNamespace(w.namespace), client.MatchingLabels{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway}); err != nil {
		logger.Error(err, "list gateway leases")
		return
	}
	now := w.now()
	live := make(map[string]bool, len(leases.Items))
	for i := range leases.Items {
		live[leases.Items[i].Name] = !leaseExpired(&leases.Items[i], now)
	}
	prev := w.live
	w.live = live
	for gw, was := range prev {
		if !was || live[gw] {
			continue
		}
		devices := &wasmbedv1.DeviceList{}
		if err := w.client.List(ctx, devices, client.MatchingFields{indexDeviceGateway: gw}); err != nil {
			logger.Error(err, "list devices of gateway", "gateway", gw)
			w.live[gw] = true // try again at the next check
			continue
		}
		logger.Info("gateway lease expired", "gateway", gw, "devices", len(devices.Items))
		for i := range devices.Items {
			select {
			case w.out <- event.TypedGenericEvent[*wasmbedv1.Device]{Object: &devices.Items[i]}:
			case <-ctx.Done():
				return
			}
		}
	}
}
