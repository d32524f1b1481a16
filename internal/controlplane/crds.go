package controlplane

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/wasmbed/wasmbed/config/crd"
)

// LoadCRDs parses the CRD manifests embedded in the binary.
func LoadCRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	names, err := fs.Glob(crd.Files, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list embedded CRDs: %w", err)
	}
	crds := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(crd.Files, name)
		if err != nil {
			return nil, fmt.Errorf("read embedded CRD %s: %w", name, err)
		}
		obj := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(data, obj); err != nil {
			return nil, fmt.Errorf("parse embedded CRD %s: %w", name, err)
		}
		crds = append(crds, obj)
	}
	return crds, nil
}

// InstallCRDs creates or updates crds on the cluster behind cfg and waits
// until each one is established, so that clients can use the new resources
// as soon as it returns.
func InstallCRDs(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apiextensions client: %w", err)
	}
	api := client.ApiextensionsV1().CustomResourceDefinitions()
	for _, want := range crds {
		got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := api.Create(ctx, want.DeepCopy(), metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create CRD %s: %w", want.Name, err)
			}
		case err != nil:
			return fmt.Errorf("get CRD %s: %w", want.Name, err)
		default:
			update := want.DeepCopy()
			update.ResourceVersion = got.ResourceVersion
			if _, err := api.Update(ctx, update, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update CRD %s: %w", want.Name, err)
			}
		}
	}
	for _, want := range crds {
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := api.Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // keep polling through transient errors
			}
			return established(got), nil
		})
		if err != nil {
			return fmt.Errorf("wait for CRD %s to be established: %w", want.Name, err)
		}
	}
	return nil
}

func established(def *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range def.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
