package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/artifact"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// inventoryWait bounds how long delivery waits for a new session's opening
// report (its statuses, closed by a metrics report) before acting anyway.
const inventoryWait = 5 * time.Second

func (g *Gateway) setupDelivery() error {
	g.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[types.NamespacedName](200*time.Millisecond, time.Minute),
		workqueue.TypedRateLimitingQueueConfig[types.NamespacedName]{Name: "gateway_delivery_" + g.opts.Name})
	return nil
}

// enqueue asks for a device to be brought to its desired state.
func (g *Gateway) enqueue(key types.NamespacedName) { g.queue.Add(key) }

// runDelivery runs the delivery workers until the queue shuts down.
func (g *Gateway) runDelivery(ctx context.Context) {
	done := make(chan struct{})
	for range g.opts.MaxConcurrentDeliveries {
		go func() {
			defer func() { done <- struct{}{} }()
			for g.processNext(ctx) {
			}
		}()
	}
	for range g.opts.MaxConcurrentDeliveries {
		<-done
	}
}

func (g *Gateway) processNext(ctx context.Context) bool {
	key, quit := g.queue.Get()
	if quit {
		return false
	}
	defer g.queue.Done(key)
	requeue, err := g.reconcile(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			g.log.Info("device reconcile failed", "object", key.String(), "err", err)
		}
		g.queue.AddRateLimited(key)
	case requeue > 0:
		g.queue.Forget(key)
		g.queue.AddAfter(key, requeue)
	default:
		g.queue.Forget(key)
	}
	return true
}

// reconcile brings one device to its desired state: its Device status, the
// applications it runs, and their DeviceApplications' statuses.
func (g *Gateway) reconcile(ctx context.Context, key types.NamespacedName) (time.Duration, error) {
	dev := &wasmbedv1.Device{}
	if err := g.client.Get(ctx, key, dev); err != nil {
		if !apierrors.IsNotFound(err) {
			return 0, err
		}
		dev = nil
	}
	ds := g.session(key)
	if err := g.syncDeviceStatus(ctx, key, dev, ds); err != nil {
		return 0, fmt.Errorf("device status: %w", err)
	}
	var das wasmbedv1.DeviceApplicationList
	if err := g.client.List(ctx, &das, client.InNamespace(key.Namespace), client.MatchingFields{indexDevice: key.Name}); err != nil {
		return 0, err
	}
	if dev == nil {
		// The Device is gone: nothing will confirm removals any more.
		return 0, g.releaseAll(ctx, das.Items)
	}
	if ds == nil || ds.s.Closed() {
		return 0, nil
	}
	ds.mu.Lock()
	ready := ds.inventory
	ds.mu.Unlock()
	if !ready {
		if wait := inventoryWait - g.now().Sub(ds.since); wait > 0 {
			return wait, nil
		}
	}
	return 0, g.deliver(ctx, ds, das.Items)
}

// deliver sends what the device lacks, one command at a time, and writes
// each DeviceApplication's status.
func (g *Gateway) deliver(ctx context.Context, ds *deviceSession, das []wasmbedv1.DeviceApplication) error {
	var errs []error
	wanted := map[string]bool{}
	for i := range das {
		da := &das[i]
		wanted[da.Spec.AppName] = true
		if err := g.deliverOne(ctx, ds, da); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", da.Name, err))
		}
	}
	// Applications the platform does not know of do not stay: Kubernetes is
	// the source of truth.
	for _, app := range ds.installedApps() {
		if wanted[app] {
			continue
		}
		g.log.Info("removing an application no DeviceApplication asks for", "device", ds.deviceID, "app", app)
		if _, err := g.command(ctx, ds, &protocol.Remove{App: app}); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", app, err))
		}
	}
	return errors.Join(errs...)
}

// installedApps returns the applications the device reports.
func (ds *deviceSession) installedApps() []string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	out := make([]string, 0, len(ds.apps))
	for app := range ds.apps {
		out = append(out, app)
	}
	return out
}

// observed returns what the device reports of app.
func (ds *deviceSession) observed(app string) (appObserved, bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	o, ok := ds.apps[app]
	return o, ok
}

func (g *Gateway) deliverOne(ctx context.Context, ds *deviceSession, da *wasmbedv1.DeviceApplication) error {
	app := da.Spec.AppName
	if da.DeletionTimestamp != nil {
		return g.remove(ctx, ds, da)
	}
	obs, installed := ds.observed(app)
	art := da.Spec.Artifact
	running := da.Spec.State != wasmbedv1.RunStateStopped
	switch {
	case art != nil && (!installed || obs.sequence < uint64(art.Sequence)) && !failedBefore(da): //nolint:gosec // validated positive
		if err := g.install(ctx, ds, da, installed, running); err != nil {
			return err
		}
	case installed && (art == nil || obs.sequence == uint64(art.Sequence)): //nolint:gosec // validated positive
		var cmd protocol.Message
		switch {
		case running && (obs.state == protocol.StateInstalled || obs.state == protocol.StateStopped):
			cmd = &protocol.Start{App: app, Sequence: obs.sequence}
		case !running && obs.state == protocol.StateRunning:
			cmd = &protocol.Stop{App: app, Sequence: obs.sequence}
		}
		if cmd != nil {
			if _, err := g.command(ctx, ds, cmd); err != nil {
				return err
			}
		}
	}
	return g.writeStatus(ctx, ds, da)
}

// failedBefore reports whether the device already refused or failed the
// DeviceApplication's current artifact: it is not sent again (the rollout
// counts the failure); a new artifact, or a gateway that never saw the
// failure, tries again.
func failedBefore(da *wasmbedv1.DeviceApplication) bool {
	st := da.Status
	return da.Spec.Artifact != nil && st.AttemptedSequence == da.Spec.Artifact.Sequence && st.Phase.Failed()
}

// install sends a DeviceApplication's artifact.
func (g *Gateway) install(ctx context.Context, ds *deviceSession, da *wasmbedv1.DeviceApplication, update, start bool) error {
	art := da.Spec.Artifact
	payload, err := g.modules.get(ctx, g.reader, da.Namespace, art.Payload)
	if err != nil {
		g.recordAttempt(ds, da.Spec.AppName, attempt{sequence: uint64(art.Sequence), failed: true, err: "module unavailable: " + err.Error()}) //nolint:gosec // validated positive
		_ = g.writeStatus(ctx, ds, da)
		return err
	}
	signed := artifact.Signed{Manifest: art.Manifest, Signature: art.Signature, Payload: payload, KeyMaterial: art.KeyMaterial}
	data, err := signed.Marshal()
	if err != nil {
		return err
	}
	seq := uint64(art.Sequence) //nolint:gosec // validated positive
	var msg protocol.Message = &protocol.Deploy{App: da.Spec.AppName, Sequence: seq, Artifact: data, Start: start}
	if update {
		msg = &protocol.Update{App: da.Spec.AppName, Sequence: seq, Artifact: data, Start: start}
	}
	g.setPhase(ctx, ds, da, wasmbedv1.DeviceApplicationPhaseDelivering)
	st, err := g.command(ctx, ds, msg)
	if err != nil {
		g.recordAttempt(ds, da.Spec.AppName, attempt{sequence: seq, failed: true, err: err.Error()})
		return err
	}
	g.recordAttempt(ds, da.Spec.AppName, attempt{sequence: seq, status: *st})
	g.metrics.deliveries.WithLabelValues(deliveryResult(st)).Inc()
	return nil
}

func deliveryResult(st *protocol.AppStatus) string {
	switch st.State {
	case protocol.StateRunning, protocol.StateInstalled, protocol.StateStopped:
		return "ok"
	case protocol.StateRefused:
		return "refused"
	}
	return "failed"
}

func (g *Gateway) recordAttempt(ds *deviceSession, app string, a attempt) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.attempts == nil {
		ds.attempts = map[string]attempt{}
	}
	ds.attempts[app] = a
}

// command sends one command and records the device's answer as what it
// reports of the application.
func (g *Gateway) command(ctx context.Context, ds *deviceSession, msg protocol.Message) (*protocol.AppStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, g.opts.CommandTimeout)
	defer cancel()
	env, err := ds.s.Request(ctx, msg)
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return nil, fmt.Errorf("device refused %s: %w", msg.Type(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", msg.Type(), err)
	}
	st, ok := env.Message.(*protocol.AppStatus)
	if !ok {
		return nil, fmt.Errorf("%s answered with %s", msg.Type(), env.Message.Type())
	}
	ds.mu.Lock()
	if ds.apps == nil {
		ds.apps = map[string]appObserved{}
	}
	switch {
	case st.State == protocol.StateRemoved:
		delete(ds.apps, st.App)
	case st.State == protocol.StateRefused || st.State == protocol.StateFailed && st.Sequence == 0:
		// A refusal changes nothing on the device: what ran before still
		// runs, and the device says so in its own report.
	default:
		ds.apps[st.App] = appObserved{sequence: st.Sequence, state: st.State, reason: st.Reason, resource: st.Resource, message: st.Message}
	}
	ds.mu.Unlock()
	return st, nil
}

// remove takes an application being deleted off the device, then releases
// its DeviceApplication.
func (g *Gateway) remove(ctx context.Context, ds *deviceSession, da *wasmbedv1.DeviceApplication) error {
	if !controllerutil.ContainsFinalizer(da, wasmbedv1.FinalizerDeviceRemoval) {
		return nil
	}
	if _, installed := ds.observed(da.Spec.AppName); installed {
		g.setPhase(ctx, ds, da, wasmbedv1.DeviceApplicationPhaseRemoving)
		st, err := g.command(ctx, ds, &protocol.Remove{App: da.Spec.AppName})
		if err != nil {
			return err
		}
		if st.State != protocol.StateRemoved {
			return fmt.Errorf("remove %s: device answered %v", da.Spec.AppName, st.State)
		}
	}
	return g.release(ctx, da)
}

// releaseAll releases the DeviceApplications being deleted of a Device that
// no longer exists.
func (g *Gateway) releaseAll(ctx context.Context, das []wasmbedv1.DeviceApplication) error {
	var errs []error
	for i := range das {
		if das[i].DeletionTimestamp != nil {
			errs = append(errs, g.release(ctx, &das[i]))
		}
	}
	return errors.Join(errs...)
}

// release removes a DeviceApplication's removal finalizer.
func (g *Gateway) release(ctx context.Context, da *wasmbedv1.DeviceApplication) error {
	if !controllerutil.ContainsFinalizer(da, wasmbedv1.FinalizerDeviceRemoval) {
		return nil
	}
	patch := client.MergeFromWithOptions(da.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(da, wasmbedv1.FinalizerDeviceRemoval)
	if err := g.client.Patch(ctx, da, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release %s: %w", da.Name, err)
	}
	return nil
}

// setPhase records a transient phase (Delivering, Removing) before a command.
func (g *Gateway) setPhase(ctx context.Context, ds *deviceSession, da *wasmbedv1.DeviceApplication, phase wasmbedv1.DeviceApplicationPhase) {
	if da.Status.Phase == phase {
		return
	}
	st := da.Status
	st.Phase, st.Reason, st.Message, st.Gateway = phase, "", "", g.opts.Name
	_ = g.patchDAStatus(ctx, da, st)
	_ = ds
}

// writeStatus writes what the device reports of a DeviceApplication's
// application, if it changed.
func (g *Gateway) writeStatus(ctx context.Context, ds *deviceSession, da *wasmbedv1.DeviceApplication) error {
	st := g.observedStatus(ds, da)
	return g.patchDAStatus(ctx, da, st)
}

// observedStatus computes a DeviceApplication's status from the device's
// report and the last delivery's outcome.
func (g *Gateway) observedStatus(ds *deviceSession, da *wasmbedv1.DeviceApplication) wasmbedv1.DeviceApplicationStatus {
	app := da.Spec.AppName
	ds.mu.Lock()
	obs, installed := ds.apps[app]
	att, attempted := ds.attempts[app]
	ds.mu.Unlock()
	st := wasmbedv1.DeviceApplicationStatus{Gateway: g.opts.Name, AttemptedSequence: da.Status.AttemptedSequence}
	art := da.Spec.Artifact
	if installed {
		st.Sequence = int64(obs.sequence) //nolint:gosec // sequences stay far below 2^63
		st.Phase, st.Reason = phaseOf(obs.state, obs.reason, obs.resource)
		st.Message = truncate(obs.message, 1024)
		if art != nil && obs.sequence == uint64(art.Sequence) { //nolint:gosec // validated positive
			st.Version, st.ModuleHash = da.Spec.Version, art.ModuleHash
		} else if da.Status.Sequence == st.Sequence {
			st.Version, st.ModuleHash = da.Status.Version, da.Status.ModuleHash
		}
	} else {
		st.Phase = wasmbedv1.DeviceApplicationPhasePending
	}
	if art != nil && attempted && att.sequence == uint64(art.Sequence) { //nolint:gosec // validated positive
		st.AttemptedSequence = art.Sequence
		switch {
		case att.failed:
			// The command did not reach an answer; delivery retries.
			st.Reason, st.Message = "DeliveryFailed", truncate(att.err, 1024)
		case att.status.State == protocol.StateRefused || att.status.State == protocol.StateFailed ||
			att.status.State == protocol.StateTrapped || att.status.State == protocol.StateLimitExceeded:
			st.Phase, st.Reason = phaseOf(att.status.State, att.status.Reason, att.status.Resource)
			st.Message = truncate(att.status.Message, 1024)
			if installed && obs.sequence < att.sequence && obs.state == protocol.StateRunning {
				st.Reason = "FellBack"
				st.Message = truncate(fmt.Sprintf("version %q failed (%s); the previous version runs again", da.Spec.Version, att.status.Message), 1024)
			}
		}
	}
	return st
}

// patchDAStatus writes st if it differs from da's status.
func (g *Gateway) patchDAStatus(ctx context.Context, da *wasmbedv1.DeviceApplication, st wasmbedv1.DeviceApplicationStatus) error {
	cur := da.Status
	st.LastTransitionTime = cur.LastTransitionTime
	if st.Phase != cur.Phase || st.LastTransitionTime == nil {
		now := metav1.NewTime(g.now())
		st.LastTransitionTime = &now
	}
	if equalDAStatus(cur, st) {
		return nil
	}
	orig := da.DeepCopy()
	da.Status = st
	if err := g.client.Status().Patch(ctx, da, client.MergeFrom(orig)); err != nil {
		da.Status = cur
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("status of %s: %w", da.Name, err)
	}
	g.metrics.statusWrites.WithLabelValues("DeviceApplication").Inc()
	return nil
}

func equalDAStatus(a, b wasmbedv1.DeviceApplicationStatus) bool {
	ta, tb := a.LastTransitionTime, b.LastTransitionTime
	a.LastTransitionTime, b.LastTransitionTime = nil, nil
	if a != b {
		return false
	}
	return ta == nil && tb == nil || ta != nil && tb != nil && ta.Equal(tb)
}

// phaseOf maps a device's application state to a phase and a reason.
func phaseOf(s protocol.AppState, r protocol.Reason, res protocol.Resource) (wasmbedv1.DeviceApplicationPhase, string) {
	switch s {
	case protocol.StateInstalled:
		return wasmbedv1.DeviceApplicationPhaseInstalled, ""
	case protocol.StateRunning:
		return wasmbedv1.DeviceApplicationPhaseRunning, ""
	case protocol.StateStopped:
		return wasmbedv1.DeviceApplicationPhaseStopped, ""
	case protocol.StateTrapped:
		return wasmbedv1.DeviceApplicationPhaseTrapped, "RuntimeTrap"
	case protocol.StateLimitExceeded:
		return wasmbedv1.DeviceApplicationPhaseLimitExceeded, resourceReason(res)
	case protocol.StateRefused:
		return wasmbedv1.DeviceApplicationPhaseRefused, reasonName(r)
	case protocol.StateRemoved:
		return wasmbedv1.DeviceApplicationPhaseRemoved, ""
	}
	return wasmbedv1.DeviceApplicationPhaseFailed, reasonName(r)
}

func resourceReason(r protocol.Resource) string {
	switch r {
	case protocol.ResourceMemory:
		return "MemoryLimitExceeded"
	case protocol.ResourceFuel:
		return "FuelExhausted"
	case protocol.ResourceTime:
		return "TimeoutExceeded"
	case protocol.ResourceStack:
		return "StackExhausted"
	}
	return "LimitExceeded"
}

// reasonName returns a protocol reason in the CamelCase of Kubernetes
// reasons.
func reasonName(r protocol.Reason) string {
	switch r {
	case protocol.ReasonBadSignature:
		return "BadSignature"
	case protocol.ReasonReplay:
		return "Replay"
	case protocol.ReasonExpired:
		return "ArtifactExpired"
	case protocol.ReasonWrongDevice:
		return "WrongDevice"
	case protocol.ReasonDecryptFailed:
		return "DecryptFailed"
	case protocol.ReasonInvalidModule:
		return "InvalidModule"
	case protocol.ReasonNoSpace:
		return "DoesNotFit"
	case protocol.ReasonLimitsUnsupported:
		return "LimitsUnsupported"
	case protocol.ReasonNotInstalled:
		return "NotInstalled"
	case protocol.ReasonMalformedArtifact:
		return "MalformedArtifact"
	case 0:
		return "Failed"
	}
	return "DeviceError"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
