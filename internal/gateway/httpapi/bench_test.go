package httpapi

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// sliceReader serves lists the way controller-runtime's cache does with
// UnsafeDisableDeepCopy: every item is a shallow copy of a shared object.
type sliceReader struct {
	devices []wasmbedv1.Device
	apps    []wasmbedv1.Application
}

func (s *sliceReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	if d, ok := obj.(*wasmbedv1.Device); ok {
		for i := range s.devices {
			if s.devices[i].Namespace == key.Namespace && s.devices[i].Name == key.Name {
				*d = s.devices[i]
				return nil
			}
		}
	}
	return apierrors.NewNotFound(k8sschema.GroupResource{}, key.Name)
}

func (s *sliceReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := client.ListOptions{}
	o.ApplyOptions(opts)
	switch l := list.(type) {
	case *wasmbedv1.DeviceList:
		l.Items = make([]wasmbedv1.Device, 0, len(s.devices))
		for i := range s.devices {
			if o.Namespace == "" || s.devices[i].Namespace == o.Namespace {
				l.Items = append(l.Items, s.devices[i])
			}
		}
	case *wasmbedv1.ApplicationList:
		l.Items = append([]wasmbedv1.Application(nil), s.apps...)
	default:
		return fmt.Errorf("sliceReader: %T", list)
	}
	return nil
}

// indexedInformers serves informers whose store holds the objects, as
// client-go's shared informers do.
type indexedInformers map[string]toolscache.Indexer

type indexedInformer struct {
	cache.Informer
	idx toolscache.Indexer
}

func (i indexedInformer) GetIndexer() toolscache.Indexer { return i.idx }

func (ii indexedInformers) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	idx, ok := ii[fmt.Sprintf("%T", obj)]
	if !ok {
		return nil, fmt.Errorf("no informer for %T", obj)
	}
	return indexedInformer{idx: idx}, nil
}

func newIndexer[T any, PT interface {
	*T
	client.Object
}](items []T) toolscache.Indexer {
	idx := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	for i := range items {
		if err := idx.Add(PT(&items[i])); err != nil {
			panic(err)
		}
	}
	return idx
}

func benchAPI(b *testing.B, n int, indexed bool) *api {
	b.Helper()
	r := &sliceReader{}
	for _, o := range fleet(n) {
		r.devices = append(r.devices, *o.(*wasmbedv1.Device))
	}
	for i := range 20 {
		r.apps = append(r.apps, *application("fleet", fmt.Sprintf("app-%d", i)))
	}
	allow := authorizer.AuthorizerFunc(func(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
		return authorizer.DecisionAllow, "", nil
	})
	opts := Options{Reader: r, Writer: fakeWriter{}, Fleet: &fakeFleet{},
		Authenticator: (&fakeAuth{}).authenticator(), Authorizer: allow, Registerer: prometheus.NewRegistry()}
	if indexed {
		opts.Informers = indexedInformers{
			"*v1.Device":      newIndexer(r.devices),
			"*v1.Application": newIndexer(r.apps),
		}
	}
	a, err := newAPI(opts)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// fakeWriter is never called by the benchmarks.
type fakeWriter struct{ client.Client }

// BenchmarkListDevices serves pages of a 10,000-device fleet from memory,
// through the whole handler (authentication and authorisation are in-process
// fakes): the cost a list adds to the cache. "indexed" reads the informers'
// stores; "reader" lists through a client.Reader as the cache's List does,
// copying every object shallowly.
func BenchmarkListDevices(b *testing.B) {
	for _, mode := range []string{"indexed", "reader"} {
		b.Run(mode, func(b *testing.B) { benchListDevices(b, benchAPI(b, 10000, mode == "indexed")) })
	}
}

func benchListDevices(b *testing.B, a *api) {
	var last string
	{
		// The continue token of the page before the last.
		req := httptest.NewRequest("GET", "/api/v1/devices?limit=500", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		for range 19 {
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			var p Page[wasmbedv1.Device]
			if err := jsonUnmarshal(rec.Body.Bytes(), &p); err != nil || p.Continue == "" {
				b.Fatalf("page: %v", err)
			}
			last = p.Continue
			req = httptest.NewRequest("GET", "/api/v1/devices?limit=500&continue="+last, nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
		}
	}
	for _, bc := range []struct{ name, path string }{
		{"first-page-100", "/api/v1/devices"},
		{"page-500", "/api/v1/devices?limit=500"},
		{"last-page-500", "/api/v1/devices?limit=500&continue=" + last},
		{"filtered-phase-type-100", "/api/v1/devices?phase=Connected&type=esp32"},
		{"search-prefix", "/api/v1/devices?search=dev-09"},
		{"one-namespace", "/api/v1/namespaces/lab/devices"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", bc.path, nil)
				req.Header.Set("Authorization", "Bearer "+adminToken)
				a.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkSummary computes the summary of a 10,000-device fleet.
func BenchmarkSummary(b *testing.B) {
	for _, mode := range []string{"indexed", "reader"} {
		b.Run(mode, func(b *testing.B) { benchSummary(b, benchAPI(b, 10000, mode == "indexed")) })
	}
}

func benchSummary(b *testing.B, a *api) {
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/v1/summary", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		a.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
