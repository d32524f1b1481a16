package fleetctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/pairing"
)

// ErrNotInstalled reports a cluster without the platform's system namespace
// or the objects the controller publishes in it.
var ErrNotInstalled = errors.New("wasmbed is not installed in this cluster (or its controller has not started yet)")

// PairingKey is where the pairing window of the platform whose system
// namespace is systemNamespace lives.
func PairingKey(systemNamespace string) types.NamespacedName {
	return types.NamespacedName{Namespace: systemNamespace, Name: wasmbedv1.PairingConfigMap}
}

// Pairing reads the pairing window; a missing ConfigMap is a closed window.
func Pairing(ctx context.Context, c client.Reader, systemNamespace string) (pairing.Window, error) {
	key := PairingKey(systemNamespace)
	var cm corev1.ConfigMap
	err := c.Get(ctx, key, &cm)
	switch {
	case apierrors.IsNotFound(err):
		return pairing.Window{}, nil
	case err != nil:
		return pairing.Window{}, fmt.Errorf("read the pairing window: %w", err)
	}
	w, err := pairing.Parse(cm.Data)
	if err != nil {
		return pairing.Window{}, fmt.Errorf("configmap %s: %w", key, err)
	}
	return w, nil
}

// SetPairing stores w as the pairing window, creating its ConfigMap if
// needed; the zero Window closes it. A merge patch replaces every key of the
// window, so that nothing of an earlier window (its token) survives.
func SetPairing(ctx context.Context, c client.Client, systemNamespace string, w pairing.Window) error {
	data := w.Data()
	patchData := map[string]*string{}
	for _, k := range []string{pairing.KeyOpenUntil, pairing.KeyOpenedAt, pairing.KeyOpenedBy, pairing.KeyTokenSHA256} {
		patchData[k] = nil
		if v, ok := data[k]; ok {
			patchData[k] = &v
		}
	}
	body, err := json.Marshal(map[string]any{"data": patchData})
	if err != nil {
		return fmt.Errorf("encode the pairing window: %w", err)
	}
	key := PairingKey(systemNamespace)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	for range 3 {
		err = c.Patch(ctx, cm, client.RawPatch(types.MergePatchType, body))
		if !apierrors.IsNotFound(err) {
			break
		}
		cm.Data = data
		if err = c.Create(ctx, cm); !apierrors.IsAlreadyExists(err) {
			break
		}
	}
	if apierrors.IsNotFound(err) {
		// The system namespace is missing: the installation is incomplete.
		return fmt.Errorf("create configmap %s: %w: %w", key, ErrNotInstalled, err)
	}
	if err != nil {
		return fmt.Errorf("write the pairing window: %w", err)
	}
	return nil
}
