package gateway

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// renewLease keeps this replica's Lease fresh until ctx ends: the
// controller marks the devices of a replica whose Lease expired Unreachable.
func (g *Gateway) renewLease(ctx context.Context) {
	period := g.opts.LeaseDuration / 3
	for {
		if err := g.touchLease(ctx, g.now()); err != nil && ctx.Err() == nil {
			g.log.Warn("lease renewal failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// touchLease creates or renews the Lease with renewTime now.
func (g *Gateway) touchLease(ctx context.Context, now time.Time) error {
	key := types.NamespacedName{Namespace: g.opts.SystemNamespace, Name: g.opts.Name}
	renew := metav1.NewMicroTime(now)
	secs := int32(g.opts.LeaseDuration / time.Second) //nolint:gosec // a few seconds
	lease := &coordinationv1.Lease{}
	err := g.client.Get(ctx, key, lease)
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace,
				Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(g.opts.Name), LeaseDurationSeconds: ptr.To(secs),
				AcquireTime: &renew, RenewTime: &renew},
		}
		return g.client.Create(ctx, lease)
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = ptr.To(g.opts.Name)
	lease.Spec.LeaseDurationSeconds = ptr.To(secs)
	lease.Spec.RenewTime = &renew
	return g.client.Update(ctx, lease)
}
