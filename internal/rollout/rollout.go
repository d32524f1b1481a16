// Package rollout decides, from what the devices report, how an application
// version advances across its targets: which devices receive it next within
// the maxUpdating budget, when the failure threshold pauses the rollout, when
// an operator's resume takes effect, and what the Application's status says.
// It is pure: the controller gathers the state, calls Plan, and carries out
// the result. Every decision derives from the stored objects alone, so a
// controller restarted in the middle of a rollout takes the same ones.
//
//	res := rollout.Plan(rollout.Input{Revision: rev, Strategy: s, Targets: devices, ...})
//	for _, d := range res.Assign { issue the current artifact to d }
//	app.Status = rollout.Summarize(...)
package rollout

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Strategy is a resolved rollout strategy.
type Strategy struct {
	// MaxUpdating is how many online targets may be updating at once (at
	// least 1).
	MaxUpdating int
	// FailureThreshold is the percentage of the devices given the current
	// version that may fail before the rollout pauses (0–100).
	FailureThreshold int32
}

// ResolveStrategy applies the defaults and scales a percentage of targets,
// rounding up.
func ResolveStrategy(s wasmbedv1.RolloutStrategy, targets int) (Strategy, error) {
	mu := intstr.FromString(wasmbedv1.DefaultMaxUpdating)
	if s.MaxUpdating != nil {
		mu = *s.MaxUpdating
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&mu, targets, true)
	if err != nil {
		return Strategy{}, fmt.Errorf("rollout: maxUpdating %s: %w", mu.String(), err)
	}
	ft := wasmbedv1.DefaultFailureThreshold
	if s.FailureThreshold != nil {
		ft = *s.FailureThreshold
	}
	if ft < 0 || ft > 100 {
		return Strategy{}, fmt.Errorf("rollout: failureThreshold %d outside 0..100", ft)
	}
	return Strategy{MaxUpdating: max(n, 1), FailureThreshold: ft}, nil
}

// Outcome is where the current version stands on one target.
type Outcome int

// Outcomes.
const (
	// Unassigned: the device's DeviceApplication does not carry the current
	// version (it has none, or an older one).
	Unassigned Outcome = iota
	// Updating: the current version is on its way or being installed.
	Updating
	// Completed: the device has the current version installed.
	Completed
	// Failed: the device refused the current version, fell back from it, or
	// it fails there.
	Failed
)

// String names the outcome.
func (o Outcome) String() string {
	return [...]string{"Unassigned", "Updating", "Completed", "Failed"}[o]
}

// Classify returns the outcome of revision on the device whose
// DeviceApplication is da (nil when there is none). A phase counts for the
// current version only when the status answers the current artifact: its
// attemptedSequence, or for a completion its installed sequence, is the
// spec's.
func Classify(da *wasmbedv1.DeviceApplication, revision string) Outcome {
	if da == nil || da.Spec.Artifact == nil || da.Annotations[wasmbedv1.AnnotationRevision] != revision {
		return Unassigned
	}
	st, seq := &da.Status, da.Spec.Artifact.Sequence
	switch {
	case st.Phase.Failed() && (st.AttemptedSequence == seq || st.Sequence == seq):
		return Failed
	case st.Sequence == seq && (st.Phase == wasmbedv1.DeviceApplicationPhaseRunning ||
		st.Phase == wasmbedv1.DeviceApplicationPhaseStopped || st.Phase == wasmbedv1.DeviceApplicationPhaseInstalled):
		return Completed
	}
	return Updating
}

// Target is one device the application is deployed to.
type Target struct {
	// Device is the Device's name.
	Device string
	// Online reports that a gateway holds the device's session: only
	// online devices are given a new version and hold a maxUpdating slot,
	// so devices that are away do not stall a rollout.
	Online bool
	// App is the device's DeviceApplication, or nil.
	App *wasmbedv1.DeviceApplication
}

// Input is what Plan decides from.
type Input struct {
	// Revision is the current version's revision.
	Revision string
	// Strategy is the resolved strategy.
	Strategy Strategy
	// Rollout is the stored rollout status of the current revision.
	Rollout wasmbedv1.RolloutStatus
	// ResumeRequest is the time in the resume annotation, or zero.
	ResumeRequest time.Time
	// Now is the current time.
	Now time.Time
	// Targets are the targets, in a stable order (by name).
	Targets []Target
}

// Counts are the targets by outcome and by what they report.
type Counts struct {
	Targets    int
	Unassigned int
	Updating   int
	// UpdatingOnline is the updating targets that hold a slot.
	UpdatingOnline int
	Completed      int
	// FailedCurrent is the targets on which the current version failed.
	FailedCurrent int
	// Failing is the targets that report a failure, of any version.
	Failing int
	// Running is the targets that run the application, any version.
	Running int
	// Stopped is the targets on which it is installed and not running.
	Stopped int
}

// Delivered is how many targets were given the current version.
func (c Counts) Delivered() int { return c.Updating + c.Completed + c.FailedCurrent }

// Result is what Plan decided.
type Result struct {
	// Assign lists the devices to give the current version now.
	Assign []string
	// Rollout is the rollout status to store.
	Rollout wasmbedv1.RolloutStatus
	// Paused and Resumed report a transition in this round.
	Paused, Resumed bool
	// Counts are the targets by outcome, before Assign.
	Counts Counts
	// Failing lists up to wasmbedv1.MaxFailingDevices failing targets.
	Failing []wasmbedv1.FailingDevice
}

// Plan decides the next step of a rollout.
func Plan(in Input) Result {
	res := Result{Rollout: *in.Rollout.DeepCopy()}
	c := &res.Counts
	c.Targets = len(in.Targets)
	for _, t := range in.Targets {
		o := Classify(t.App, in.Revision)
		switch o {
		case Unassigned:
			c.Unassigned++
		case Updating:
			c.Updating++
			if t.Online {
				c.UpdatingOnline++
			}
		case Completed:
			c.Completed++
		case Failed:
			c.FailedCurrent++
		}
		if t.App == nil {
			continue
		}
		switch st := t.App.Status; {
		case st.Phase.Failed():
			c.Failing++
			if len(res.Failing) < wasmbedv1.MaxFailingDevices {
				res.Failing = append(res.Failing, wasmbedv1.FailingDevice{Device: t.Device, Phase: st.Phase, Reason: st.Reason, Message: st.Message})
			}
		case st.Phase == wasmbedv1.DeviceApplicationPhaseRunning:
			c.Running++
		case st.Phase == wasmbedv1.DeviceApplicationPhaseStopped, st.Phase == wasmbedv1.DeviceApplicationPhaseInstalled:
			c.Stopped++
		}
	}

	ro := &res.Rollout
	delivered := c.Delivered()
	switch {
	case ro.Paused && resumes(in.ResumeRequest, ro):
		ro.Paused = false
		ro.ResumedAt = &metav1.Time{Time: in.ResumeRequest}
		ro.FailedBaseline = int32(c.FailedCurrent) //nolint:gosec // bounded by the target count
		ro.DeliveredBaseline = int32(delivered)    //nolint:gosec // bounded by the target count
		res.Resumed = true
	case !ro.Paused && exceeds(c.FailedCurrent-int(ro.FailedBaseline), delivered-int(ro.DeliveredBaseline), in.Strategy.FailureThreshold):
		ro.Paused = true
		ro.PausedAt = &metav1.Time{Time: in.Now}
		res.Paused = true
	}
	if ro.Paused {
		return res
	}
	slots := in.Strategy.MaxUpdating - c.UpdatingOnline
	for _, t := range in.Targets {
		if slots <= 0 {
			break
		}
		if t.Online && Classify(t.App, in.Revision) == Unassigned {
			res.Assign = append(res.Assign, t.Device)
			slots--
		}
	}
	return res
}

// resumes reports whether a resume request applies to a paused rollout: it
// is later than the pause and than the last request honoured, so each
// request is honoured once.
func resumes(req time.Time, ro *wasmbedv1.RolloutStatus) bool {
	switch {
	case req.IsZero():
		return false
	case ro.PausedAt != nil && !req.After(ro.PausedAt.Time):
		return false
	case ro.ResumedAt != nil && !req.After(ro.ResumedAt.Time):
		return false
	}
	return true
}

// exceeds reports whether failed of delivered is above threshold percent.
func exceeds(failed, delivered int, threshold int32) bool {
	if threshold >= 100 || delivered <= 0 || failed <= 0 {
		return false
	}
	return int64(failed)*100 > int64(threshold)*int64(delivered)
}
