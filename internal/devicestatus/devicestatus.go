// Package devicestatus derives the conditions of a Device from its status:
// Enrolled, Connected and Ready, and the Events their transitions record.
// Every writer of Device status uses it (the gateway holding the session
// when it writes the phase, the controller when it finds a device
// unreachable), so that a status one writes is already what the other
// would write, and a transition costs one write, not two.
package devicestatus

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Derive sets st, the status about to be written for dev, to its Enrolled,
// Connected and Ready conditions and dev's generation (see conditions), and
// returns the conditions whose status differs from dev's stored status, for
// Events.
func Derive(dev *wasmbedv1.Device, st *wasmbedv1.DeviceStatus, unreachable string) []metav1.Condition {
	var changed []metav1.Condition
	for _, c := range conditions(dev, st, unreachable) {
		c.ObservedGeneration = dev.Generation
		if old := meta.FindStatusCondition(dev.Status.Conditions, c.Type); old == nil || old.Status != c.Status {
			changed = append(changed, c)
		}
		meta.SetStatusCondition(&st.Conditions, c)
	}
	st.ObservedGeneration = dev.Generation
	return changed
}

// conditions derives the Enrolled, Connected and Ready conditions of dev
// with status st. unreachable is why a Connected device is found
// unreachable (wasmbedv1.ReasonGatewayLost or ReasonHeartbeatMissed), or "".
func conditions(dev *wasmbedv1.Device, st *wasmbedv1.DeviceStatus, unreachable string) []metav1.Condition {
	var enrolled, connected, ready metav1.Condition
	switch st.Phase {
	case "", wasmbedv1.DevicePhasePending, wasmbedv1.DevicePhaseEnrolling:
		if st.CertificateNotAfter == nil {
			enrolled = metav1.Condition{Type: wasmbedv1.ConditionEnrolled, Status: metav1.ConditionFalse, Reason: wasmbedv1.ReasonNotEnrolled, Message: "the device holds no certificate yet"}
			break
		}
		fallthrough
	default:
		enrolled = metav1.Condition{Type: wasmbedv1.ConditionEnrolled, Status: metav1.ConditionTrue, Reason: wasmbedv1.ReasonCertificateIssued, Message: "the device holds a certificate"}
	}
	switch {
	case st.Phase == wasmbedv1.DevicePhaseConnected:
		connected = metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionTrue, Reason: wasmbedv1.ReasonSessionOpen, Message: "session held by gateway " + st.Gateway}
	case unreachable == wasmbedv1.ReasonGatewayLost:
		connected = metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: unreachable, Message: fmt.Sprintf("gateway %s stopped renewing its lease", st.Gateway)}
	case unreachable == wasmbedv1.ReasonHeartbeatMissed:
		connected = metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: unreachable, Message: "the device was not heard from within the deadline"}
	case st.Phase == wasmbedv1.DevicePhaseUnreachable:
		// Keep the reason recorded when it became unreachable.
		if c := meta.FindStatusCondition(st.Conditions, wasmbedv1.ConditionConnected); c != nil && c.Status == metav1.ConditionFalse {
			connected = *c
		} else {
			connected = metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: wasmbedv1.ReasonHeartbeatMissed, Message: "the device is unreachable"}
		}
	case st.Phase == wasmbedv1.DevicePhaseDisconnected:
		connected = metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: wasmbedv1.ReasonDisconnected, Message: "the device closed its session"}
	default:
		connected = metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: wasmbedv1.ReasonNotEnrolled, Message: "no session yet"}
	}
	switch {
	case dev.Spec.Revoked:
		ready = metav1.Condition{Type: wasmbedv1.ConditionReady, Status: metav1.ConditionFalse, Reason: wasmbedv1.ReasonRevoked, Message: "the device is revoked"}
	case connected.Status == metav1.ConditionTrue:
		ready = metav1.Condition{Type: wasmbedv1.ConditionReady, Status: metav1.ConditionTrue, Reason: wasmbedv1.ReasonSessionOpen, Message: "enrolled, connected and not revoked"}
	default:
		ready = metav1.Condition{Type: wasmbedv1.ConditionReady, Status: metav1.ConditionFalse, Reason: connected.Reason, Message: connected.Message}
	}
	return []metav1.Condition{enrolled, connected, ready}
}

// Event returns the Event a condition's transition records: its type and
// reason, and false when it records none. A device's arrival records
// Enrolled and Connected; its loss records Unreachable (a warning) or
// Disconnected; Ready records an Event of its own only when it is not
// Connected's echo (NotReady of a revoked device).
func Event(c metav1.Condition) (eventType, reason string, ok bool) {
	switch {
	case c.Type == wasmbedv1.ConditionReady:
		if c.Status == metav1.ConditionFalse && c.Reason == wasmbedv1.ReasonRevoked {
			return corev1.EventTypeWarning, "NotReady", true
		}
		return "", "", false
	case c.Type == wasmbedv1.ConditionConnected && c.Status == metav1.ConditionFalse:
		switch c.Reason {
		case wasmbedv1.ReasonNotEnrolled:
			return "", "", false
		case wasmbedv1.ReasonDisconnected:
			return corev1.EventTypeNormal, c.Reason, true
		}
		return corev1.EventTypeWarning, "Unreachable", true
	case c.Status == metav1.ConditionFalse:
		if c.Type == wasmbedv1.ConditionEnrolled || c.Reason == wasmbedv1.ReasonNotEnrolled {
			return "", "", false
		}
		return corev1.EventTypeWarning, "Not" + c.Type, true
	}
	return corev1.EventTypeNormal, c.Type, true
}

// Record records on dev the Events of the transitions Derive returned.
func Record(rec events.EventRecorder, dev *wasmbedv1.Device, changed []metav1.Condition) {
	for _, c := range changed {
		if typ, reason, ok := Event(c); ok {
			rec.Eventf(dev, nil, typ, reason, "Observe", "%s: %s", c.Reason, c.Message)
		}
	}
}
