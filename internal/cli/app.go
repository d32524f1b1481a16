package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

// Bounds of --wait-timeout.
const (
	defaultWaitTimeout = 5 * time.Minute
	maxWaitTimeout     = 24 * time.Hour
)

func newAppCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "app",
		Short: "Deploy and operate WebAssembly applications",
		Long: `App deploys WebAssembly applications to devices and operates them: list,
status per device, start, stop, delete, and resume or undo a rollout.

Every subcommand works against the cluster of --kubeconfig, else $KUBECONFIG,
else the embedded control plane of the data directory (` + "`wasmbed up`" + `).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newAppDeployCommand(), newAppListCommand(), newAppStatusCommand(),
		newAppRunStateCommand(wasmbedv1.RunStateRunning), newAppRunStateCommand(wasmbedv1.RunStateStopped),
		newAppDeleteCommand(), newAppRolloutCommand())
	return cmd
}

// waitOptions are the flags of a command that can wait for the rollout it
// caused.
type waitOptions struct {
	wait    bool
	timeout time.Duration
}

func addWaitFlags(cmd *cobra.Command, what string) *waitOptions {
	o := &waitOptions{}
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until "+what+", showing progress; fail if the rollout fails or pauses")
	cmd.Flags().DurationVar(&o.timeout, "wait-timeout", defaultWaitTimeout, "give up waiting after this long (at most 24h)")
	return o
}

func (o *waitOptions) check() error {
	if o.timeout <= 0 || o.timeout > maxWaitTimeout {
		return usagef("--wait-timeout %v: want more than 0s and at most %v", o.timeout, maxWaitTimeout)
	}
	return nil
}

// appDeployOptions are the flags of `wasmbed app deploy`.
type appDeployOptions struct {
	name         string
	version      string
	devices      []string
	selector     string
	memoryLimit  string
	timeout      string
	stack        string
	confidential bool
	stopped      bool
}

func newAppDeployCommand() *cobra.Command {
	opts := &appDeployOptions{}
	var co *clusterOptions
	var wo *waitOptions
	cmd := &cobra.Command{
		Use:   "deploy FILE.wasm --name NAME (--device DEVICE ... | --selector LABELS)",
		Short: "Deploy a WebAssembly module as an application",
		Long: `Deploy creates the Application NAME from a WebAssembly module, to run on the
devices named with --device (repeatable) and those whose labels match
--selector (a Kubernetes label selector such as
wasmbed.github.io/device-type=esp32). When NAME exists, deploy replaces its
module, version, limits and targets: the controller rolls the new version
out, and ` + "`wasmbed app rollout undo NAME`" + ` goes back to the one it replaced.

--memory-limit and --stack take bytes or a quantity (64Ki, 1Mi); --timeout
bounds each call into the module (500ms, 30s). --confidential seals the
module to the key the controller publishes, so that it stays ciphertext
through the gateways and in the cluster.

With --wait, deploy follows the rollout: a line whenever the number of devices
running changes, and one per device that fails, with its reason. It exits 0
once the application runs on every target, 1 if the rollout fails or pauses
(the Degraded condition) or --wait-timeout passes.`,
		Example: `  wasmbed app deploy blinky.wasm --name blinky --selector wasmbed.github.io/device-type=esp32 --wait
  wasmbed app deploy sensor.wasm --name sensor --device esp32-0 --device esp32-1 --memory-limit 128Ki --timeout 50ms`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want one argument, the module file; got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAppDeploy(cmd, args[0], opts, co, wo)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.name, "name", "", "application name, a DNS label (required)")
	f.StringVar(&opts.version, "version", "", "version label of the module")
	f.StringArrayVar(&opts.devices, "device", nil, "device to run on, repeatable")
	f.StringVar(&opts.selector, "selector", "", "label selector of the devices to run on, e.g. wasmbed.github.io/device-type=esp32")
	f.StringVar(&opts.memoryLimit, "memory-limit", "", "linear memory limit in bytes or a quantity such as 64Ki (default: the board's)")
	f.StringVar(&opts.timeout, "timeout", "", "execution timeout of each call, e.g. 100ms (default: the board's)")
	f.StringVar(&opts.stack, "stack", "", "call stack limit in bytes or a quantity such as 8Ki (default: the board's)")
	f.BoolVar(&opts.confidential, "confidential", false, "seal the module so that only devices can read it")
	f.BoolVar(&opts.stopped, "stopped", false, "install without starting")
	_ = cmd.MarkFlagRequired("name")
	co = addClusterFlags(cmd, true)
	wo = addWaitFlags(cmd, "the application runs on every target")
	return cmd
}

// deployFlags names the flag of each field of a deploy, for error messages.
var deployFlags = map[string]string{
	"name": "--name", "version": "--version", "module": "the module", "targetDevices": "--device",
	"selector": "--selector", "config.memoryLimit": "--memory-limit", "config.executionTimeout": "--timeout",
	"config.maxStackSize": "--stack",
}

// flagInvalid rewrites the fields of an invalid deploy as the flags that set
// them.
func flagInvalid(errs []fleetctl.FieldError) error {
	for i, e := range errs {
		name := e.Field
		if before, _, ok := strings.Cut(name, "["); ok {
			name = before
		}
		if strings.HasPrefix(name, "selector") {
			name = "selector"
		}
		if flag, ok := deployFlags[name]; ok {
			errs[i].Field = flag
		}
	}
	return &fleetctl.InvalidError{What: "deploy", Fields: errs}
}

// byteSize parses bytes or a quantity (64Ki, 1Mi) as a whole number.
func byteSize(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, usagef("%s %q: want bytes or a quantity such as 64Ki or 1Mi", flag, s)
	}
	n, ok := q.AsInt64()
	if !ok || n < 0 {
		return 0, usagef("%s %q: want a whole, non-negative number of bytes", flag, s)
	}
	return n, nil
}

// ModuleTooLargeError reports a module file larger than a deploy accepts.
type ModuleTooLargeError struct {
	// Path is the module file.
	Path string
	// Size is its size in bytes.
	Size int64
}

func (e *ModuleTooLargeError) Error() string {
	return fmt.Sprintf("%s is %d bytes, more than the %d bytes a module may have", e.Path, e.Size, fleetctl.MaxModuleSize)
}

// readModule reads a module file of at most fleetctl.MaxModuleSize bytes.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // the user names the module to deploy
	if err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, fleetctl.MaxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("module: %w", err)
	}
	if len(b) > fleetctl.MaxModuleSize {
		size := int64(len(b))
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		return nil, &usageError{err: &ModuleTooLargeError{Path: path, Size: size}}
	}
	return b, nil
}

// deploy turns the flags into fleetctl's deploy, checked.
func (opts *appDeployOptions) deploy(module []byte) (*fleetctl.Deploy, error) {
	d := &fleetctl.Deploy{Name: opts.name, Version: opts.version, Module: module, TargetDevices: opts.devices}
	if opts.selector != "" {
		sel, err := metav1.ParseToLabelSelector(opts.selector)
		if err != nil {
			return nil, usagef("--selector %q: %v", opts.selector, err)
		}
		d.Selector = sel
	}
	cfg := wasmbedv1.ApplicationConfig{ExecutionTimeout: opts.timeout}
	var err error
	if cfg.MemoryLimit, err = byteSize("--memory-limit", opts.memoryLimit); err != nil {
		return nil, err
	}
	if cfg.MaxStackSize, err = byteSize("--stack", opts.stack); err != nil {
		return nil, err
	}
	if cfg != (wasmbedv1.ApplicationConfig{}) {
		d.Config = &cfg
	}
	if opts.stopped {
		d.State = wasmbedv1.RunStateStopped
	}
	if errs := d.Validate(); len(errs) > 0 {
		return nil, flagInvalid(errs)
	}
	return d, nil
}

func runAppDeploy(cmd *cobra.Command, path string, opts *appDeployOptions, co *clusterOptions, wo *waitOptions) error {
	if err := wo.check(); err != nil {
		return err
	}
	if err := co.check(); err != nil {
		return err
	}
	module, err := readModule(path)
	if err != nil {
		return err
	}
	d, err := opts.deploy(module)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, err := co.client()
	if err != nil {
		return err
	}
	d.CreatedBy = co.userName()
	app := d.Application(co.namespace)
	what := "application " + co.namespace + "/" + opts.name
	if opts.confidential {
		if err := fleetctl.Seal(ctx, c, co.systemNamespace, app, module); err != nil {
			return clusterError(err, "the issuer key")
		}
	}
	created, err := fleetctl.Apply(ctx, c, app)
	if err != nil {
		return clusterError(err, what)
	}
	progress := progressWriter(cmd, co)
	verb := "created"
	if !created {
		verb = "updated: rolling out the new version"
	}
	fmt.Fprintf(progress, "%s %s\n", what, verb)
	if wo.wait {
		if app, err = waitRollout(ctx, c, app, progress, wo.timeout); err != nil {
			return err
		}
	}
	if co.scripted() {
		return co.print(cmd.OutOrStdout(), printable(app, "Application"), nil)
	}
	return nil
}

// progressWriter is where a command reports progress: stdout for people,
// stderr when stdout is JSON or YAML.
func progressWriter(cmd *cobra.Command, co *clusterOptions) io.Writer {
	if co.scripted() {
		return cmd.ErrOrStderr()
	}
	return cmd.OutOrStdout()
}

// printable returns a copy of obj for printing: with the apiVersion and
// kind that the client leaves out, without the managed fields.
func printable[T client.Object](obj T, kind string) T {
	out := obj.DeepCopyObject().(T) //nolint:forcetypeassert // DeepCopyObject keeps the type
	out.GetObjectKind().SetGroupVersionKind(wasmbedv1.GroupVersion.WithKind(kind))
	out.SetManagedFields(nil)
	return out
}

// appList is the Applications as an ApplicationList, for printing.
func appList(items []wasmbedv1.Application) *wasmbedv1.ApplicationList {
	l := &wasmbedv1.ApplicationList{Items: make([]wasmbedv1.Application, len(items))}
	l.APIVersion, l.Kind = wasmbedv1.GroupVersion.String(), "ApplicationList"
	for i := range items {
		l.Items[i] = *printable(&items[i], "Application")
	}
	return l
}

func newAppListCommand() *cobra.Command {
	var co *clusterOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the applications of the namespace",
		Long: `List prints the Applications of the namespace: version, desired state, phase,
devices running out of targets, failing devices and age. -o json or yaml
prints the ApplicationList, as Kubernetes stores it.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			var list wasmbedv1.ApplicationList
			if err := c.List(cmd.Context(), &list, client.InNamespace(co.namespace)); err != nil {
				return clusterError(err, "applications")
			}
			slices.SortFunc(list.Items, func(a, b wasmbedv1.Application) int { return strings.Compare(a.Name, b.Name) })
			if len(list.Items) == 0 && !co.scripted() {
				fmt.Fprintf(cmd.OutOrStdout(), "No applications in namespace %s.\n", co.namespace)
				return nil
			}
			now := time.Now()
			return co.print(cmd.OutOrStdout(), appList(list.Items), func(w io.Writer) {
				fmt.Fprintln(w, "NAME\tVERSION\tSTATE\tPHASE\tRUNNING\tFAILED\tAGE")
				for i := range list.Items {
					a := &list.Items[i]
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", a.Name, orDash(a.Spec.Version), runState(a),
						appPhase(a), a.Status.RunningCount, a.Status.TargetCount, a.Status.FailedCount, age(now, &a.CreationTimestamp.Time))
				}
			})
		},
	}
	co = addClusterFlags(cmd, true)
	return cmd
}

func runState(a *wasmbedv1.Application) wasmbedv1.RunState {
	if a.Spec.State == "" {
		return wasmbedv1.RunStateRunning
	}
	return a.Spec.State
}

func appPhase(a *wasmbedv1.Application) string {
	p := string(a.Status.Phase)
	if p == "" {
		p = string(wasmbedv1.ApplicationPhasePending)
	}
	if ro := a.Status.Rollout; ro != nil && ro.Paused {
		p += ",Paused"
	}
	return p
}

// AppStatus is what `wasmbed app status -o json|yaml` prints: a stable view
// of an Application and its devices, one entry per DeviceApplication.
type AppStatus struct {
	// Namespace and Name name the Application.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Version is the version being rolled out.
	Version string `json:"version,omitempty"`
	// State is the desired run state, running or stopped.
	State wasmbedv1.RunState `json:"state"`
	// Phase is the Application's phase.
	Phase wasmbedv1.ApplicationPhase `json:"phase"`
	// Confidential is true for a sealed module.
	Confidential bool `json:"confidential,omitempty"`
	// Targets, Updated, Running and Failed count the targeted devices,
	// those with the current version, those running it, and those failing.
	Targets int32 `json:"targets"`
	Updated int32 `json:"updated"`
	Running int32 `json:"running"`
	Failed  int32 `json:"failed"`
	// Untargeted counts the devices selected but not targeted (wrong
	// board, missing capability, ...).
	Untargeted int32 `json:"untargeted,omitempty"`
	// Paused is true while the failure threshold holds the rollout.
	Paused bool `json:"paused,omitempty"`
	// PreviousVersion is the version an undo goes back to.
	PreviousVersion string `json:"previousVersion,omitempty"`
	// Conditions are the Application's conditions.
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Devices are the per-device states, sorted by device.
	Devices []DeviceAppStatus `json:"devices"`
}

// DeviceAppStatus is one device's state of an application.
type DeviceAppStatus struct {
	// Device names the Device.
	Device string `json:"device"`
	// Phase is the DeviceApplication's phase.
	Phase wasmbedv1.DeviceApplicationPhase `json:"phase"`
	// Version is the version the device runs (or last tried).
	Version string `json:"version,omitempty"`
	// Gateway is the replica that last reported it.
	Gateway string `json:"gateway,omitempty"`
	// Since is when the phase last changed.
	Since *metav1.Time `json:"since,omitempty"`
	// Reason and Message explain a failure.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// deviceApps lists the DeviceApplications of an application, by label and
// checked by spec.application, sorted by device.
func deviceApps(cmd *cobra.Command, c client.Client, key types.NamespacedName) ([]wasmbedv1.DeviceApplication, error) {
	var list wasmbedv1.DeviceApplicationList
	if err := c.List(cmd.Context(), &list, client.InNamespace(key.Namespace),
		client.MatchingLabels{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(key.Name)}); err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(list.Items, func(d wasmbedv1.DeviceApplication) bool { return d.Spec.Application != key.Name })
	slices.SortFunc(out, func(a, b wasmbedv1.DeviceApplication) int { return strings.Compare(a.Spec.Device, b.Spec.Device) })
	return out, nil
}

func appStatus(a *wasmbedv1.Application, das []wasmbedv1.DeviceApplication) *AppStatus {
	s := &AppStatus{
		Namespace: a.Namespace, Name: a.Name, Version: a.Spec.Version, State: runState(a),
		Phase: a.Status.Phase, Confidential: a.Spec.Confidential,
		Targets: a.Status.TargetCount, Updated: a.Status.UpdatedCount, Running: a.Status.RunningCount,
		Failed: a.Status.FailedCount, Untargeted: a.Status.UntargetedCount, Conditions: a.Status.Conditions,
		Devices: make([]DeviceAppStatus, 0, len(das)),
	}
	if s.Phase == "" {
		s.Phase = wasmbedv1.ApplicationPhasePending
	}
	if ro := a.Status.Rollout; ro != nil {
		s.Paused = ro.Paused
		if ro.Previous != nil {
			s.PreviousVersion = orDash(ro.Previous.Version)
		}
	}
	for _, d := range das {
		p := d.Status.Phase
		if p == "" {
			p = wasmbedv1.DeviceApplicationPhasePending
		}
		s.Devices = append(s.Devices, DeviceAppStatus{
			Device: d.Spec.Device, Phase: p, Version: d.Status.Version, Gateway: d.Status.Gateway,
			Since: d.Status.LastTransitionTime, Reason: d.Status.Reason, Message: d.Status.Message,
		})
	}
	return s
}

func newAppStatusCommand() *cobra.Command {
	var co *clusterOptions
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show an application's rollout and its state on each device",
		Long: `Status prints an application's phase, counts and conditions, then one line per
targeted device (from its DeviceApplication): phase, version, gateway, time in
the phase and, for a failure, its reason and message. -o json or yaml prints
the same as a stable view (AppStatus in docs/cli.md), not the objects.`,
		Args: nameArg("application"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := co.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: co.namespace, Name: args[0]}
			app := &wasmbedv1.Application{}
			if err := c.Get(cmd.Context(), key, app); err != nil {
				return clusterError(err, "application "+key.String())
			}
			das, err := deviceApps(cmd, c, key)
			if err != nil {
				return clusterError(err, "the devices of application "+key.String())
			}
			s := appStatus(app, das)
			return co.print(cmd.OutOrStdout(), s, func(w io.Writer) { printAppStatus(w, s, time.Now()) })
		},
	}
	co = addClusterFlags(cmd, true)
	return cmd
}

func printAppStatus(w io.Writer, s *AppStatus, now time.Time) {
	fmt.Fprintf(w, "Application:\t%s/%s\n", s.Namespace, s.Name)
	version := orDash(s.Version)
	if s.Confidential {
		version += " (confidential)"
	}
	fmt.Fprintf(w, "Version:\t%s\n", version)
	fmt.Fprintf(w, "State:\t%s\n", s.State)
	phase := string(s.Phase)
	if s.Paused {
		phase += ", rollout paused (resume or undo)"
	}
	fmt.Fprintf(w, "Phase:\t%s\n", phase)
	fmt.Fprintf(w, "Devices:\t%d targeted, %d updated, %d running, %d failed", s.Targets, s.Updated, s.Running, s.Failed)
	if s.Untargeted > 0 {
		fmt.Fprintf(w, ", %d selected but not targeted", s.Untargeted)
	}
	fmt.Fprintln(w)
	if s.PreviousVersion != "" {
		fmt.Fprintf(w, "Previous:\t%s (undo goes back to it)\n", s.PreviousVersion)
	}
	for _, c := range s.Conditions {
		if c.Message != "" {
			fmt.Fprintf(w, "%s:\t%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
		} else {
			fmt.Fprintf(w, "%s:\t%s %s\n", c.Type, c.Status, c.Reason)
		}
	}
	fmt.Fprintln(w)
	if len(s.Devices) == 0 {
		fmt.Fprintln(w, "No devices.")
		return
	}
	fmt.Fprintln(w, "DEVICE\tPHASE\tVERSION\tGATEWAY\tSINCE\tREASON\tMESSAGE")
	for _, d := range s.Devices {
		var since *time.Time
		if d.Since != nil {
			since = &d.Since.Time
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Device, d.Phase, orDash(d.Version), orDash(d.Gateway),
			age(now, since), orDash(d.Reason), orDash(oneLine(d.Message)))
	}
}

// oneLine keeps a message on one table line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func newAppRunStateCommand(state wasmbedv1.RunState) *cobra.Command {
	use, short, verb := "start", "Start an application on all its devices", "starting"
	goal := "the application runs on every target"
	if state == wasmbedv1.RunStateStopped {
		use, short, verb = "stop", "Stop an application on all its devices", "stopping"
		goal = "the application is stopped on every target"
	}
	var co *clusterOptions
	var wo *waitOptions
	cmd := &cobra.Command{
		Use:   use + " NAME",
		Short: short,
		Long: short + ` (the Application's spec.state): the module stays installed.
With --wait, follow the devices until ` + goal + `.`,
		Args: nameArg("application"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := wo.check(); err != nil {
				return err
			}
			c, err := co.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: co.namespace, Name: args[0]}
			app, err := fleetctl.SetRunState(cmd.Context(), c, key, state)
			if err != nil {
				return clusterError(err, "application "+key.String())
			}
			return finishAppAction(cmd, c, co, wo, app, fmt.Sprintf("application %s %s", key, verb))
		},
	}
	co = addClusterFlags(cmd, true)
	wo = addWaitFlags(cmd, goal)
	return cmd
}

// finishAppAction reports an action on app, waits when asked to, and prints
// the Application for -o json|yaml.
func finishAppAction(cmd *cobra.Command, c client.Client, co *clusterOptions, wo *waitOptions, app *wasmbedv1.Application, line string) error {
	progress := progressWriter(cmd, co)
	fmt.Fprintln(progress, line)
	if wo != nil && wo.wait {
		var err error
		if app, err = waitRollout(cmd.Context(), c, app, progress, wo.timeout); err != nil {
			return err
		}
	}
	if co.scripted() {
		return co.print(cmd.OutOrStdout(), printable(app, "Application"), nil)
	}
	return nil
}

func newAppDeleteCommand() *cobra.Command {
	var co *clusterOptions
	var wo *waitOptions
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an application; each device removes it",
		Long: `Delete deletes the Application; Kubernetes then deletes its DeviceApplications
and each device removes the module. With --wait, wait until the devices have
removed it and the Application is gone.`,
		Args: nameArg("application"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := wo.check(); err != nil {
				return err
			}
			c, err := co.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: co.namespace, Name: args[0]}
			what := "application " + key.String()
			if err := fleetctl.DeleteApplication(cmd.Context(), c, key); err != nil {
				return clusterError(err, what)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s deleted\n", what)
			if wo.wait {
				return waitGone(cmd.Context(), c, key, out, wo.timeout)
			}
			return nil
		},
	}
	co = addClusterFlags(cmd, false)
	wo = addWaitFlags(cmd, "every device removed it")
	return cmd
}

func newAppRolloutCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Resume or undo an application's rollout",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	var rco, uco *clusterOptions
	var rwo, uwo *waitOptions
	resume := &cobra.Command{
		Use:   "resume NAME",
		Short: "Resume a rollout the failure threshold paused",
		Long: `Resume resumes a rollout that the failure threshold paused: the controller
delivers to the remaining devices, and the threshold applies to the
deliveries after the resume. It fails when the rollout is not paused.`,
		Args: nameArg("application"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rwo.check(); err != nil {
				return err
			}
			c, err := rco.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: rco.namespace, Name: args[0]}
			app, err := fleetctl.Resume(cmd.Context(), c, key, time.Now())
			if err != nil {
				return rolloutError(err, key)
			}
			return finishAppAction(cmd, c, rco, rwo, app, fmt.Sprintf("application %s: rollout resumed", key))
		},
	}
	undo := &cobra.Command{
		Use:   "undo NAME",
		Short: "Roll an application back to its previous version",
		Long: `Undo rolls the application back to the version before the current one, as
kubectl rollout undo does for a Deployment: the module, version and limits of
the previous version come back, targets and run state stay; the controller
rolls it out like any new version. It fails when there is no previous version.`,
		Args: nameArg("application"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := uwo.check(); err != nil {
				return err
			}
			c, err := uco.client()
			if err != nil {
				return err
			}
			key := types.NamespacedName{Namespace: uco.namespace, Name: args[0]}
			app, err := fleetctl.Undo(cmd.Context(), c, key)
			if err != nil {
				return rolloutError(err, key)
			}
			return finishAppAction(cmd, c, uco, uwo, app,
				fmt.Sprintf("application %s: rolling back to version %s", key, orDash(app.Spec.Version)))
		},
	}
	rco, uco = addClusterFlags(resume, true), addClusterFlags(undo, true)
	rwo = addWaitFlags(resume, "the application runs on every target")
	uwo = addWaitFlags(undo, "the previous version runs on every target")
	cmd.AddCommand(resume, undo)
	return cmd
}

// rolloutError says why a resume or undo was refused.
func rolloutError(err error, key types.NamespacedName) error {
	what := "application " + key.String()
	switch {
	case errors.Is(err, fleetctl.ErrNotPaused), errors.Is(err, fleetctl.ErrNoPreviousVersion),
		errors.Is(err, fleetctl.ErrPreviousVersionGone):
		return fmt.Errorf("%s: %w", what, errors.Unwrap(err))
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s not found", what)
	}
	return clusterError(err, what)
}

// degraded returns the Degraded condition when it is true.
func degraded(a *wasmbedv1.Application) *metav1.Condition {
	c := meta.FindStatusCondition(a.Status.Conditions, wasmbedv1.ConditionDegraded)
	if c == nil || c.Status != metav1.ConditionTrue {
		return nil
	}
	return c
}
