package fleetctl

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
	"github.com/wasmbed/wasmbed/internal/issuer"
)

// IssuerPublic reads the public keys the controller publishes in the
// IssuerConfigMap of the system namespace: the issuer key confidential
// modules are sealed to, among them.
func IssuerPublic(ctx context.Context, c client.Reader, systemNamespace string) (*issuer.Public, error) {
	key := types.NamespacedName{Namespace: systemNamespace, Name: wasmbedv1.IssuerConfigMap}
	var cm corev1.ConfigMap
	if err := c.Get(ctx, key, &cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("configmap %s: %w", key, ErrNotInstalled)
		}
		return nil, fmt.Errorf("read the issuer's keys: %w", err)
	}
	p, err := issuer.ParsePublicData(cm.Data)
	if err != nil {
		return nil, fmt.Errorf("configmap %s: %w", key, err)
	}
	return p, nil
}

// Seal makes app confidential: it seals module to the issuer key the
// controller publishes, for app's namespace and name (which must be final),
// so that the module is in no field of app in clear and stays ciphertext
// through every gateway.
func Seal(ctx context.Context, c client.Reader, systemNamespace string, app *wasmbedv1.Application, module []byte) error {
	p, err := IssuerPublic(ctx, c, systemNamespace)
	if err != nil {
		return err
	}
	if err := issuer.SealApplication(app, module, p.IssuerKey); err != nil {
		return fmt.Errorf("seal application %s/%s: %w", app.Namespace, app.Name, err)
	}
	return nil
}
