package gateway

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// reasonCertificateExpiring is the Event reason for a connected device
// whose certificate is close to its end.
const reasonCertificateExpiring = "CertificateExpiring"

// certificateExpiring reports whether a certificate valid from notBefore
// to notAfter is in the last sixth of its lifetime at now. Devices renew at
// two thirds of it, so one still presenting such a certificate has failed
// to renew for at least a sixth of its lifetime (4 hours with the default
// 24-hour device certificates) and will drop off the fleet when it ends.
func certificateExpiring(notBefore, notAfter, now time.Time) bool {
	life := notAfter.Sub(notBefore)
	return life > 0 && notAfter.Sub(now) < life/6
}

// warnExpiringCertificates looks at the certificates of the sessions this
// replica holds every period: each session whose certificate is expiring
// gets one Warning Event on its Device, and the gauge counts them.
func (g *Gateway) warnExpiringCertificates(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.checkCertificateExpiry(ctx)
	}
}

func (g *Gateway) checkCertificateExpiry(ctx context.Context) {
	now := g.now()
	var expiring []*deviceSession
	g.mu.Lock()
	for _, ds := range g.sessions {
		if certificateExpiring(ds.notBefore, ds.notAfter, now) {
			expiring = append(expiring, ds)
		}
	}
	g.mu.Unlock()
	g.metrics.certificatesExpiring.Set(float64(len(expiring)))
	for _, ds := range expiring {
		if !ds.expiryWarned.CompareAndSwap(false, true) {
			continue
		}
		dev := &wasmbedv1.Device{}
		if err := g.client.Get(ctx, ds.key, dev); err != nil {
			ds.expiryWarned.Store(false) // try again next period
			continue
		}
		left := ds.notAfter.Sub(now).Round(time.Second)
		g.log.Warn("device certificate expiring", "device", ds.deviceID, "notAfter", ds.notAfter, "left", left)
		g.events.Eventf(dev, nil, corev1.EventTypeWarning, reasonCertificateExpiring, "Renew",
			"the device's certificate ends at %s (in %s) and it has not renewed it", ds.notAfter.UTC().Format(time.RFC3339), left)
	}
}
