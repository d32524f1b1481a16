package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/pki"
)

// TicketKeysSecretKey is the data key of the session-ticket keys in the
// wasmbedv1.TicketKeysSecret Secret.
const TicketKeysSecretKey = "keys"

// ticketKeys keeps this replica's session-ticket keys in step with the ones
// every replica shares through a Secret of the system namespace, so that a
// device resumes its session on any replica. A replica finding the current
// key older than the rotation period rotates it for all, with an optimistic
// lock so that replicas rotating at once agree on one new key.
type ticketKeys struct {
	g      *Gateway
	ring   *pki.TicketKeyRing
	rotate time.Duration
	last   []byte // the Secret's keys as last applied
}

// loadTicketKeys reads the shared keys, creating the Secret when no
// replica did yet, or filling it when the installation created it empty,
// and returns them as a ring.
func (g *Gateway) loadTicketKeys(ctx context.Context) (*ticketKeys, error) {
	tk := &ticketKeys{g: g, rotate: g.opts.TicketKeyRotation}
	keys, err := tk.sync(ctx)
	if err != nil {
		return nil, err
	}
	if tk.ring, err = pki.NewTicketKeyRing(keys...); err != nil {
		return nil, fmt.Errorf("gateway: session ticket keys: %w", err)
	}
	return tk, nil
}

// sync reads the Secret, creating, filling or rotating its keys when due, and
// returns the keys in force.
func (tk *ticketKeys) sync(ctx context.Context) ([]pki.TicketKey, error) {
	g := tk.g
	key := types.NamespacedName{Namespace: g.opts.SystemNamespace, Name: wasmbedv1.TicketKeysSecret}
	for attempt := 0; ; attempt++ {
		sec := &corev1.Secret{}
		err := g.reader.Get(ctx, key, sec)
		switch {
		case apierrors.IsNotFound(err):
			first, data, kerr := newTicketKeys(g.now())
			if kerr != nil {
				return nil, kerr
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
					Labels: map[string]string{wasmbedv1.LabelComponent: wasmbedv1.ComponentGateway}},
				Type: corev1.SecretTypeOpaque,
				Data: map[string][]byte{TicketKeysSecretKey: data},
			}
			if err := g.client.Create(ctx, sec); err != nil {
				if apierrors.IsAlreadyExists(err) && attempt < 5 {
					continue // another replica created it first
				}
				return nil, fmt.Errorf("gateway: create session ticket keys: %w", err)
			}
			g.log.Info("session ticket keys created")
			tk.last = data
			return []pki.TicketKey{first}, nil
		case err != nil:
			return nil, fmt.Errorf("gateway: read session ticket keys: %w", err)
		case len(sec.Data[TicketKeysSecretKey]) == 0:
			// Created without keys by the installation, so that gateways
			// need no right to create Secrets: the first replica fills it.
			first, data, kerr := newTicketKeys(g.now())
			if kerr != nil {
				return nil, kerr
			}
			if sec.Data == nil {
				sec.Data = map[string][]byte{}
			}
			sec.Data[TicketKeysSecretKey] = data
			if err := g.client.Update(ctx, sec); err != nil {
				if apierrors.IsConflict(err) && attempt < 5 {
					continue // another replica filled it first
				}
				return nil, fmt.Errorf("gateway: fill session ticket keys: %w", err)
			}
			g.log.Info("session ticket keys created")
			tk.last = data
			return []pki.TicketKey{first}, nil
		}
		keys, err := pki.ParseTicketKeys(sec.Data[TicketKeysSecretKey])
		if err != nil {
			return nil, fmt.Errorf("gateway: session ticket keys in Secret %s: %w", key, err)
		}
		if g.now().Sub(keys[0].Created) < tk.rotate {
			tk.last = sec.Data[TicketKeysSecretKey]
			return keys, nil
		}
		next, err := pki.NewTicketKey(g.now())
		if err != nil {
			return nil, err
		}
		rotated := []pki.TicketKey{next, keys[0]} // the previous key still decrypts
		data, err := pki.MarshalTicketKeys(rotated)
		if err != nil {
			return nil, err
		}
		sec.Data[TicketKeysSecretKey] = data
		if err := g.client.Update(ctx, sec); err != nil {
			if apierrors.IsConflict(err) && attempt < 5 {
				continue // another replica rotated first: take its keys
			}
			return nil, fmt.Errorf("gateway: rotate session ticket keys: %w", err)
		}
		g.log.Info("session ticket keys rotated")
		tk.last = data
		return rotated, nil
	}
}

// newTicketKeys returns a first ticket key and the Secret data holding it.
func newTicketKeys(now time.Time) (pki.TicketKey, []byte, error) {
	first, err := pki.NewTicketKey(now)
	if err != nil {
		return pki.TicketKey{}, nil, err
	}
	data, err := pki.MarshalTicketKeys([]pki.TicketKey{first})
	if err != nil {
		return pki.TicketKey{}, nil, err
	}
	return first, data, nil
}

// run re-reads the shared keys every period until ctx ends, applying keys
// another replica rotated in and rotating when due.
func (tk *ticketKeys) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		before := tk.last
		keys, err := tk.sync(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				tk.g.log.Warn("session ticket keys not refreshed", "err", err)
			}
			continue
		}
		if bytes.Equal(before, tk.last) {
			continue
		}
		if err := tk.ring.SetKeys(keys...); err != nil {
			tk.g.log.Warn("session ticket keys refused", "err", err)
		}
	}
}
