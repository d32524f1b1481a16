package httpapi

import (
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

// Values of the device filters.
var (
	devicePhases = []string{
		string(wasmbedv1.DevicePhasePending), string(wasmbedv1.DevicePhaseEnrolling),
		string(wasmbedv1.DevicePhaseEnrolled), string(wasmbedv1.DevicePhaseConnected),
		string(wasmbedv1.DevicePhaseDisconnected), string(wasmbedv1.DevicePhaseUnreachable),
		string(wasmbedv1.DevicePhaseError),
	}
	deviceTypes = []string{string(wasmbedv1.DeviceTypeHiFive1), string(wasmbedv1.DeviceTypeESP32)}

	deviceFilters = filterSpec{selector: true, phases: devicePhases, types: deviceTypes, gateway: true, search: true}
)

// devicePhase is a device's phase, Pending before anything was observed.
func devicePhase(d *wasmbedv1.Device) string {
	if d.Status.Phase == "" {
		return string(wasmbedv1.DevicePhasePending)
	}
	return string(d.Status.Phase)
}

func deviceKey(d *wasmbedv1.Device) objKey { return objKey{Namespace: d.Namespace, Name: d.Name} }

// deviceMatcher returns the filter of a device list or watch.
func deviceMatcher(c *call, lq *listQuery) func(*wasmbedv1.Device) bool {
	return func(d *wasmbedv1.Device) bool {
		return (c.namespace == "" || d.Namespace == c.namespace) &&
			lq.matchPhase(devicePhase(d)) &&
			lq.matchType(string(d.Spec.DeviceType)) &&
			(lq.gateway == "" || d.Status.Gateway == lq.gateway) &&
			lq.matchSearch(d.Name, d.Spec.DeviceID) &&
			lq.matchLabels(d.Labels)
	}
}

func (a *api) listDevices(c *call) error {
	lq, err := c.listQuery(deviceFilters)
	if err != nil {
		return err
	}
	match := deviceMatcher(c, lq)
	if c.watch {
		return a.watch(c, watchKind{
			object: &wasmbedv1.Device{},
			match:  typedMatch(match),
			view:   func(o any) any { return deviceView(o.(*wasmbedv1.Device)) },
		})
	}
	var list wasmbedv1.DeviceList
	devices, err := listShared(a, c, &list, func() []wasmbedv1.Device { return list.Items }, nil)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, paginate(devices, lq, deviceKey, match, deviceView))
}

// typedMatch adapts a typed filter to the objects informers hand out.
func typedMatch[T any](match func(*T) bool) func(any) bool {
	return func(o any) bool {
		t, ok := o.(*T)
		return ok && match(t)
	}
}

// getDevice reads the path's Device from the cache.
func (a *api) getDevice(c *call) (*wasmbedv1.Device, error) {
	var d wasmbedv1.Device
	if err := a.opts.Reader.Get(c.r.Context(), types.NamespacedName{Namespace: c.namespace, Name: c.name}, &d); err != nil {
		return nil, fromKubernetes(err, fmt.Sprintf("device %s/%s", c.namespace, c.name))
	}
	return &d, nil
}

func (a *api) showDevice(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	d, err := a.getDevice(c)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, deviceView(d))
}

// revokeDevice sets spec.revoked: the gateway holding the device's session
// closes it, and the device's certificates are refused from then on.
func (a *api) revokeDevice(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	d, err := fleetctl.RevokeDevice(c.r.Context(), a.opts.Writer, c.key())
	if err != nil {
		return fromKubernetes(err, fmt.Sprintf("device %s/%s", c.namespace, c.name))
	}
	return c.writeJSON(http.StatusOK, deviceView(d))
}

func (a *api) deviceMetrics(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	d, err := a.getDevice(c)
	if err != nil {
		return err
	}
	m, ok := a.opts.Fleet.DeviceMetrics(c.namespace, c.name)
	if !ok {
		p := newProblem(http.StatusNotFound, ProblemMetricsUnavailable,
			fmt.Sprintf("this gateway replica holds no metrics of device %s/%s", c.namespace, c.name))
		if d.Status.Phase == wasmbedv1.DevicePhaseConnected && d.Status.Gateway != "" {
			p.Gateway = d.Status.Gateway
			p.Detail += "; gateway " + d.Status.Gateway + " holds its session"
		} else {
			p.Detail += "; the device is not connected"
		}
		return p
	}
	if m.Applications == nil {
		m.Applications = []AppMetrics{}
	}
	return c.writeJSON(http.StatusOK, m)
}

// deviceApplicationFilters are the filters of a device's applications and
// of an application's rollout.
var (
	deviceApplicationPhases = []string{
		string(wasmbedv1.DeviceApplicationPhasePending), string(wasmbedv1.DeviceApplicationPhaseDelivering),
		string(wasmbedv1.DeviceApplicationPhaseInstalled), string(wasmbedv1.DeviceApplicationPhaseRunning),
		string(wasmbedv1.DeviceApplicationPhaseStopped), string(wasmbedv1.DeviceApplicationPhaseTrapped),
		string(wasmbedv1.DeviceApplicationPhaseLimitExceeded), string(wasmbedv1.DeviceApplicationPhaseFailed),
		string(wasmbedv1.DeviceApplicationPhaseRefused), string(wasmbedv1.DeviceApplicationPhaseRemoving),
		string(wasmbedv1.DeviceApplicationPhaseRemoved),
	}
	deviceApplicationFilters = filterSpec{phases: deviceApplicationPhases, search: true}
)

func deviceApplicationPhase(d *wasmbedv1.DeviceApplication) string {
	if d.Status.Phase == "" {
		return string(wasmbedv1.DeviceApplicationPhasePending)
	}
	return string(d.Status.Phase)
}

func deviceApplicationKey(d *wasmbedv1.DeviceApplication) objKey {
	return objKey{Namespace: d.Namespace, Name: d.Name}
}

// listDeviceApplications lists the applications of the path's device: its
// DeviceApplications, found by label and checked by spec.device.
func (a *api) listDeviceApplications(c *call) error {
	lq, err := c.listQuery(deviceApplicationFilters)
	if err != nil {
		return err
	}
	if _, err := a.getDevice(c); err != nil {
		return err
	}
	device, ns := c.name, c.namespace
	match := func(d *wasmbedv1.DeviceApplication) bool {
		return d.Namespace == ns && d.Spec.Device == device &&
			lq.matchPhase(deviceApplicationPhase(d)) && lq.matchSearch(d.Spec.Application)
	}
	if c.watch {
		return a.watch(c, watchKind{
			object: &wasmbedv1.DeviceApplication{},
			match:  typedMatch(match),
			view:   func(o any) any { return deviceApplicationView(o.(*wasmbedv1.DeviceApplication)) },
		})
	}
	var list wasmbedv1.DeviceApplicationList
	sel := labels.SelectorFromSet(labels.Set{wasmbedv1.LabelDevice: wasmbedv1.LabelValue(device)})
	dapps, err := listShared(a, c, &list, func() []wasmbedv1.DeviceApplication { return list.Items }, sel)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, paginate(dapps, lq, deviceApplicationKey, match, deviceApplicationView))
}
