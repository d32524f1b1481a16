package httpapi

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// Summary is the fleet at a glance, computed from the gateway's cache.
type Summary struct {
	// Namespace is the namespace summarised; empty for all namespaces.
	Namespace string `json:"namespace,omitempty"`
	// GeneratedAt is when the summary was computed.
	GeneratedAt metav1.Time `json:"generatedAt"`
	// Devices summarises the devices.
	Devices DeviceSummary `json:"devices"`
	// Applications summarises the applications.
	Applications ApplicationSummary `json:"applications"`
}

// DeviceSummary counts devices.
type DeviceSummary struct {
	// Total counts every device.
	Total int `json:"total"`
	// ByPhase counts devices by phase; every phase is present.
	ByPhase map[string]int `json:"byPhase"`
	// ByType counts devices by board type; every type is present.
	ByType map[string]int `json:"byType"`
	// Revoked counts revoked devices.
	Revoked int `json:"revoked"`
	// Gateways counts connected devices by the gateway replica holding
	// their session.
	Gateways map[string]int `json:"gateways"`
}

// ApplicationSummary counts applications and sums their rollouts.
type ApplicationSummary struct {
	// Total counts every application.
	Total int `json:"total"`
	// ByPhase counts applications by phase; every phase is present.
	ByPhase map[string]int `json:"byPhase"`
	// Targets sums the applications' target counts.
	Targets int `json:"targets"`
	// Updated sums the targets running the current version.
	Updated int `json:"updated"`
	// Running sums the targets running their application.
	Running int `json:"running"`
	// Failed sums the targets on which their application failed.
	Failed int `json:"failed"`
}

func zeroCounts(keys []string) map[string]int {
	m := make(map[string]int, len(keys))
	for _, k := range keys {
		m[k] = 0
	}
	return m
}

// summary counts devices and applications in one pass over the cache each.
func (a *api) summary(c *call) error {
	if err := c.noQuery(); err != nil {
		return err
	}
	var dl wasmbedv1.DeviceList
	devices, err := listShared(a, c, &dl, func() []wasmbedv1.Device { return dl.Items }, nil)
	if err != nil {
		return err
	}
	var al wasmbedv1.ApplicationList
	apps, err := listShared(a, c, &al, func() []wasmbedv1.Application { return al.Items }, nil)
	if err != nil {
		return err
	}
	return c.writeJSON(http.StatusOK, summarize(c.namespace, metav1.NewTime(a.opts.Clock.Now()), devices, apps))
}

func summarize(ns string, now metav1.Time, devices []*wasmbedv1.Device, apps []*wasmbedv1.Application) Summary {
	s := Summary{
		Namespace:   ns,
		GeneratedAt: now,
		Devices: DeviceSummary{ByPhase: zeroCounts(devicePhases), ByType: zeroCounts(deviceTypes),
			Gateways: map[string]int{}},
		Applications: ApplicationSummary{ByPhase: zeroCounts(applicationPhases)},
	}
	for _, d := range devices {
		s.Devices.Total++
		s.Devices.ByPhase[devicePhase(d)]++
		if d.Spec.DeviceType != "" {
			s.Devices.ByType[string(d.Spec.DeviceType)]++
		}
		if d.Spec.Revoked {
			s.Devices.Revoked++
		}
		if d.Status.Phase == wasmbedv1.DevicePhaseConnected && d.Status.Gateway != "" {
			s.Devices.Gateways[d.Status.Gateway]++
		}
	}
	for _, app := range apps {
		s.Applications.Total++
		s.Applications.ByPhase[applicationPhase(app)]++
		s.Applications.Targets += int(app.Status.TargetCount)
		s.Applications.Updated += int(app.Status.UpdatedCount)
		s.Applications.Running += int(app.Status.RunningCount)
		s.Applications.Failed += int(app.Status.FailedCount)
	}
	return s
}
