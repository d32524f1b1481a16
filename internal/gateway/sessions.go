package gateway

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/pki"
	"github.com/wasmbed/wasmbed/internal/protocol"
	"github.com/wasmbed/wasmbed/internal/session"
)

// deviceSession is what the gateway keeps about one device's live session:
// what the device reports, and what the gateway last asked of it.
type deviceSession struct {
	s            *session.Session
	key          types.NamespacedName // the Device
	deviceID     string
	since        time.Time
	notBefore    time.Time   // the session certificate's validity,
	notAfter     time.Time   // from notBefore to notAfter
	expiryWarned atomic.Bool // the CertificateExpiring Event was emitted

	mu        sync.Mutex
	apps      map[string]appObserved // by application name, as the device reports them
	inventory bool                   // the device's opening report is complete
	report    *protocol.MetricsReport
	reportAt  time.Time
	attempts  map[string]attempt             // by application name: the last delivery and its outcome
	counters  map[string]protocol.AppMetrics // by application name: counters at the last report
}

// appObserved is an application's state on a device, from its last
// AppStatus.
type appObserved struct {
	sequence uint64
	state    protocol.AppState
	reason   protocol.Reason
	resource protocol.Resource
	message  string
}

// attempt is the outcome of the last artifact delivered for an application.
type attempt struct {
	sequence uint64
	status   protocol.AppStatus // the device's reply
	failed   bool               // the command itself failed (timeout, session lost)
	err      string
}

// closedSession remembers a session that ended until its Device status is
// written.
type closedSession struct {
	reason session.CloseReason
	since  time.Time
	at     time.Time
}

// Open admits a device whose certificate the handshake verified: it must
// have exactly one Device with the certificate's key, not revoked, not being
// deleted, with the certificate's device id.
func (g *Gateway) Open(ctx context.Context, s *session.Session) error {
	id := s.Identity()
	dev, err := g.deviceByKey(ctx, id.EncodedKey)
	if err != nil {
		return err
	}
	switch {
	case dev.Spec.Revoked:
		return &session.Refusal{Disconnect: protocol.DisconnectRevoked, Reason: "Revoked", Text: "device revoked"}
	case dev.DeletionTimestamp != nil:
		return &session.Refusal{Disconnect: protocol.DisconnectRevoked, Reason: "Deleted", Text: "device deleted"}
	case dev.Spec.DeviceID != id.DeviceID:
		return &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "IdentityMismatch", Text: "certificate does not match the device",
			Err: fmt.Errorf("certificate names %q, Device %s has deviceId %q", id.DeviceID, client.ObjectKeyFromObject(dev), dev.Spec.DeviceID)}
	}
	ds := &deviceSession{s: s, key: client.ObjectKeyFromObject(dev), deviceID: id.DeviceID, since: s.Since(),
		notBefore: id.Certificate.NotBefore, notAfter: id.Certificate.NotAfter}
	s.SetValue(ds)
	g.mu.Lock()
	old := g.sessions[ds.key]
	g.sessions[ds.key] = ds
	delete(g.closed, ds.key)
	g.mu.Unlock()
	if old != nil {
		// The device reconnected to this replica: its old connection is dead
		// or about to be.
		old.s.Close(session.CloseReplaced, &protocol.Disconnect{Reason: protocol.DisconnectReplaced})
	}
	g.enqueue(ds.key)
	return nil
}

// deviceByKey finds the one Device with an encoded public key.
func (g *Gateway) deviceByKey(ctx context.Context, key string) (*wasmbedv1.Device, error) {
	var list wasmbedv1.DeviceList
	if err := g.client.List(ctx, &list, client.MatchingFields{indexPublicKey: key}); err != nil {
		return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
	}
	if len(list.Items) == 0 && g.lookups.Allow() {
		// Not in the cache: maybe applied a moment ago. Ask the API server
		// once, through the selectable field, at a bounded rate so that
		// unknown devices cannot turn into API load.
		if err := g.reader.List(ctx, &list, client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector(indexPublicKey, key)}); err != nil {
			return nil, &session.Refusal{Code: protocol.CodeUnavailable, Reason: "Internal", Text: "try again later", Err: err}
		}
	}
	switch len(list.Items) {
	case 0:
		return nil, &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "UnknownDevice", Text: "unknown device"}
	case 1:
		return &list.Items[0], nil
	}
	return nil, &session.Refusal{Code: protocol.CodeUnauthorized, Reason: "AmbiguousKey", Text: "unknown device",
		Err: fmt.Errorf("%d Devices share the public key", len(list.Items))}
}

// certificateRevoked is the handshake's revocation check: a certificate is
// revoked when a Device with its key exists and is revoked. Unknown keys
// pass here and are refused by Open, with their own reason.
func (g *Gateway) certificateRevoked(ctx context.Context, cert *x509.Certificate) (bool, error) {
	pub, err := pki.PublicKeyFromCert(cert)
	if err != nil {
		return false, err
	}
	enc, err := pki.EncodePublicKey(pub)
	if err != nil {
		return false, err
	}
	var list wasmbedv1.DeviceList
	if err := g.client.List(ctx, &list, client.MatchingFields{indexPublicKey: enc}, client.UnsafeDisableDeepCopy); err != nil {
		return false, err
	}
	for i := range list.Items {
		if list.Items[i].Spec.Revoked {
			return true, nil
		}
	}
	return false, nil
}

// Handle takes a device's report.
func (g *Gateway) Handle(s *session.Session, env protocol.Envelope) {
	ds, _ := s.Value().(*deviceSession)
	if ds == nil {
		return
	}
	switch m := env.Message.(type) {
	case *protocol.AppStatus:
		ds.mu.Lock()
		if ds.apps == nil {
			ds.apps = map[string]appObserved{}
		}
		if m.State == protocol.StateRemoved {
			delete(ds.apps, m.App)
		} else {
			ds.apps[m.App] = appObserved{sequence: m.Sequence, state: m.State, reason: m.Reason, resource: m.Resource, message: m.Message}
		}
		ds.mu.Unlock()
		g.enqueue(ds.key)
	case *protocol.MetricsReport:
		ds.mu.Lock()
		first := !ds.inventory
		ds.inventory = true
		ds.report, ds.reportAt = m, g.now()
		deltas := appDeltas(ds, m)
		ds.mu.Unlock()
		g.metrics.observeReport(m, deltas)
		g.warnRepeatedTraps(ds, deltas)
		if first {
			g.enqueue(ds.key)
		}
	case *protocol.Heartbeat:
		g.metrics.observeHeartbeat(m)
	}
}

// Closed records that a session ended; the device's status follows.
func (g *Gateway) Closed(s *session.Session, reason session.CloseReason, _ error) {
	ds, _ := s.Value().(*deviceSession)
	if ds == nil {
		return
	}
	g.mu.Lock()
	if g.sessions[ds.key] == ds {
		delete(g.sessions, ds.key)
		g.closed[ds.key] = closedSession{reason: reason, since: ds.since, at: g.now()}
	}
	g.mu.Unlock()
	g.enqueue(ds.key)
}

// session returns the live session of a Device held by this replica.
func (g *Gateway) session(key types.NamespacedName) *deviceSession {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sessions[key]
}

// DeviceMetrics returns the last metrics report of a device this replica
// holds.
func (g *Gateway) DeviceMetrics(key types.NamespacedName) (*protocol.MetricsReport, time.Time, bool) {
	ds := g.session(key)
	if ds == nil {
		return nil, time.Time{}, false
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.report == nil {
		return nil, time.Time{}, false
	}
	return ds.report, ds.reportAt, true
}

// watchDevices reacts at once to Device changes that end sessions: a
// revoked or deleted Device, or a newer session on another replica.
func (g *Gateway) watchDevices(ctx context.Context) error {
	inf, err := g.mgr.GetCache().GetInformer(ctx, &wasmbedv1.Device{})
	if err != nil {
		return fmt.Errorf("gateway: device informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if dev, ok := obj.(*wasmbedv1.Device); ok {
				g.deviceChanged(dev)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if dev, ok := obj.(*wasmbedv1.Device); ok {
				g.endSession(client.ObjectKeyFromObject(dev), session.CloseRevoked, protocol.DisconnectRevoked, "device deleted")
			}
		},
	})
	if err != nil {
		return fmt.Errorf("gateway: device informer: %w", err)
	}
	da, err := g.mgr.GetCache().GetInformer(ctx, &wasmbedv1.DeviceApplication{})
	if err != nil {
		return fmt.Errorf("gateway: device application informer: %w", err)
	}
	enqueueDA := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if a, ok := obj.(*wasmbedv1.DeviceApplication); ok {
			key := types.NamespacedName{Namespace: a.Namespace, Name: a.Spec.Device}
			if g.session(key) != nil || a.DeletionTimestamp != nil {
				g.enqueue(key)
			}
		}
	}
	_, err = da.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { enqueueDA(obj) },
		UpdateFunc: func(_, obj any) { enqueueDA(obj) },
		DeleteFunc: enqueueDA,
	})
	if err != nil {
		return fmt.Errorf("gateway: device application informer: %w", err)
	}
	return nil
}

// deviceChanged ends the local session of a Device that was revoked, or
// that a newer session on another replica took over, and has the status of
// a Device whose live session this replica holds written again when it
// says otherwise.
func (g *Gateway) deviceChanged(dev *wasmbedv1.Device) {
	key := client.ObjectKeyFromObject(dev)
	ds := g.session(key)
	if ds == nil {
		return
	}
	switch {
	case dev.Spec.Revoked:
		g.endSession(key, session.CloseRevoked, protocol.DisconnectRevoked, "device revoked")
	case dev.DeletionTimestamp != nil:
		g.endSession(key, session.CloseRevoked, protocol.DisconnectRevoked, "device deleted")
	case dev.Status.Gateway != "" && dev.Status.Gateway != g.opts.Name &&
		dev.Status.ConnectedSince != nil && dev.Status.ConnectedSince.After(ds.since):
		g.log.Info("device moved to another gateway", "device", ds.deviceID, "to", dev.Status.Gateway)
		ds.s.Close(session.CloseReplaced, &protocol.Disconnect{Reason: protocol.DisconnectReplaced})
	case dev.Status.Phase != wasmbedv1.DevicePhaseConnected || dev.Status.Gateway != g.opts.Name:
		// The status contradicts the live session this replica holds: the
		// outcome of the device's previous session (Unreachable) was written
		// after the new session's reconcile had read a cache that still said
		// Connected, so that reconcile saw nothing to write. Write it again.
		g.enqueue(key)
	}
}

// endSession closes a device's local session with a Disconnect.
func (g *Gateway) endSession(key types.NamespacedName, reason session.CloseReason, dr protocol.DisconnectReason, text string) {
	ds := g.session(key)
	if ds == nil {
		return
	}
	g.log.Info("closing device session", "device", ds.deviceID, "reason", text)
	ds.s.Close(reason, &protocol.Disconnect{Reason: dr, Text: text})
}

// warnRepeatedTraps emits an Event when an application trapped repeatedly
// since the last report.
func (g *Gateway) warnRepeatedTraps(ds *deviceSession, deltas []protocol.AppMetrics) {
	for _, d := range deltas {
		if d.Traps < repeatedTraps {
			continue
		}
		ref := &corev1.ObjectReference{Kind: "Device", APIVersion: wasmbedv1.GroupVersion.String(), Namespace: ds.key.Namespace, Name: ds.key.Name}
		g.events.Eventf(ref, nil, corev1.EventTypeWarning, "RepeatedTraps", "Trap",
			"application %s trapped %d times since the last report", d.App, d.Traps)
	}
}

// repeatedTraps is the trap count between two reports that raises an Event.
const repeatedTraps = 3

// appDeltas returns, per application, how much each counter grew since the
// previous report (nothing for an application's first report, or after a
// restart reset its counters); ds.mu is held.
func appDeltas(ds *deviceSession, m *protocol.MetricsReport) []protocol.AppMetrics {
	var out []protocol.AppMetrics
	if ds.counters == nil && len(m.Apps) > 0 {
		ds.counters = map[string]protocol.AppMetrics{}
	}
	for _, a := range m.Apps {
		prev, seen := ds.counters[a.App]
		ds.counters[a.App] = a
		if !seen || a.Executions < prev.Executions || a.Traps < prev.Traps {
			continue
		}
		out = append(out, protocol.AppMetrics{App: a.App, MemoryBytes: a.MemoryBytes,
			Fuel: sub(a.Fuel, prev.Fuel), CPUMicros: sub(a.CPUMicros, prev.CPUMicros),
			Executions: a.Executions - prev.Executions, Traps: a.Traps - prev.Traps})
	}
	return out
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}
