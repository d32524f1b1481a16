package rollout

import (
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const rev = "rev-2"

// dapp builds a DeviceApplication carrying revision r at sequence seq, whose
// status reports phase at installed sequence installed (observed seq).
func dapp(r string, seq int64, phase wasmbedv1.DeviceApplicationPhase, installed int64) *wasmbedv1.DeviceApplication {
	return &wasmbedv1.DeviceApplication{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{wasmbedv1.AnnotationRevision: r}},
		Spec:       wasmbedv1.DeviceApplicationSpec{Artifact: &wasmbedv1.DeviceArtifact{Sequence: seq}},
		Status:     wasmbedv1.DeviceApplicationStatus{Phase: phase, Sequence: installed, AttemptedSequence: seq},
	}
}

func TestClassify(t *testing.T) {
	stale := dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRefused, 10)
	stale.Status.AttemptedSequence = 10 // answers the previous artifact
	for _, tc := range []struct {
		name string
		da   *wasmbedv1.DeviceApplication
		want Outcome
	}{
		{"no DeviceApplication", nil, Unassigned},
		{"no artifact", &wasmbedv1.DeviceApplication{}, Unassigned},
		{"older revision running", dapp("rev-1", 10, wasmbedv1.DeviceApplicationPhaseRunning, 10), Unassigned},
		{"delivering", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseDelivering, 10), Updating},
		{"still reports the old version", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRunning, 10), Updating},
		{"running", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRunning, 20), Completed},
		{"installed", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseInstalled, 20), Completed},
		{"stopped", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseStopped, 20), Completed},
		{"refused, still on the old version", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRefused, 10), Failed},
		{"traps on the new version", dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseTrapped, 20), Failed},
		{"a refusal of the previous artifact", stale, Updating},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(tc.da, rev); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestResolveStrategy(t *testing.T) {
	i := func(v int) *intstr.IntOrString { x := intstr.FromInt32(int32(v)); return &x }
	s := func(v string) *intstr.IntOrString { x := intstr.FromString(v); return &x }
	th := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		in      wasmbedv1.RolloutStrategy
		targets int
		want    Strategy
	}{
		{wasmbedv1.RolloutStrategy{}, 10, Strategy{MaxUpdating: 3, FailureThreshold: 25}},
		{wasmbedv1.RolloutStrategy{MaxUpdating: s("10%"), FailureThreshold: th(0)}, 1000, Strategy{MaxUpdating: 100, FailureThreshold: 0}},
		{wasmbedv1.RolloutStrategy{MaxUpdating: s("1%")}, 3, Strategy{MaxUpdating: 1, FailureThreshold: 25}},
		{wasmbedv1.RolloutStrategy{MaxUpdating: i(5)}, 2, Strategy{MaxUpdating: 5, FailureThreshold: 25}},
		{wasmbedv1.RolloutStrategy{MaxUpdating: s("25%")}, 0, Strategy{MaxUpdating: 1, FailureThreshold: 25}},
	} {
		got, err := ResolveStrategy(tc.in, tc.targets)
		if err != nil || got != tc.want {
			t.Errorf("ResolveStrategy(%+v, %d): got %+v, %v; want %+v", tc.in, tc.targets, got, err, tc.want)
		}
	}
	if _, err := ResolveStrategy(wasmbedv1.RolloutStrategy{FailureThreshold: th(101)}, 1); err == nil {
		t.Error("threshold 101: got nil error")
	}
}

func targets(n int, mk func(i int) (*wasmbedv1.DeviceApplication, bool)) []Target {
	out := make([]Target, n)
	for i := range n {
		da, online := mk(i)
		out[i] = Target{Device: fmt.Sprintf("d%03d", i), Online: online, App: da}
	}
	return out
}

func TestPlanBatches(t *testing.T) {
	for _, tc := range []struct {
		name    string
		targets []Target
		max     int
		want    []string
	}{
		{"first batch", targets(10, func(int) (*wasmbedv1.DeviceApplication, bool) { return nil, true }), 3, []string{"d000", "d001", "d002"}},
		{"slots held by updating devices", targets(10, func(i int) (*wasmbedv1.DeviceApplication, bool) {
			if i < 2 {
				return dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseDelivering, 10), true
			}
			return dapp("rev-1", 10, wasmbedv1.DeviceApplicationPhaseRunning, 10), true
		}), 3, []string{"d002"}},
		{"completed devices free their slots", targets(6, func(i int) (*wasmbedv1.DeviceApplication, bool) {
			if i < 3 {
				return dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRunning, 20), true
			}
			return nil, true
		}), 3, []string{"d003", "d004", "d005"}},
		{"offline devices wait and hold no slot", targets(6, func(i int) (*wasmbedv1.DeviceApplication, bool) {
			if i < 2 {
				return dapp(rev, 20, wasmbedv1.DeviceApplicationPhasePending, 0), false
			}
			return nil, i != 2
		}), 2, []string{"d003", "d004"}},
		{"all done", targets(3, func(int) (*wasmbedv1.DeviceApplication, bool) {
			return dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRunning, 20), true
		}), 3, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Plan(Input{Revision: rev, Strategy: Strategy{MaxUpdating: tc.max, FailureThreshold: 25}, Now: t0, Targets: tc.targets})
			if !slices.Equal(res.Assign, tc.want) {
				t.Errorf("got assign %v, want %v", res.Assign, tc.want)
			}
			if res.Paused || res.Rollout.Paused {
				t.Error("paused without failures")
			}
		})
	}
}

// fleet returns n targets of which the first failed ones failed on the
// current version, the next ok ones completed it, and the rest are not yet
// assigned.
func fleet(n, failed, ok int) []Target {
	return targets(n, func(i int) (*wasmbedv1.DeviceApplication, bool) {
		switch {
		case i < failed:
			return dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRefused, 10), true
		case i < failed+ok:
			return dapp(rev, 20, wasmbedv1.DeviceApplicationPhaseRunning, 20), true
		}
		return dapp("rev-1", 10, wasmbedv1.DeviceApplicationPhaseRunning, 10), true
	})
}

func TestPlanFailureThreshold(t *testing.T) {
	for _, tc := range []struct {
		name       string
		threshold  int32
		failed, ok int
		wantPause  bool
	}{
		{"below the threshold", 25, 1, 5, false},
		{"at the threshold", 25, 1, 3, false},
		{"above the threshold", 25, 2, 3, true},
		{"zero pauses at the first failure", 0, 1, 9, true},
		{"zero without failures", 0, 0, 9, false},
		{"100 never pauses", 100, 5, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Plan(Input{Revision: rev, Strategy: Strategy{MaxUpdating: 5, FailureThreshold: tc.threshold}, Now: t0, Targets: fleet(20, tc.failed, tc.ok)})
			if res.Paused != tc.wantPause || res.Rollout.Paused != tc.wantPause {
				t.Fatalf("got paused %t (stored %t), want %t", res.Paused, res.Rollout.Paused, tc.wantPause)
			}
			if tc.wantPause {
				if len(res.Assign) != 0 {
					t.Errorf("a paused rollout assigned %v", res.Assign)
				}
				if res.Rollout.PausedAt == nil || !res.Rollout.PausedAt.Time.Equal(t0) {
					t.Errorf("got pausedAt %v, want %v", res.Rollout.PausedAt, t0)
				}
			} else if tc.failed+tc.ok < 20 && len(res.Assign) == 0 {
				t.Error("a running rollout assigned nothing")
			}
		})
	}
}

func TestPlanPauseAndResume(t *testing.T) {
	tg := fleet(20, 3, 2)
	paused := wasmbedv1.RolloutStatus{Paused: true, PausedAt: &metav1.Time{Time: t0}}
	in := Input{Revision: rev, Strategy: Strategy{MaxUpdating: 5, FailureThreshold: 25}, Rollout: paused, Now: t0.Add(time.Hour), Targets: tg}

	// Stays paused without a resume, or with one older than the pause.
	for _, req := range []time.Time{{}, t0.Add(-time.Minute), t0} {
		in.ResumeRequest = req
		if res := Plan(in); !res.Rollout.Paused || res.Resumed || len(res.Assign) != 0 {
			t.Fatalf("resume request %v: got paused %t, resumed %t, assign %v; want still paused", req, res.Rollout.Paused, res.Resumed, res.Assign)
		}
	}
	// A later request resumes, records the baselines and assigns again.
	in.ResumeRequest = t0.Add(time.Minute)
	res := Plan(in)
	if res.Rollout.Paused || !res.Resumed {
		t.Fatalf("got paused %t resumed %t, want resumed", res.Rollout.Paused, res.Resumed)
	}
	if res.Rollout.FailedBaseline != 3 || res.Rollout.DeliveredBaseline != 5 {
		t.Errorf("got baselines failed %d delivered %d, want 3 and 5", res.Rollout.FailedBaseline, res.Rollout.DeliveredBaseline)
	}
	if len(res.Assign) != 5 {
		t.Errorf("got %d assigned after resume, want 5", len(res.Assign))
	}
	// The same request is not honoured twice, even after a pause that
	// (stored to the second) looks no later than it.
	again := in
	again.Rollout = res.Rollout
	again.Rollout.Paused, again.Rollout.PausedAt = true, &metav1.Time{Time: t0}
	if r := Plan(again); r.Resumed || !r.Rollout.Paused {
		t.Fatal("one resume request resumed two pauses")
	}
	// The old failures alone do not pause it again ...
	in.Rollout, in.ResumeRequest = res.Rollout, time.Time{}
	if again := Plan(in); again.Rollout.Paused {
		t.Fatal("paused again by the failures counted before the resume")
	}
	// ... new ones above the threshold do.
	in.Targets = fleet(20, 6, 2)
	if again := Plan(in); !again.Paused {
		t.Fatal("3 new failures of 3 new deliveries did not pause")
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name      string
		state     wasmbedv1.RunState
		c         Counts
		assigned  int
		paused    bool
		want      wasmbedv1.ApplicationPhase
		wantReady bool
	}{
		{"no targets", wasmbedv1.RunStateRunning, Counts{}, 0, false, wasmbedv1.ApplicationPhasePending, false},
		{"starting", wasmbedv1.RunStateRunning, Counts{Targets: 3, Unassigned: 3}, 3, false, wasmbedv1.ApplicationPhaseDeploying, false},
		{"all running", wasmbedv1.RunStateRunning, Counts{Targets: 3, Completed: 3, Running: 3}, 0, false, wasmbedv1.ApplicationPhaseRunning, true},
		{"all stopped", wasmbedv1.RunStateStopped, Counts{Targets: 3, Completed: 3, Stopped: 3}, 0, false, wasmbedv1.ApplicationPhaseStopped, true},
		{"some failed, rest running", wasmbedv1.RunStateRunning, Counts{Targets: 3, Completed: 2, Running: 2, FailedCurrent: 1, Failing: 1}, 0, false, wasmbedv1.ApplicationPhasePartiallyRunning, false},
		{"all failed", wasmbedv1.RunStateRunning, Counts{Targets: 2, FailedCurrent: 2, Failing: 2}, 0, false, wasmbedv1.ApplicationPhaseFailed, false},
		{"paused with old versions running", wasmbedv1.RunStateRunning, Counts{Targets: 4, Unassigned: 2, FailedCurrent: 2, Failing: 2, Running: 2}, 0, true, wasmbedv1.ApplicationPhasePartiallyRunning, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Summarize(tc.state, tc.c, tc.assigned, tc.paused)
			if s.Phase != tc.want {
				t.Errorf("got phase %s, want %s", s.Phase, tc.want)
			}
			ready := s.Conditions[0]
			if ready.Type != wasmbedv1.ConditionReady || (ready.Status == metav1.ConditionTrue) != tc.wantReady {
				t.Errorf("got %s=%s, want ready %t", ready.Type, ready.Status, tc.wantReady)
			}
			if deg := s.Conditions[2]; tc.paused && (deg.Status != metav1.ConditionTrue || deg.Reason != wasmbedv1.ReasonRolloutPaused) {
				t.Errorf("paused: got Degraded=%s %s, want True RolloutPaused", deg.Status, deg.Reason)
			}
		})
	}
}

// BenchmarkPlan measures one planning round over 1,000 targets, half of
// them updated.
func BenchmarkPlan(b *testing.B) {
	tg := fleet(1000, 0, 500)
	in := Input{Revision: rev, Strategy: Strategy{MaxUpdating: 250, FailureThreshold: 25}, Now: t0, Targets: tg}
	b.ReportAllocs()
	for b.Loop() {
		if res := Plan(in); len(res.Assign) != 250 {
			b.Fatalf("assigned %d", len(res.Assign))
		}
	}
}
