package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// waitInterval is how often --wait reads the Application and its devices.
var waitInterval = 500 * time.Millisecond

// RolloutFailedError reports a rollout that --wait saw fail or pause.
type RolloutFailedError struct {
	// Application is "namespace/name".
	Application string
	// Reason and Message are the Degraded condition's.
	Reason, Message string
}

func (e *RolloutFailedError) Error() string {
	return fmt.Sprintf("application %s: rollout failed (%s): %s", e.Application, e.Reason, e.Message)
}

// WaitTimeoutError reports a --wait that gave up.
type WaitTimeoutError struct {
	// What was waited for.
	What string
	// After is the --wait-timeout.
	After time.Duration
	// State says where things stood.
	State string
}

func (e *WaitTimeoutError) Error() string {
	return fmt.Sprintf("timed out after %v waiting for %s (%s)", e.After, e.What, e.State)
}

// waitRollout follows the rollout of the generation of app just written
// until it completes (the desired run state on every target), fails or
// pauses, or timeout passes. It writes a line whenever the count of devices
// running changes, and one per device failure as it is seen. It returns the
// Application as last read.
func waitRollout(ctx context.Context, c client.Client, app *wasmbedv1.Application, out io.Writer, timeout time.Duration) (*wasmbedv1.Application, error) {
	// The reads use ctx, not a context with the wait's deadline: the
	// client's rate limiter refuses a request that might outlast a
	// deadline, with an error that would hide the timeout.
	deadline := time.Now().Add(timeout)
	key := client.ObjectKeyFromObject(app)
	what := "application " + key.String() + " to roll out"
	generation := app.Generation
	stopped := app.Spec.State == wasmbedv1.RunStateStopped
	lastLine := ""
	reported := map[string]bool{}
	state := "the controller has not seen the change yet"
	tick := time.NewTicker(waitInterval)
	defer tick.Stop()
	for {
		cur := &wasmbedv1.Application{}
		if err := c.Get(ctx, key, cur); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
			}
			return nil, clusterError(err, "application "+key.String())
		}
		if cur.Status.ObservedGeneration >= generation {
			st := cur.Status
			done := st.RunningCount
			goal := "running"
			if stopped {
				goal = "stopped"
				done = stoppedCount(ctx, c, key)
			}
			state = fmt.Sprintf("%d/%d devices %s, %d updated, phase %s", done, st.TargetCount, goal, st.UpdatedCount, appPhase(cur))
			if state != lastLine {
				fmt.Fprintf(out, "  %s\n", state)
				lastLine = state
			}
			reportFailures(ctx, c, key, out, reported)
			switch {
			case !stopped && st.Phase == wasmbedv1.ApplicationPhaseRunning,
				stopped && st.Phase == wasmbedv1.ApplicationPhaseStopped:
				fmt.Fprintf(out, "application %s: %d/%d devices %s\n", key, done, st.TargetCount, goal)
				return cur, nil
			case st.Phase == wasmbedv1.ApplicationPhaseFailed, st.Rollout != nil && st.Rollout.Paused, settledDegraded(cur):
				d := degraded(cur)
				if d == nil {
					d = &metav1.Condition{Reason: string(st.Phase), Message: "the rollout failed"}
				}
				return cur, &RolloutFailedError{Application: key.String(), Reason: d.Reason, Message: d.Message}
			}
		}
		if err := sleepUntilNext(ctx, tick, deadline); err != nil {
			return nil, waitEnded(err, what, timeout, state)
		}
	}
}

// errWaitTimeout ends a wait whose deadline passed.
var errWaitTimeout = errors.New("wait timeout")

// sleepUntilNext waits for the next tick, or returns errWaitTimeout once
// deadline has passed, or ctx's error.
func sleepUntilNext(ctx context.Context, tick *time.Ticker, deadline time.Time) error {
	if !time.Now().Before(deadline) {
		return errWaitTimeout
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errWaitTimeout
	case <-tick.C:
		return nil
	}
}

// settledDegraded reports a rollout that delivered everything it will and
// left devices failing.
func settledDegraded(a *wasmbedv1.Application) bool {
	p := meta.FindStatusCondition(a.Status.Conditions, wasmbedv1.ConditionProgressing)
	return degraded(a) != nil && p != nil && p.Status == metav1.ConditionFalse
}

// waitEnded is the error of a wait that ended early: a timeout, or the
// caller's interruption.
func waitEnded(err error, what string, timeout time.Duration, state string) error {
	if errors.Is(err, errWaitTimeout) {
		return &WaitTimeoutError{What: what, After: timeout, State: state}
	}
	return fmt.Errorf("waiting for %s: %w", what, err)
}

// stoppedCount counts the application's devices that report it stopped.
func stoppedCount(ctx context.Context, c client.Client, key types.NamespacedName) int32 {
	var list wasmbedv1.DeviceApplicationList
	if err := c.List(ctx, &list, client.InNamespace(key.Namespace),
		client.MatchingLabels{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(key.Name)}); err != nil {
		return 0
	}
	var n int32
	for _, d := range list.Items {
		if d.Spec.Application == key.Name && d.Status.Phase == wasmbedv1.DeviceApplicationPhaseStopped {
			n++
		}
	}
	return n
}

// reportFailures writes one line per device failure not reported yet.
func reportFailures(ctx context.Context, c client.Client, key types.NamespacedName, out io.Writer, reported map[string]bool) {
	var list wasmbedv1.DeviceApplicationList
	if err := c.List(ctx, &list, client.InNamespace(key.Namespace),
		client.MatchingLabels{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(key.Name)}); err != nil {
		return
	}
	for _, d := range list.Items {
		st := d.Status
		if d.Spec.Application != key.Name || !st.Phase.Failed() {
			continue
		}
		id := fmt.Sprintf("%s\x00%s\x00%d", d.Spec.Device, st.Phase, st.AttemptedSequence)
		if reported[id] {
			continue
		}
		reported[id] = true
		line := fmt.Sprintf("  ✗ %s: %s", d.Spec.Device, st.Phase)
		if st.Reason != "" {
			line += " " + st.Reason
		}
		if st.Message != "" {
			line += ": " + oneLine(st.Message)
		}
		fmt.Fprintln(out, line)
	}
}

// waitGone waits until the Application key no longer exists.
func waitGone(ctx context.Context, c client.Client, key types.NamespacedName, out io.Writer, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	what := "application " + key.String() + " to be removed"
	tick := time.NewTicker(waitInterval)
	defer tick.Stop()
	for {
		err := c.Get(ctx, key, &wasmbedv1.Application{})
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(out, "application %s removed from every device\n", key)
			return nil
		case err != nil && ctx.Err() == nil:
			return clusterError(err, "application "+key.String())
		}
		if err := sleepUntilNext(ctx, tick, deadline); err != nil {
			return waitEnded(err, what, timeout, "devices are still removing it")
		}
	}
}
