package gateway

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/devicestatus"
	"github.com/wasmbed/wasmbed/internal/session"
)

// Condition reasons the gateway writes on the Connected condition.
const (
	reasonGoodbye       = "Goodbye"
	reasonMissedHeartbt = "MissedHeartbeats"
	reasonConnLost      = "ConnectionLost"
	reasonProtocolError = "ProtocolError"
	reasonRevoked       = "Revoked"
)

// syncDeviceStatus writes the Device status this replica is responsible
// for, when it changed: Connected with this replica's name while it holds
// the session; Disconnected or Unreachable once the session it held ended
// (only if no newer session elsewhere took over, checked with an optimistic
// lock on the object).
func (g *Gateway) syncDeviceStatus(ctx context.Context, key types.NamespacedName, dev *wasmbedv1.Device, ds *deviceSession) error {
	if dev == nil {
		g.mu.Lock()
		delete(g.closed, key)
		g.mu.Unlock()
		return nil
	}
	now := g.now()
	st := dev.Status.DeepCopy()
	if ds != nil && !ds.s.Closed() {
		if cs := st.ConnectedSince; st.Gateway != g.opts.Name && cs != nil && cs.After(ds.since) {
			return nil // a newer session elsewhere: deviceChanged closes ours
		}
		if st.Phase != wasmbedv1.DevicePhaseConnected || st.Gateway != g.opts.Name || st.ConnectedSince == nil {
			// A device reconnecting to the replica that already holds it
			// (after a restart of this replica) keeps its status as it is:
			// a gateway restart costs no Device writes.
			since := metav1.NewMicroTime(ds.since)
			st.Phase = wasmbedv1.DevicePhaseConnected
			st.Gateway = g.opts.Name
			st.ConnectedSince = &since
		}
		if g.lastSeenStale(key, st.LastSeen, ds, now) {
			seen := metav1.NewTime(ds.s.LastHeard())
			st.LastSeen = &seen
		}
		notAfter := metav1.NewTime(ds.notAfter)
		st.CertificateNotAfter = &notAfter
		return g.patchDeviceStatus(ctx, dev, st)
	}
	g.mu.Lock()
	closed, ok := g.closed[key]
	g.mu.Unlock()
	if !ok {
		return nil
	}
	mine := st.Gateway == g.opts.Name && (st.ConnectedSince == nil || !st.ConnectedSince.After(closed.since))
	var phase wasmbedv1.DevicePhase
	var reason string
	switch closed.reason {
	case session.CloseGoodbye:
		phase, reason = wasmbedv1.DevicePhaseDisconnected, reasonGoodbye
	case session.CloseIdle:
		phase, reason = wasmbedv1.DevicePhaseUnreachable, reasonMissedHeartbt
	case session.CloseLost:
		phase, reason = wasmbedv1.DevicePhaseUnreachable, reasonConnLost
	case session.CloseProtocol:
		phase, reason = wasmbedv1.DevicePhaseDisconnected, reasonProtocolError
	case session.CloseRevoked:
		phase, reason = wasmbedv1.DevicePhaseDisconnected, reasonRevoked
	default:
		// Replaced or shut down: another session, or the controller through
		// this replica's Lease, says what happens next.
		mine = false
	}
	if mine {
		seen := metav1.NewTime(closed.at)
		st.Phase = phase
		st.LastSeen = &seen
		apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse,
			Reason: reason, Message: "session with gateway " + g.opts.Name + " ended", ObservedGeneration: dev.Generation})
		if err := g.patchDeviceStatus(ctx, dev, st); err != nil {
			return err
		}
	}
	g.mu.Lock()
	if g.closed[key] == closed {
		delete(g.closed, key)
	}
	g.mu.Unlock()
	return nil
}

// patchDeviceStatus writes st as dev's status if it changed, with an
// optimistic lock: a conflict means someone else wrote meanwhile, and the
// reconcile runs again on the fresh object.
//
// The write carries the conditions derived from st (devicestatus), as the
// controller would derive them, so that it has nothing to write after
// this one, and records the Events of their transitions.
func (g *Gateway) patchDeviceStatus(ctx context.Context, dev *wasmbedv1.Device, st *wasmbedv1.DeviceStatus) error {
	changed := devicestatus.Derive(dev, st, "")
	if equalDeviceStatus(&dev.Status, st) {
		return nil
	}
	orig := dev.DeepCopy()
	dev.Status = *st
	if err := g.client.Status().Patch(ctx, dev, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		dev.Status = orig.Status
		return fmt.Errorf("patch status of %s: %w", dev.Name, err)
	}
	g.metrics.statusWrites.WithLabelValues("Device").Inc()
	devicestatus.Record(g.events, dev, changed)
	return nil
}

// equalDeviceStatus compares two statuses, ignoring condition transition
// times that SetStatusCondition keeps when nothing else changed.
func equalDeviceStatus(a, b *wasmbedv1.DeviceStatus) bool {
	if a.Phase != b.Phase || a.Gateway != b.Gateway || a.ObservedGeneration != b.ObservedGeneration || !eqMicro(a.ConnectedSince, b.ConnectedSince) ||
		!eqTime(a.LastSeen, b.LastSeen) || !eqTime(a.CertificateNotAfter, b.CertificateNotAfter) ||
		len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message ||
			x.ObservedGeneration != y.ObservedGeneration || !x.LastTransitionTime.Equal(&y.LastTransitionTime) {
			return false
		}
	}
	return true
}

func eqTime(a, b *metav1.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(b)
}

func eqMicro(a, b *metav1.MicroTime) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(b)
}

// lastSeenDue returns how old a connected device's lastSeen may get before
// it is refreshed: the period plus up to a fifth of it, spread by the
// device's name so that a fleet connected at once does not refresh at once,
// and so that no device is written more than once per period.
func (g *Gateway) lastSeenDue(key types.NamespacedName) time.Duration {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key.String()))
	p := g.opts.LastSeenPeriod
	return p + time.Duration(uint64(h.Sum32())%uint64(float64(p)*LastSeenJitter+1)) //nolint:gosec // durations are positive
}

// lastSeenStale reports whether a connected device's stored lastSeen is
// due for a refresh: older than its period, and older than the last
// message heard from the device (lastSeen is when the device was last
// heard, so refreshing it before a new message arrives would write the same
// second again and again).
func (g *Gateway) lastSeenStale(key types.NamespacedName, stored *metav1.Time, ds *deviceSession, now time.Time) bool {
	if stored == nil {
		return true
	}
	heard := ds.s.LastHeard().Truncate(time.Second) // metav1.Time keeps seconds
	return now.Sub(stored.Time) >= g.lastSeenDue(key) && heard.After(stored.Time)
}

// refreshLastSeen enqueues the connected devices whose lastSeen is due.
func (g *Gateway) refreshLastSeen(ctx context.Context) {
	tick := min(max(g.opts.LastSeenPeriod/20, time.Second), time.Minute)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		held := make(map[types.NamespacedName]*deviceSession, len(g.sessions))
		maps.Copy(held, g.sessions)
		g.mu.Unlock()
		now := g.now()
		for k, ds := range held {
			dev := &wasmbedv1.Device{}
			if err := g.client.Get(ctx, k, dev); err != nil {
				continue
			}
			if g.lastSeenStale(k, dev.Status.LastSeen, ds, now) {
				g.enqueue(k)
			}
		}
	}
}
