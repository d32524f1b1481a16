package rollout

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Summary is the phase and conditions of an Application.
type Summary struct {
	Phase wasmbedv1.ApplicationPhase
	// Conditions are Ready, Progressing and Degraded, without times and
	// generations (meta.SetStatusCondition fills them).
	Conditions []metav1.Condition
}

func cond(t string, ok bool, reason, format string, args ...any) metav1.Condition {
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: status, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Summarize returns the phase and conditions of an application whose
// targets stand at c, once assigned more devices have been given the current
// version, with the desired run state and whether the rollout is paused.
func Summarize(state wasmbedv1.RunState, c Counts, assigned int, paused bool) Summary {
	if c.Targets == 0 {
		return Summary{Phase: wasmbedv1.ApplicationPhasePending, Conditions: []metav1.Condition{
			cond(wasmbedv1.ConditionReady, false, wasmbedv1.ReasonNoTargets, "no device is targeted"),
			cond(wasmbedv1.ConditionProgressing, false, wasmbedv1.ReasonNoTargets, "no device is targeted"),
			cond(wasmbedv1.ConditionDegraded, false, wasmbedv1.ReasonAsExpected, ""),
		}}
	}
	unassigned := c.Unassigned - assigned
	updating := c.Updating + assigned
	settled := unassigned == 0 && updating == 0
	stopped := state == wasmbedv1.RunStateStopped
	var s Summary
	switch {
	case !stopped && c.Completed == c.Targets && c.Running == c.Targets:
		s.Phase = wasmbedv1.ApplicationPhaseRunning
	case stopped && c.Completed == c.Targets && c.Stopped == c.Targets:
		s.Phase = wasmbedv1.ApplicationPhaseStopped
	case c.Failing > 0 && c.Running == 0 && (settled || paused):
		s.Phase = wasmbedv1.ApplicationPhaseFailed
	case !stopped && c.Running > 0 && (settled || paused):
		s.Phase = wasmbedv1.ApplicationPhasePartiallyRunning
	default:
		s.Phase = wasmbedv1.ApplicationPhaseDeploying
	}

	var ready metav1.Condition
	switch s.Phase {
	case wasmbedv1.ApplicationPhaseRunning:
		ready = cond(wasmbedv1.ConditionReady, true, wasmbedv1.ReasonAllRunning, "running on all %d targets", c.Targets)
	case wasmbedv1.ApplicationPhaseStopped:
		ready = cond(wasmbedv1.ConditionReady, true, wasmbedv1.ReasonAllStopped, "stopped on all %d targets", c.Targets)
	default:
		ready = cond(wasmbedv1.ConditionReady, false, wasmbedv1.ReasonWaitingForDevices, "%d of %d targets have the current version, %d running, %d failing", c.Completed, c.Targets, c.Running, c.Failing)
	}
	var progressing, degraded metav1.Condition
	switch {
	case paused:
		progressing = cond(wasmbedv1.ConditionProgressing, false, wasmbedv1.ReasonRolloutPaused, "paused: the current version failed on %d of the %d targets it was delivered to; resume or roll back", c.FailedCurrent, c.Delivered())
		degraded = cond(wasmbedv1.ConditionDegraded, true, wasmbedv1.ReasonRolloutPaused, "the failure threshold paused the rollout: %d of %d deliveries failed", c.FailedCurrent, c.Delivered())
	case !settled:
		progressing = cond(wasmbedv1.ConditionProgressing, true, wasmbedv1.ReasonRolloutInProgress, "%d of %d targets have the current version, %d updating", c.Completed, c.Targets, updating)
	default:
		progressing = cond(wasmbedv1.ConditionProgressing, false, wasmbedv1.ReasonRolloutComplete, "the current version was delivered to all %d targets", c.Targets)
	}
	if !paused {
		if c.Failing > 0 {
			degraded = cond(wasmbedv1.ConditionDegraded, true, wasmbedv1.ReasonDevicesFailing, "%d of %d targets report a failure", c.Failing, c.Targets)
		} else {
			degraded = cond(wasmbedv1.ConditionDegraded, false, wasmbedv1.ReasonAsExpected, "")
		}
	}
	s.Conditions = []metav1.Condition{ready, progressing, degraded}
	return s
}

// Refused returns the phase and conditions of an application whose module
// is refused for every board, or whose spec cannot be rolled out: nothing
// is delivered.
func Refused(reason, message string) Summary {
	return Summary{Phase: wasmbedv1.ApplicationPhaseFailed, Conditions: []metav1.Condition{
		cond(wasmbedv1.ConditionReady, false, reason, "%s", message),
		cond(wasmbedv1.ConditionProgressing, false, reason, "%s", message),
		cond(wasmbedv1.ConditionDegraded, true, reason, "%s", message),
	}}
}
