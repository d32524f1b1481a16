package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// The API returns the Kubernetes objects themselves, as kubectl shows them,
// without what only Kubernetes needs (managed fields, the last applied
// configuration) and without bulk the caller did not ask for: an
// Application's module bytes and a DeviceApplication's signed manifest.

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// meta returns a shallow copy of m for a response. Cached objects are
// shared: the copy gets new maps where it drops entries.
func meta(m metav1.ObjectMeta) metav1.ObjectMeta {
	m.ManagedFields = nil
	if _, ok := m.Annotations[lastApplied]; ok {
		ann := make(map[string]string, len(m.Annotations)-1)
		for k, v := range m.Annotations {
			if k != lastApplied {
				ann[k] = v
			}
		}
		m.Annotations = ann
	}
	return m
}

func typeMeta(kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: wasmbedv1.GroupVersion.String(), Kind: kind}
}

// deviceView returns a Device for a response.
func deviceView(d *wasmbedv1.Device) wasmbedv1.Device {
	return wasmbedv1.Device{TypeMeta: typeMeta("Device"), ObjectMeta: meta(d.ObjectMeta), Spec: d.Spec, Status: d.Status}
}

// Application is an Application as the API returns it: the Kubernetes
// object with its module described instead of included.
type Application struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the object's metadata.
	metav1.ObjectMeta `json:"metadata"`
	// Spec is the desired state, without the module bytes.
	Spec ApplicationSpec `json:"spec"`
	// Status is the observed state.
	Status wasmbedv1.ApplicationStatus `json:"status"`
}

// ApplicationSpec is an Application's spec with its module described by
// Module; the module bytes are not returned.
type ApplicationSpec struct {
	wasmbedv1.ApplicationSpec
	// WasmBinary is always absent: it hides the embedded spec's module bytes.
	WasmBinary *struct{} `json:"wasmBinary,omitempty"`
	// Module describes the module.
	Module ModuleInfo `json:"module"`
}

// ModuleInfo describes an Application's WebAssembly module.
type ModuleInfo struct {
	// Size is the module's length in bytes.
	Size int `json:"size"`
	// SHA256 is the lower-case hex SHA-256 of the module, as devices report
	// it in DeviceApplication status.moduleHash.
	SHA256 string `json:"sha256"`
}

func (a *api) applicationView(app *wasmbedv1.Application) Application {
	spec := app.Spec
	spec.WasmBinary = nil
	return Application{
		TypeMeta:   typeMeta("Application"),
		ObjectMeta: meta(app.ObjectMeta),
		Spec:       ApplicationSpec{ApplicationSpec: spec, Module: a.modules.info(app)},
		Status:     app.Status,
	}
}

// DeviceApplication is a DeviceApplication as the API returns it: the
// Kubernetes object with its artifact summarised.
type DeviceApplication struct {
	metav1.TypeMeta `json:",inline"`
	// ObjectMeta is the object's metadata.
	metav1.ObjectMeta `json:"metadata"`
	// Spec is the desired state, with the artifact summarised.
	Spec DeviceApplicationSpec `json:"spec"`
	// Status is what the device reports.
	Status wasmbedv1.DeviceApplicationStatus `json:"status"`
}

// DeviceApplicationSpec is a DeviceApplication's spec with its artifact
// summarised: the signed manifest, signature and key material stay in
// Kubernetes.
type DeviceApplicationSpec struct {
	wasmbedv1.DeviceApplicationSpec
	// Artifact summarises the artifact; it hides the embedded spec's.
	Artifact *ArtifactSummary `json:"artifact,omitempty"`
}

// ArtifactSummary is what the API shows of a per-device artifact.
type ArtifactSummary struct {
	// Sequence is the artifact's sequence.
	Sequence int64 `json:"sequence"`
	// ModuleHash is the SHA-256 of the plaintext module, lower-case hex.
	ModuleHash string `json:"moduleHash"`
	// Payload names the module bytes (or ciphertext).
	Payload wasmbedv1.PayloadReference `json:"payload"`
}

func deviceApplicationView(d *wasmbedv1.DeviceApplication) DeviceApplication {
	spec := DeviceApplicationSpec{DeviceApplicationSpec: d.Spec}
	spec.DeviceApplicationSpec.Artifact = nil
	if art := d.Spec.Artifact; art != nil {
		spec.Artifact = &ArtifactSummary{Sequence: art.Sequence, ModuleHash: art.ModuleHash, Payload: art.Payload}
	}
	return DeviceApplication{
		TypeMeta:   typeMeta("DeviceApplication"),
		ObjectMeta: meta(d.ObjectMeta),
		Spec:       spec,
		Status:     d.Status,
	}
}

// moduleInfoCache remembers module hashes by object and generation, so that
// listing applications does not hash every module on every request.
type moduleInfoCache struct {
	mu      sync.Mutex
	max     int
	entries map[types.UID]moduleEntry
}

type moduleEntry struct {
	generation int64
	info       ModuleInfo
}

func newModuleInfoCache(size int) *moduleInfoCache {
	return &moduleInfoCache{max: size, entries: map[types.UID]moduleEntry{}}
}

func (m *moduleInfoCache) info(app *wasmbedv1.Application) ModuleInfo {
	key, gen := app.UID, app.Generation
	if key != "" && gen != 0 {
		m.mu.Lock()
		e, ok := m.entries[key]
		m.mu.Unlock()
		if ok && e.generation == gen {
			return e.info
		}
	}
	sum := sha256.Sum256(app.Spec.WasmBinary)
	info := ModuleInfo{Size: len(app.Spec.WasmBinary), SHA256: hex.EncodeToString(sum[:])}
	if key != "" && gen != 0 {
		m.mu.Lock()
		if len(m.entries) >= m.max {
			clear(m.entries)
		}
		m.entries[key] = moduleEntry{generation: gen, info: info}
		m.mu.Unlock()
	}
	return info
}
