package httpapi

import (
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/fleetctl"
)

var (
	applicationPhases = []string{
		string(wasmbedv1.ApplicationPhasePending), string(wasmbedv1.ApplicationPhaseDeploying),
		string(wasmbedv1.ApplicationPhaseRunning), string(wasmbedv1.ApplicationPhasePartiallyRunning),
		string(wasmbedv1.ApplicationPhaseStopped), string(wasmbedv1.ApplicationPhaseFailed),
	}
	applicationFilters = filterSpec{selector: true, phases: applicationPhases, search: true}
)

func applicationPhase(app *wasmbedv1.Application) string {
	if app.Status.Phase == "" {
		return string(wasmbedv1.ApplicationPhasePending)
	}
	return string(app.Status.Phase)
}

func applicationKey(app *wasmbedv1.Application) objKey {
	return objKey{Namespace: app.Namespace, Name: app.Name}
}

func (a *api) listApplications(c *call) error {
	lq, err := c.listQuery(applicationFilters)
	if err != nil {
		return err
	}
	match := func(app *wasmbedv1.Application) bool {
		return (c.namespace == "" || app.Namespace == c.namespace) &&
			lq.matchPhase(applicationPhase(app)) &&
			lq.matchSearch(app.Name, app.Spec.Name) &&
			lq.matchLabels(app.Labels)
	}
	if c.watch {
		return a.watch(c, watchKind{
			object: &wasmbedv1.Application{},
			match:  typedMatch(match),
			view:   func(o any) any { return a.applicationView(o.(*wasmbedv1.Application)) },
		})
	}
	var list wasmbedv1.ApplicationList
	apps, err := listShared(a, c, &list, func() []wasmbedv1.Application { return list.Items }, nil)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, paginate(apps, lq, applicationKey, match, a.applicationView))
}

func (c *call) applicationName() string {
	return fmt.Sprintf("application %s/%s", c.namespace, c.name)
}

// key is the path's object.
func (c *call) key() types.NamespacedName {
	return types.NamespacedName{Namespace: c.namespace, Name: c.name}
}

func (a *api) getApplication(c *call) (*wasmbedv1.Application, error) {
	var app wasmbedv1.Application
	if err := a.opts.Reader.Get(c.r.Context(), types.NamespacedName{Namespace: c.namespace, Name: c.name}, &app); err != nil {
		return nil, fromKubernetes(err, c.applicationName())
	}
	return &app, nil
}

func (a *api) showApplication(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	app, err := a.getApplication(c)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, a.applicationView(app))
}

// setRunState starts or stops an application on all its targets.
func (a *api) setRunState(state wasmbedv1.RunState) func(*call) error {
	return func(c *call) error {
		if err := c.noQuery(); err != nil {
			return err
		}
		if err := c.readOptionalJSON(&struct{}{}); err != nil {
			return err
		}
		app, err := fleetctl.SetRunState(c.r.Context(), a.opts.Writer, c.key(), state)
		if err != nil {
			return fromKubernetes(err, c.applicationName())
		}
		return c.writeJSON(http.StatusOK, a.applicationView(app))
	}
}

// deleteApplication deletes an application; Kubernetes then deletes its
// DeviceApplications, and each device removes it.
func (a *api) deleteApplication(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	if err := c.readOptionalJSON(&struct{}{}); err != nil {
		return err
	}
	if err := fleetctl.DeleteApplication(c.r.Context(), a.opts.Writer, c.key()); err != nil {
		return fromKubernetes(err, c.applicationName())
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// RolloutPage is a page of an application's rollout: its DeviceApplications,
// with the phases of all of them counted.
type RolloutPage struct {
	Page[DeviceApplication]
	// Phases counts the application's DeviceApplications by phase, over
	// every page and regardless of the phase filter.
	Phases map[string]int `json:"phases"`
}

// rollout lists an application's DeviceApplications.
func (a *api) rollout(c *call) error {
	lq, err := c.listQuery(deviceApplicationFilters)
	if err != nil {
		return err
	}
	if _, err := a.getApplication(c); err != nil {
		return err
	}
	app, ns := c.name, c.namespace
	ofApp := func(d *wasmbedv1.DeviceApplication) bool { return d.Namespace == ns && d.Spec.Application == app }
	match := func(d *wasmbedv1.DeviceApplication) bool {
		return ofApp(d) && lq.matchPhase(deviceApplicationPhase(d)) && lq.matchSearch(d.Spec.Device)
	}
	if c.watch {
		return a.watch(c, watchKind{
			object: &wasmbedv1.DeviceApplication{},
			match:  typedMatch(match),
			view:   func(o any) any { return deviceApplicationView(o.(*wasmbedv1.DeviceApplication)) },
		})
	}
	var list wasmbedv1.DeviceApplicationList
	sel := labels.SelectorFromSet(labels.Set{wasmbedv1.LabelApplication: wasmbedv1.LabelValue(app)})
	dapps, err := listShared(a, c, &list, func() []wasmbedv1.DeviceApplication { return list.Items }, sel)
	if err != nil {
		return err
	}
	phases := make(map[string]int, len(deviceApplicationPhases))
	for _, p := range deviceApplicationPhases {
		phases[p] = 0
	}
	for _, d := range dapps {
		if ofApp(d) {
			phases[deviceApplicationPhase(d)]++
		}
	}
	return c.writeJSON(http.StatusOK, RolloutPage{
		Page:   paginate(dapps, lq, deviceApplicationKey, match, deviceApplicationView),
		Phases: phases,
	})
}
