package devicestatus_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/devicestatus"
)

func TestDerive(t *testing.T) {
	notAfter := metav1.NewTime(time.Now().Add(time.Hour))
	tests := []struct {
		name        string
		revoked     bool
		st          wasmbedv1.DeviceStatus
		unreachable string
		want        map[string]string // condition type -> status/reason
	}{
		{"declared, never enrolled", false, wasmbedv1.DeviceStatus{},
			"", map[string]string{"Enrolled": "False/NotEnrolled", "Connected": "False/NotEnrolled", "Ready": "False/NotEnrolled"}},
		{"enrolling", false, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseEnrolling},
			"", map[string]string{"Enrolled": "False/NotEnrolled", "Connected": "False/NotEnrolled"}},
		{"re-enrolling with a certificate", false, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseEnrolling, CertificateNotAfter: &notAfter},
			"", map[string]string{"Enrolled": "True/CertificateIssued"}},
		{"enrolled", false, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseEnrolled},
			"", map[string]string{"Enrolled": "True/CertificateIssued", "Connected": "False/NotEnrolled", "Ready": "False/NotEnrolled"}},
		{"connected", false, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseConnected, Gateway: "gw-0"},
			"", map[string]string{"Enrolled": "True/CertificateIssued", "Connected": "True/SessionOpen", "Ready": "True/SessionOpen"}},
		{"connected, revoked", true, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseConnected, Gateway: "gw-0"},
			"", map[string]string{"Connected": "True/SessionOpen", "Ready": "False/Revoked"}},
		{"gateway lost", false, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseUnreachable, Gateway: "gw-0"},
			wasmbedv1.ReasonGatewayLost, map[string]string{"Connected": "False/GatewayLost", "Ready": "False/GatewayLost"}},
		{"disconnected", false, wasmbedv1.DeviceStatus{Phase: wasmbedv1.DevicePhaseDisconnected},
			"", map[string]string{"Connected": "False/Disconnected", "Ready": "False/Disconnected"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev := &wasmbedv1.Device{ObjectMeta: metav1.ObjectMeta{Name: "d", Generation: 3}, Spec: wasmbedv1.DeviceSpec{Revoked: tt.revoked}}
			st := tt.st.DeepCopy()
			changed := devicestatus.Derive(dev, st, tt.unreachable)
			if len(changed) != 3 {
				t.Errorf("first derivation: %d conditions changed, want 3 (all new)", len(changed))
			}
			for typ, want := range tt.want {
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil || string(c.Status)+"/"+c.Reason != want {
					t.Errorf("%s: got %+v, want %s", typ, c, want)
				} else if c.ObservedGeneration != 3 {
					t.Errorf("%s: observedGeneration %d, want 3", typ, c.ObservedGeneration)
				}
			}
			if st.ObservedGeneration != 3 {
				t.Errorf("status observedGeneration %d, want 3", st.ObservedGeneration)
			}
			// Deriving again from what was derived and stored changes
			// nothing: a writer that derived leaves the other nothing to
			// write.
			dev.Status = *st.DeepCopy()
			again := st.DeepCopy()
			if changed := devicestatus.Derive(dev, again, tt.unreachable); len(changed) != 0 {
				t.Errorf("second derivation changed %+v", changed)
			}
			if !equality.Semantic.DeepEqual(again, st) {
				t.Errorf("second derivation rewrote the status:\n%+v\nwant\n%+v", again, st)
			}
		})
	}
}

// TestDeriveSeesTransitionsAgainstTheStoredStatus: a writer that set a
// condition itself before deriving (the gateway's reason for an unreachable
// device) still gets the transition, compared with what is stored.
func TestDeriveSeesTransitionsAgainstTheStoredStatus(t *testing.T) {
	dev := &wasmbedv1.Device{ObjectMeta: metav1.ObjectMeta{Name: "d"}}
	devicestatus.Derive(dev, &dev.Status, "")
	dev.Status.Phase = wasmbedv1.DevicePhaseConnected
	devicestatus.Derive(dev, &dev.Status, "")
	st := dev.Status.DeepCopy()
	st.Phase = wasmbedv1.DevicePhaseUnreachable
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: wasmbedv1.ConditionConnected, Status: metav1.ConditionFalse, Reason: "MissedHeartbeats"})
	changed := devicestatus.Derive(dev, st, "")
	var got []string
	for _, c := range changed {
		got = append(got, c.Type+"="+string(c.Status)+"/"+c.Reason)
	}
	want := []string{"Connected=False/MissedHeartbeats", "Ready=False/MissedHeartbeats"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("transitions %v, want %v", got, want)
	}
}

func TestEvent(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason}
	}
	tests := []struct {
		c          metav1.Condition
		typ, event string // "" event: none
	}{
		{cond("Enrolled", metav1.ConditionTrue, "CertificateIssued"), corev1.EventTypeNormal, "Enrolled"},
		{cond("Enrolled", metav1.ConditionFalse, "NotEnrolled"), "", ""},
		{cond("Connected", metav1.ConditionTrue, "SessionOpen"), corev1.EventTypeNormal, "Connected"},
		{cond("Connected", metav1.ConditionFalse, "NotEnrolled"), "", ""},
		{cond("Connected", metav1.ConditionFalse, "Disconnected"), corev1.EventTypeNormal, "Disconnected"},
		{cond("Connected", metav1.ConditionFalse, "GatewayLost"), corev1.EventTypeWarning, "Unreachable"},
		{cond("Connected", metav1.ConditionFalse, "MissedHeartbeats"), corev1.EventTypeWarning, "Unreachable"},
		{cond("Ready", metav1.ConditionTrue, "SessionOpen"), "", ""},
		{cond("Ready", metav1.ConditionFalse, "GatewayLost"), "", ""},
		{cond("Ready", metav1.ConditionFalse, "Revoked"), corev1.EventTypeWarning, "NotReady"},
	}
	for _, tt := range tests {
		typ, reason, ok := devicestatus.Event(tt.c)
		if ok != (tt.event != "") || typ != tt.typ || reason != tt.event {
			t.Errorf("%s=%s (%s): got %q %q %v, want %q %q", tt.c.Type, tt.c.Status, tt.c.Reason, typ, reason, ok, tt.typ, tt.event)
		}
	}
}
