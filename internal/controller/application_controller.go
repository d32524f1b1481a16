package controller

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/modcheck"
	"github.com/wasmbed/wasmbed/internal/rollout"
	"github.com/wasmbed/wasmbed/internal/seal"
)

// annotationExpires records, on a DeviceApplication, when its artifact
// expires (Unix seconds), so it is issued again before a device that was
// away refuses it.
const annotationExpires = "wasmbed.github.io/expires"

// Field indexes of the manager's cache.
const (
	indexDAppApplication = "spec.application"
	indexDAppDevice      = "spec.device"
	indexDeviceGateway   = "status.gateway"
)

// Admitter decides whether a module may go to boards (modcheck.Sandbox).
type Admitter interface {
	Check(ctx context.Context, req modcheck.Request) (modcheck.Verdict, error)
}

// ApplicationReconciler rolls Applications out: it resolves targets, checks
// the module, issues one DeviceApplication per (Application, Device) pair
// with the device's signed artifact, advances the rollout within its
// strategy, and aggregates what gateways report into the Application's
// status.
type ApplicationReconciler struct {
	client.Client
	// APIReader reads what the cache does not hold (payload ConfigMaps).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Keys      *Keys
	Admission Admitter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ArtifactLifetime is how long an issued artifact stays installable.
	ArtifactLifetime time.Duration
	// StatusInterval is the shortest time between two status writes of
	// one Application that only change counts.
	StatusInterval time.Duration
	// Parallelism bounds the concurrent DeviceApplication writes of one
	// reconcile.
	Parallelism int
	// MaxConcurrentReconciles is the number of Applications reconciled at
	// once.
	MaxConcurrentReconciles int

	mu        sync.Mutex
	versions  map[types.NamespacedName]versionEntry
	lastWrite map[types.NamespacedName]time.Time
	expects   map[types.NamespacedName]map[string]expectation
	payloads  sync.Map // namespace/name of payload ConfigMaps known to exist
}

type expectation struct {
	seq int64
	at  time.Time
}

type versionEntry struct {
	uid        types.UID
	generation int64
	v          *version
	refused    *refusal
}

// +kubebuilder:rbac:groups=wasmbed.github.io,resources=applications,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=applications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=applications/finalizers,verbs=update
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=deviceapplications,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=wasmbed.github.io,resources=devices,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=list;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

func (r *ApplicationReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Reconcile implements reconcile.Reconciler.
func (r *ApplicationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	app := &wasmbedv1.Application{}
	if err := r.Get(ctx, req.NamespacedName, app); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !app.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, app)
	}
	if !controllerutil.ContainsFinalizer(app, wasmbedv1.FinalizerApplicationRemoval) {
		controllerutil.AddFinalizer(app, wasmbedv1.FinalizerApplicationRemoval)
		if err := r.Update(ctx, app); err != nil {
			return ctrl.Result{}, err
		}
	}
	v, refused, err := r.version(ctx, app)
	if err != nil {
		return ctrl.Result{}, err
	}
	if refused != nil {
		return r.refuse(ctx, app, refused)
	}
	return r.roll(ctx, app, v)
}

// version returns the prepared version of app's current generation.
func (r *ApplicationReconciler) version(ctx context.Context, app *wasmbedv1.Application) (*version, *refusal, error) {
	key := client.ObjectKeyFromObject(app)
	r.mu.Lock()
	e, ok := r.versions[key]
	r.mu.Unlock()
	if ok && e.uid == app.UID && e.generation == app.Generation {
		return e.v, e.refused, nil
	}
	v, err := r.prepare(ctx, app)
	var ref *refusal
	if errors.As(err, &ref) {
		v, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	if r.versions == nil {
		r.versions = map[types.NamespacedName]versionEntry{}
	}
	r.versions[key] = versionEntry{uid: app.UID, generation: app.Generation, v: v, refused: ref}
	r.mu.Unlock()
	if ref != nil {
		modulesRefused.WithLabelValues(ref.reason).Inc()
	}
	return v, ref, nil
}

func (r *ApplicationReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.lastWrite, key)
	delete(r.versions, key)
	delete(r.expects, key)
}

// refuse records a spec that cannot be rolled out. Nothing is delivered;
// the DeviceApplications keep what they carry. The error is terminal.
func (r *ApplicationReconciler) refuse(ctx context.Context, app *wasmbedv1.Application, ref *refusal) (ctrl.Result, error) {
	st := app.Status.DeepCopy()
	s := rollout.Refused(ref.reason, ref.message)
	st.Phase = s.Phase
	st.ObservedGeneration = app.Generation
	for _, c := range s.Conditions {
		c.ObservedGeneration = app.Generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	if !equality.Semantic.DeepEqual(*st, app.Status) {
		r.Recorder.Eventf(app, nil, corev1.EventTypeWarning, ref.reason, "Admit", "%s", ref.message)
		if err := r.writeStatus(ctx, app, st); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, reconcile.TerminalError(ref)
}

// candidate is a named or selected device and why it is not targeted.
type candidate struct {
	name    string
	device  *wasmbedv1.Device // nil when missing
	reason  string            // "" when targeted
	message string
	sealKey *ecdh.PublicKey
}

// resolve returns the named and selected devices, sorted by name, each with
// the reason it is not targeted, if any.
func (r *ApplicationReconciler) resolve(ctx context.Context, app *wasmbedv1.Application, v *version) ([]candidate, error) {
	byName := map[string]*wasmbedv1.Device{}
	named := map[string]bool{}
	for _, n := range app.Spec.TargetDevices {
		named[n] = true
		d := &wasmbedv1.Device{}
		switch err := r.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: n}, d); {
		case err == nil:
			byName[n] = d
		case apierrors.IsNotFound(err):
			byName[n] = nil
		default:
			return nil, err
		}
	}
	if app.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(app.Spec.Selector)
		if err != nil {
			return nil, &refusal{wasmbedv1.ReasonInvalidModule, "selector: " + err.Error()}
		}
		list := &wasmbedv1.DeviceList{}
		if err := r.List(ctx, list, client.InNamespace(app.Namespace), client.MatchingLabelsSelector{Selector: sel}, client.UnsafeDisableDeepCopy); err != nil {
			return nil, err
		}
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
	}
	out := make([]candidate, 0, len(byName))
	for name, d := range byName {
		c := candidate{name: name, device: d}
		c.reason, c.message, c.sealKey = r.eligible(app, v, d)
		if d == nil && !named[name] {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// eligible says why d is not a target of app, or returns an empty reason and
// the device's sealing key (confidential applications).
func (r *ApplicationReconciler) eligible(app *wasmbedv1.Application, v *version, d *wasmbedv1.Device) (reason, message string, key *ecdh.PublicKey) {
	if d == nil {
		return wasmbedv1.ReasonDeviceMissing, "no such device", nil
	}
	if d.Spec.Revoked {
		return wasmbedv1.ReasonDeviceRevoked, "the device is revoked", nil
	}
	if len(app.Spec.DeviceTypes) > 0 && !slices.Contains(app.Spec.DeviceTypes, d.Spec.DeviceType) {
		return wasmbedv1.ReasonWrongDeviceType, fmt.Sprintf("device type %s is not among %v", d.Spec.DeviceType, app.Spec.DeviceTypes), nil
	}
	caps := d.Spec.Capabilities
	if len(caps) == 0 {
		caps = []wasmbedv1.Capability{"wasm", "tls"}
	}
	for _, want := range append([]wasmbedv1.Capability{"wasm"}, app.Spec.RequiredCapabilities...) {
		if !slices.Contains(caps, want) {
			return wasmbedv1.ReasonMissingCapability, fmt.Sprintf("the device lacks capability %s", want), nil
		}
	}
	if ref, ok := v.verdict.Profiles[string(d.Spec.DeviceType)]; !ok || ref != nil {
		msg := "no verdict for device type " + string(d.Spec.DeviceType)
		if ref != nil {
			msg = ref.Message
		}
		return wasmbedv1.ReasonDoesNotFit, msg, nil
	}
	if v.sealed == nil {
		return "", "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(d.Spec.SealingKey)
	if d.Spec.SealingKey == "" || err != nil {
		return wasmbedv1.ReasonNoSealingKey, "a confidential application needs the device's sealing key", nil
	}
	key, err = seal.ParsePublicKey(raw)
	if err != nil {
		return wasmbedv1.ReasonNoSealingKey, "the device's sealing key is unusable: " + err.Error(), nil
	}
	return "", "", key
}

// deviceApplications returns app's DeviceApplications by device name.
func (r *ApplicationReconciler) deviceApplications(ctx context.Context, app *wasmbedv1.Application) (map[string]*wasmbedv1.DeviceApplication, error) {
	list := &wasmbedv1.DeviceApplicationList{}
	// The objects are read-only here (changes go to copies), so the cache
	// hands them out without copying: at 10,000 devices a copy per
	// reconcile would dominate its cost.
	if err := r.List(ctx, list, client.InNamespace(app.Namespace), client.MatchingFields{indexDAppApplication: app.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make(map[string]*wasmbedv1.DeviceApplication, len(list.Items))
	for i := range list.Items {
		da := &list.Items[i]
		if metav1.IsControlledBy(da, app) {
			out[da.Spec.Device] = da
		}
	}
	return out, nil
}

// roll advances app's rollout of version v by one step.
func (r *ApplicationReconciler) roll(ctx context.Context, app *wasmbedv1.Application, v *version) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	now := r.now()
	cands, err := r.resolve(ctx, app, v)
	var ref *refusal
	if errors.As(err, &ref) {
		return r.refuse(ctx, app, ref)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	dapps, err := r.deviceApplications(ctx, app)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !r.caughtUp(client.ObjectKeyFromObject(app), dapps, now) {
		// Acting on a cache that has not seen this controller's own
		// writes could give a device its artifact twice or exceed
		// maxUpdating.
		return ctrl.Result{RequeueAfter: staleRequeue}, nil
	}

	st := app.Status.DeepCopy()
	ro := wasmbedv1.RolloutStatus{}
	if st.Rollout != nil {
		ro = *st.Rollout.DeepCopy()
	}
	newRevision := ro.Current == nil || ro.Current.Revision != v.record.Revision
	if newRevision {
		prev := ro.Current
		ro = wasmbedv1.RolloutStatus{Current: v.record.DeepCopy(), Previous: ro.Previous}
		if prev != nil {
			ro.Previous = prev
		}
		r.Recorder.Eventf(app, nil, corev1.EventTypeNormal, "RolloutStarted", "Roll", "rolling out %s (revision %s)", v.label, v.record.Revision)
	}
	if err := r.ensurePayload(ctx, app, v); err != nil {
		return ctrl.Result{}, err
	}

	// Targets, untargeted devices, and DeviceApplications to remove.
	var (
		targets    []rollout.Target
		sealKeys   = map[string]*ecdh.PublicKey{}
		devices    = map[string]*wasmbedv1.Device{}
		untargeted []wasmbedv1.UntargetedDevice
		reasons    = map[string]int32{}
		removals   []*wasmbedv1.DeviceApplication
		held       []*wasmbedv1.DeviceApplication
		seen       = map[string]bool{}
	)
	refreshAt := time.Time{}
	for _, c := range cands {
		seen[c.name] = true
		da := dapps[c.name]
		if c.reason == "" {
			// An artifact the device has not installed and that expires
			// soon counts as not delivered: it is issued again rather than
			// refused by the device as expired.
			if exp, ok := expiresAt(da); ok && rollout.Classify(da, v.record.Revision) != rollout.Completed {
				refresh := exp.Add(-r.ArtifactLifetime / 4)
				if !now.Before(refresh) {
					da = da.DeepCopy()
					delete(da.Annotations, wasmbedv1.AnnotationRevision)
				} else if refreshAt.IsZero() || refresh.Before(refreshAt) {
					refreshAt = refresh
				}
			}
			targets = append(targets, rollout.Target{Device: c.name, Online: c.device.Status.Phase == wasmbedv1.DevicePhaseConnected, App: da})
			sealKeys[c.name], devices[c.name] = c.sealKey, c.device
			continue
		}
		reasons[c.reason]++
		if len(untargeted) < wasmbedv1.MaxUntargetedDevices {
			untargeted = append(untargeted, wasmbedv1.UntargetedDevice{Device: c.name, Reason: c.reason, Message: truncate(c.message, 1024)})
		}
		switch {
		case da == nil:
		case c.reason == wasmbedv1.ReasonDoesNotFit:
			// A device that cannot take the new version keeps the one it has.
			held = append(held, da)
		default:
			removals = append(removals, da)
		}
	}
	for name, da := range dapps {
		if !seen[name] {
			removals = append(removals, da)
		}
	}

	strategy, err := rollout.ResolveStrategy(app.Spec.Strategy, len(targets))
	if err != nil {
		return r.refuse(ctx, app, &refusal{wasmbedv1.ReasonInvalidModule, err.Error()})
	}
	var resume time.Time
	if s := app.Annotations[wasmbedv1.AnnotationResume]; s != "" {
		if resume, err = time.Parse(time.RFC3339, s); err != nil {
			r.Recorder.Eventf(app, nil, corev1.EventTypeWarning, "BadResumeAnnotation", "Resume", "annotation %s=%q is not an RFC 3339 time", wasmbedv1.AnnotationResume, s)
		}
	}
	plan := rollout.Plan(rollout.Input{Revision: v.record.Revision, Strategy: strategy, Rollout: ro, ResumeRequest: resume, Now: now, Targets: targets})
	if len(plan.Assign) > 0 || plan.Paused || plan.Resumed {
		// Decisions that send a version further, or pause or resume it,
		// rest on the stored rollout status: make sure the cache's copy
		// is the latest.
		fresh := &wasmbedv1.Application{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(app), fresh); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		if fresh.ResourceVersion != app.ResourceVersion {
			return ctrl.Result{RequeueAfter: staleRequeue}, nil
		}
	}
	if plan.Paused {
		rolloutsPaused.Inc()
		r.Recorder.Eventf(app, nil, corev1.EventTypeWarning, wasmbedv1.ReasonRolloutPaused, "Roll",
			"rollout of %s paused: it failed on %d of the %d devices it was delivered to (threshold %d%%)", v.label, plan.Counts.FailedCurrent, plan.Counts.Delivered(), strategy.FailureThreshold)
	}
	if plan.Resumed {
		rolloutsResumed.Inc()
		r.Recorder.Eventf(app, nil, corev1.EventTypeNormal, wasmbedv1.ReasonRolloutResumed, "Roll", "rollout of %s resumed", v.label)
	}

	// Write the DeviceApplications.
	assign := map[string]bool{}
	for _, d := range plan.Assign {
		assign[d] = true
	}
	var jobs []func(context.Context) error
	issued := 0
	for _, t := range targets {
		da, dev := t.App, devices[t.Device]
		switch {
		case assign[t.Device]:
			issued++
			jobs = append(jobs, func(ctx context.Context) error {
				seq, err := r.issue(ctx, app, v, dev, da, sealKeys[t.Device], now)
				if err == nil {
					r.expect(client.ObjectKeyFromObject(app), dev.Name, seq, now)
				}
				return err
			})
		case da == nil:
			jobs = append(jobs, func(ctx context.Context) error { return r.createEmpty(ctx, app, dev) })
		case da.Spec.State != app.Spec.State:
			jobs = append(jobs, func(ctx context.Context) error { return r.setState(ctx, da, app.Spec.State) })
		}
	}
	for _, da := range held {
		if da.Spec.State != app.Spec.State {
			jobs = append(jobs, func(ctx context.Context) error { return r.setState(ctx, da, app.Spec.State) })
		}
	}
	for _, da := range removals {
		jobs = append(jobs, func(ctx context.Context) error { return r.remove(ctx, da) })
	}
	if err := parallel(ctx, r.Parallelism, jobs); err != nil {
		if onlyStale(err) {
			// The cache lags behind a write of a previous reconcile:
			// optimistic concurrency refused a duplicate. Try again
			// once the cache has caught up.
			logger.V(1).Info("stale cache, requeue", "err", err)
			return ctrl.Result{RequeueAfter: staleRequeue}, nil
		}
		return ctrl.Result{}, err
	}
	artifactsIssued.Add(float64(issued))

	// Status.
	summary := rollout.Summarize(app.Spec.State, plan.Counts, issued, plan.Rollout.Paused)
	c := plan.Counts
	st.Phase = summary.Phase
	st.TargetCount = int32(c.Targets)    //nolint:gosec // bounded
	st.UpdatedCount = int32(c.Completed) //nolint:gosec // bounded
	st.RunningCount = int32(c.Running)   //nolint:gosec // bounded
	st.FailedCount = int32(c.Failing)    //nolint:gosec // bounded
	st.FailingDevices = plan.Failing
	st.UntargetedCount = int32(len(cands) - len(targets)) //nolint:gosec // bounded
	st.UntargetedDevices = untargeted
	st.UntargetedReasons = reasonCounts(reasons)
	st.Rollout = &plan.Rollout
	st.ObservedGeneration = app.Generation
	if issued > 0 {
		st.LastDeployed = &metav1.Time{Time: now}
	}
	for _, cond := range summary.Conditions {
		cond.ObservedGeneration = app.Generation
		meta.SetStatusCondition(&st.Conditions, cond)
	}
	r.untargetedEvents(app, st)
	completed := meta.IsStatusConditionTrue(app.Status.Conditions, wasmbedv1.ConditionProgressing) &&
		meta.IsStatusConditionFalse(st.Conditions, wasmbedv1.ConditionProgressing) && !plan.Rollout.Paused
	if completed {
		r.Recorder.Eventf(app, nil, corev1.EventTypeNormal, wasmbedv1.ReasonRolloutComplete, "Roll", "%s delivered to all %d targets", v.label, c.Targets)
	}
	if newRevision || completed {
		keep := map[string]bool{v.record.Payload: true}
		if ro.Previous != nil {
			keep[ro.Previous.Payload] = true
		}
		for _, da := range dapps {
			if da.Spec.Artifact != nil {
				keep[da.Spec.Artifact.Payload.ConfigMap] = true
			}
		}
		if err := r.collectPayloads(ctx, app, keep); err != nil {
			logger.Error(err, "collect payload configmaps")
		}
	}
	urgent := newRevision || plan.Paused || plan.Resumed || app.Status.Phase != st.Phase || app.Status.ObservedGeneration != st.ObservedGeneration
	res, err := r.updateStatus(ctx, app, st, urgent)
	if err == nil && !refreshAt.IsZero() {
		if wait := refreshAt.Sub(now); res.RequeueAfter == 0 || wait < res.RequeueAfter {
			res.RequeueAfter = max(wait, time.Second)
		}
	}
	return res, err
}

// expiresAt returns when the artifact of da stops being installable, as
// recorded at issue.
func expiresAt(da *wasmbedv1.DeviceApplication) (time.Time, bool) {
	if da == nil {
		return time.Time{}, false
	}
	s, ok := da.Annotations[annotationExpires]
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// updateStatus writes st when it differs from the stored status. Writes
// that only change counts are coalesced: at most one per StatusInterval per
// Application, the rest requeued, so a rollout to 10,000 devices does not
// mean 10,000 writes of the Application.
func (r *ApplicationReconciler) updateStatus(ctx context.Context, app *wasmbedv1.Application, st *wasmbedv1.ApplicationStatus, urgent bool) (ctrl.Result, error) {
	if equality.Semantic.DeepEqual(*st, app.Status) {
		return ctrl.Result{}, nil
	}
	key := client.ObjectKeyFromObject(app)
	if !urgent && r.StatusInterval > 0 {
		r.mu.Lock()
		last := r.lastWrite[key]
		r.mu.Unlock()
		if wait := r.StatusInterval - r.now().Sub(last); wait > 0 {
			statusWritesDeferred.Inc()
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}
	if err := r.writeStatus(ctx, app, st); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

func (r *ApplicationReconciler) writeStatus(ctx context.Context, app *wasmbedv1.Application, st *wasmbedv1.ApplicationStatus) error {
	patch := client.MergeFromWithOptions(app.DeepCopy(), client.MergeFromWithOptimisticLock{})
	app.Status = *st
	if err := r.Status().Patch(ctx, app, patch); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	statusWrites.Inc()
	r.mu.Lock()
	if r.lastWrite == nil {
		r.lastWrite = map[types.NamespacedName]time.Time{}
	}
	r.lastWrite[client.ObjectKeyFromObject(app)] = r.now()
	r.mu.Unlock()
	return nil
}

// untargetedEvents emits one Event per reason whose count changed.
func (r *ApplicationReconciler) untargetedEvents(app *wasmbedv1.Application, st *wasmbedv1.ApplicationStatus) {
	before := map[string]int32{}
	for _, rc := range app.Status.UntargetedReasons {
		before[rc.Reason] = rc.Count
	}
	for _, rc := range st.UntargetedReasons {
		if before[rc.Reason] == rc.Count {
			continue
		}
		var names []string
		for _, u := range st.UntargetedDevices {
			if u.Reason == rc.Reason {
				names = append(names, u.Device)
			}
		}
		r.Recorder.Eventf(app, nil, corev1.EventTypeWarning, rc.Reason, "Target", "%d devices not targeted (%s), e.g. %s", rc.Count, rc.Reason, strings.Join(names, ", "))
	}
}

func reasonCounts(m map[string]int32) []wasmbedv1.ReasonCount {
	out := make([]wasmbedv1.ReasonCount, 0, len(m))
	for reason, n := range m {
		out = append(out, wasmbedv1.ReasonCount{Reason: reason, Count: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reason < out[j].Reason })
	if len(out) == 0 {
		return nil
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// newDeviceApplication returns the DeviceApplication of (app, dev) with no
// artifact.
func (r *ApplicationReconciler) newDeviceApplication(app *wasmbedv1.Application, dev *wasmbedv1.Device) (*wasmbedv1.DeviceApplication, error) {
	da := &wasmbedv1.DeviceApplication{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: app.Namespace,
			Name:      wasmbedv1.DeviceApplicationName(app.Name, dev.Name),
			Labels: map[string]string{
				wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app.Name),
				wasmbedv1.LabelDevice:      wasmbedv1.LabelValue(dev.Name),
			},
			Finalizers: []string{wasmbedv1.FinalizerDeviceRemoval},
		},
		Spec: wasmbedv1.DeviceApplicationSpec{Device: dev.Name, Application: app.Name, AppName: app.Spec.Name, State: app.Spec.State},
	}
	if err := controllerutil.SetControllerReference(app, da, r.Scheme); err != nil {
		return nil, err
	}
	return da, nil
}

func (r *ApplicationReconciler) createEmpty(ctx context.Context, app *wasmbedv1.Application, dev *wasmbedv1.Device) error {
	da, err := r.newDeviceApplication(app, dev)
	if err != nil {
		return err
	}
	if err := r.Create(ctx, da); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create deviceapplication %s: %w", da.Name, err)
	}
	return nil
}

// issue signs v's artifact for dev and writes it into dev's
// DeviceApplication, creating it when absent.
// It returns the artifact's sequence.
func (r *ApplicationReconciler) issue(ctx context.Context, app *wasmbedv1.Application, v *version, dev *wasmbedv1.Device, da *wasmbedv1.DeviceApplication, sealKey *ecdh.PublicKey, now time.Time) (int64, error) {
	signer, err := r.Keys.Signer(ctx)
	if err != nil {
		return 0, fmt.Errorf("signing key: %w", err)
	}
	out, err := r.withArtifact(signer, app, v, dev, da, sealKey, now)
	if err != nil {
		return 0, err
	}
	if da == nil {
		if err := r.Create(ctx, out); err != nil {
			return 0, fmt.Errorf("create deviceapplication %s: %w", out.Name, err)
		}
		return out.Spec.Artifact.Sequence, nil
	}
	if err := r.Update(ctx, out); err != nil {
		return 0, fmt.Errorf("update deviceapplication %s: %w", out.Name, err)
	}
	return out.Spec.Artifact.Sequence, nil
}

// expectationTimeout is how long the controller waits for its cache to show
// a write before it acts without it (the write may have been undone since).
const expectationTimeout = 30 * time.Second

// expect records that the DeviceApplication of device now carries an
// artifact of at least sequence seq.
func (r *ApplicationReconciler) expect(app types.NamespacedName, device string, seq int64, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.expects == nil {
		r.expects = map[types.NamespacedName]map[string]expectation{}
	}
	if r.expects[app] == nil {
		r.expects[app] = map[string]expectation{}
	}
	r.expects[app][device] = expectation{seq: seq, at: now}
}

// caughtUp reports whether the cache shows every artifact this controller
// wrote for app, dropping the expectations it meets.
func (r *ApplicationReconciler) caughtUp(app types.NamespacedName, dapps map[string]*wasmbedv1.DeviceApplication, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := true
	for dev, e := range r.expects[app] {
		da := dapps[dev]
		switch {
		case da != nil && da.Spec.Artifact != nil && da.Spec.Artifact.Sequence >= e.seq, now.Sub(e.at) > expectationTimeout:
			delete(r.expects[app], dev)
		default:
			ok = false
		}
	}
	return ok
}

// withArtifact returns dev's DeviceApplication (a copy of da, or a new one
// when da is nil) carrying v's artifact signed for dev. The sequence is
// above every sequence da records, and above the time term of
// artifact.NextSequence.
func (r *ApplicationReconciler) withArtifact(signer *artifact.Signer, app *wasmbedv1.Application, v *version, dev *wasmbedv1.Device, da *wasmbedv1.DeviceApplication, sealKey *ecdh.PublicKey, now time.Time) (*wasmbedv1.DeviceApplication, error) {
	var last int64
	if da == nil {
		var err error
		if da, err = r.newDeviceApplication(app, dev); err != nil {
			return nil, err
		}
	} else {
		da = da.DeepCopy()
		if a := da.Spec.Artifact; a != nil {
			last = a.Sequence
		}
		last = max(last, da.Status.Sequence, da.Status.AttemptedSequence)
	}
	seq := artifact.NextSequence(uint64(last), now) //nolint:gosec // sequences are positive
	iss, err := signer.Issue(artifact.Manifest{
		App: app.Spec.Name, Version: v.label, Limits: v.limits, DeviceID: dev.Spec.DeviceID,
		Sequence: seq, IssuedAt: now, Expires: now.Add(r.ArtifactLifetime),
	}, v.content, sealKey)
	if err != nil {
		return nil, fmt.Errorf("issue artifact for %s: %w", dev.Name, err)
	}
	mh := v.content.ModuleHash()
	if da.Annotations == nil {
		da.Annotations = map[string]string{}
	}
	da.Annotations[wasmbedv1.AnnotationRevision] = v.record.Revision
	da.Annotations[annotationExpires] = strconv.FormatInt(iss.Manifest.Expires.Unix(), 10)
	da.Spec.AppName, da.Spec.Version, da.Spec.ApplicationGeneration, da.Spec.State = app.Spec.Name, v.label, app.Generation, app.Spec.State
	da.Spec.Artifact = &wasmbedv1.DeviceArtifact{
		Manifest: iss.ManifestBytes, Signature: iss.Signature, KeyMaterial: iss.KeyMaterial,
		Sequence: int64(seq), ModuleHash: hex.EncodeToString(mh[:]), //nolint:gosec // below 2^63 for millennia
		Payload: wasmbedv1.PayloadReference{ConfigMap: v.record.Payload, SHA256: v.sha256, Size: int64(v.content.PayloadSize())},
	}
	return da, nil
}

func (r *ApplicationReconciler) setState(ctx context.Context, da *wasmbedv1.DeviceApplication, state wasmbedv1.RunState) error {
	patch := client.MergeFrom(da.DeepCopy())
	da = da.DeepCopy()
	da.Spec.State = state
	if err := r.Patch(ctx, da, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("set state of deviceapplication %s: %w", da.Name, err)
	}
	return nil
}

// remove deletes a DeviceApplication; the gateway removes its finalizer once
// the device confirms. When the Device is gone or revoked no one will, so
// the finalizer is removed here.
func (r *ApplicationReconciler) remove(ctx context.Context, da *wasmbedv1.DeviceApplication) error {
	if da.DeletionTimestamp.IsZero() {
		if err := r.Delete(ctx, da); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete deviceapplication %s: %w", da.Name, err)
		}
	}
	dev := &wasmbedv1.Device{}
	err := r.Get(ctx, client.ObjectKey{Namespace: da.Namespace, Name: da.Spec.Device}, dev)
	switch {
	case apierrors.IsNotFound(err), err == nil && dev.Spec.Revoked:
		return releaseDeviceApplication(ctx, r.Client, da)
	case err != nil:
		return err
	}
	return nil
}

// releaseDeviceApplication removes the device-removal finalizer.
func releaseDeviceApplication(ctx context.Context, c client.Client, da *wasmbedv1.DeviceApplication) error {
	if !controllerutil.ContainsFinalizer(da, wasmbedv1.FinalizerDeviceRemoval) {
		return nil
	}
	patch := client.MergeFromWithOptions(da.DeepCopy(), client.MergeFromWithOptimisticLock{})
	da = da.DeepCopy()
	controllerutil.RemoveFinalizer(da, wasmbedv1.FinalizerDeviceRemoval)
	if err := c.Patch(ctx, da, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release deviceapplication %s: %w", da.Name, err)
	}
	return nil
}

// finalize removes app from every device before the Application goes:
// each DeviceApplication is deleted and waits for its device's
// confirmation (an offline device gets the removal when it returns); those
// of deleted or revoked Devices are released at once.
func (r *ApplicationReconciler) finalize(ctx context.Context, app *wasmbedv1.Application) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(app, wasmbedv1.FinalizerApplicationRemoval) {
		return ctrl.Result{}, nil
	}
	dapps, err := r.deviceApplications(ctx, app)
	if err != nil {
		return ctrl.Result{}, err
	}
	jobs := make([]func(context.Context) error, 0, len(dapps))
	for _, da := range dapps {
		jobs = append(jobs, func(ctx context.Context) error { return r.remove(ctx, da) })
	}
	if err := parallel(ctx, r.Parallelism, jobs); err != nil {
		return ctrl.Result{}, err
	}
	if len(dapps) > 0 {
		st := app.Status.DeepCopy()
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: wasmbedv1.ConditionReady, Status: metav1.ConditionFalse, Reason: wasmbedv1.ReasonRemoving, ObservedGeneration: app.Generation,
			Message: fmt.Sprintf("waiting for %d devices to confirm the removal", len(dapps)),
		})
		return r.updateStatus(ctx, app, st, false)
	}
	patch := client.MergeFromWithOptions(app.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(app, wasmbedv1.FinalizerApplicationRemoval)
	if err := r.Patch(ctx, app, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	r.forget(client.ObjectKeyFromObject(app))
	return ctrl.Result{}, nil
}

// staleRequeue is how soon a reconcile that met a stale cache runs again.
const staleRequeue = 200 * time.Millisecond

// onlyStale reports whether every error joined in err is a conflict or an
// already-existing object.
func onlyStale(err error) bool {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // walking a join
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		if !apierrors.IsConflict(e) && !apierrors.IsAlreadyExists(e) {
			return false
		}
	}
	return len(errs) > 0
}

// parallel runs jobs with at most n at once and returns their errors joined.
func parallel(ctx context.Context, n int, jobs []func(context.Context) error) error {
	if n <= 0 {
		n = 1
	}
	sem := make(chan struct{}, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := job(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// SetupWithManager registers the reconciler and its watches: Applications,
// their DeviceApplications, and the Devices they name or select.
func (r *ApplicationReconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if r.MaxConcurrentReconciles > 0 {
		opts.MaxConcurrentReconciles = r.MaxConcurrentReconciles
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("application").
		WithOptions(opts).
		For(&wasmbedv1.Application{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{},
			deletingPredicate{}))).
		Owns(&wasmbedv1.DeviceApplication{}).
		Watches(&wasmbedv1.Device{}, handler.EnqueueRequestsFromMapFunc(r.applicationsOfDevice), builder.WithPredicates(deviceTargetingChanged{})).
		Complete(r)
}

// deletingPredicate passes updates that start an object's deletion or change
// its finalizers.
type deletingPredicate struct{ predicate.Funcs }

func (deletingPredicate) Update(e event.UpdateEvent) bool {
	return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
		!slices.Equal(e.ObjectOld.GetFinalizers(), e.ObjectNew.GetFinalizers())
}

// deviceTargetingChanged passes Device events that can change an
// Application's targets or rollout: creation, deletion, labels, spec, and the
// phase (online or not). Refreshes of lastSeen do not pass.
type deviceTargetingChanged struct{ predicate.Funcs }

func (deviceTargetingChanged) Create(event.CreateEvent) bool { return true }
func (deviceTargetingChanged) Delete(event.DeleteEvent) bool { return true }

func (deviceTargetingChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*wasmbedv1.Device)
	n, ok2 := e.ObjectNew.(*wasmbedv1.Device)
	if !ok1 || !ok2 {
		return true
	}
	return o.Generation != n.Generation || !labels.Equals(o.Labels, n.Labels) || o.Status.Phase != n.Status.Phase
}

// applicationsOfDevice maps a Device to the Applications of its namespace
// that name or select it, and those that hold a DeviceApplication for it.
func (r *ApplicationReconciler) applicationsOfDevice(ctx context.Context, obj client.Object) []reconcile.Request {
	apps := &wasmbedv1.ApplicationList{}
	if err := r.List(ctx, apps, client.InNamespace(obj.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var out []reconcile.Request
	add := map[string]bool{}
	for i := range apps.Items {
		a := &apps.Items[i]
		match := slices.Contains(a.Spec.TargetDevices, obj.GetName())
		if !match && a.Spec.Selector != nil {
			if sel, err := metav1.LabelSelectorAsSelector(a.Spec.Selector); err == nil {
				match = sel.Matches(labels.Set(obj.GetLabels()))
			}
		}
		if match {
			add[a.Name] = true
		}
	}
	dapps := &wasmbedv1.DeviceApplicationList{}
	if err := r.List(ctx, dapps, client.InNamespace(obj.GetNamespace()), client.MatchingFields{indexDAppDevice: obj.GetName()}, client.UnsafeDisableDeepCopy); err == nil {
		for _, da := range dapps.Items {
			add[da.Spec.Application] = true
		}
	}
	for name := range add {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}})
	}
	return out
}
