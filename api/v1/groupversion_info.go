// Package v1 contains the v1 API of the wasmbed.github.io group: the Device and
// Application custom resources.
//
// Desired state lives in each resource's spec and is written by operators;
// observed state lives in the status subresource and is written only by the
// controller and the gateways.
//
// +kubebuilder:object:generate=true
// +groupName=wasmbed.github.io
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every resource in this package.
	GroupVersion = schema.GroupVersion{Group: "wasmbed.github.io", Version: "v1"}

	// SchemeBuilder registers the package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &Device{}, &DeviceList{}, &Application{}, &ApplicationList{},
		&DeviceApplication{}, &DeviceApplicationList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
