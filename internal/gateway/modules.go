package gateway

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	wasmbedv1 "github.com/wasmbed/wasmbed/api/v1"
)

// PayloadKey is the binaryData key of a payload ConfigMap.
const PayloadKey = "payload"

// moduleCache keeps module payloads by their SHA-256, bounded in bytes
// (least recently used first out), and fetches each one once however many
// devices ask for it at the same time.
type moduleCache struct {
	max int64

	mu       sync.Mutex
	size     int64
	entries  map[string]*list.Element // by hex SHA-256
	lru      *list.List               // of *moduleEntry, most recent first
	inflight map[string]*fetch
	fetches  int // payloads fetched from the API server, for tests and metrics
}

type moduleEntry struct {
	hash string
	data []byte
}

type fetch struct {
	done chan struct{}
	data []byte
	err  error
}

func newModuleCache(maxBytes int64) *moduleCache {
	return &moduleCache{max: maxBytes, entries: map[string]*list.Element{}, lru: list.New(), inflight: map[string]*fetch{}}
}

// get returns the payload ref names, checking its size and SHA-256.
func (c *moduleCache) get(ctx context.Context, r client.Reader, namespace string, ref wasmbedv1.PayloadReference) ([]byte, error) {
	c.mu.Lock()
	if e, ok := c.entries[ref.SHA256]; ok {
		c.lru.MoveToFront(e)
		data := e.Value.(*moduleEntry).data
		c.mu.Unlock()
		return data, nil
	}
	if f, ok := c.inflight[ref.SHA256]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.data, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &fetch{done: make(chan struct{})}
	c.inflight[ref.SHA256] = f
	c.fetches++
	c.mu.Unlock()

	f.data, f.err = fetchPayload(ctx, r, namespace, ref)
	c.mu.Lock()
	delete(c.inflight, ref.SHA256)
	if f.err == nil {
		c.add(ref.SHA256, f.data)
	}
	c.mu.Unlock()
	close(f.done)
	return f.data, f.err
}

// add inserts a payload and evicts the least recently used beyond the
// bound; c.mu is held.
func (c *moduleCache) add(hash string, data []byte) {
	if int64(len(data)) > c.max {
		return // larger than the whole cache: used once, not kept
	}
	c.entries[hash] = c.lru.PushFront(&moduleEntry{hash: hash, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		last := c.lru.Back()
		e := last.Value.(*moduleEntry)
		c.lru.Remove(last)
		delete(c.entries, e.hash)
		c.size -= int64(len(e.data))
	}
}

// fetchPayload reads a payload ConfigMap and checks it against ref.
func fetchPayload(ctx context.Context, r client.Reader, namespace string, ref wasmbedv1.PayloadReference) ([]byte, error) {
	var cm corev1.ConfigMap
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.ConfigMap}, &cm); err != nil {
		return nil, fmt.Errorf("payload %s: %w", ref.ConfigMap, err)
	}
	data, ok := cm.BinaryData[PayloadKey]
	if !ok {
		return nil, fmt.Errorf("payload %s: no %q key", ref.ConfigMap, PayloadKey)
	}
	if int64(len(data)) != ref.Size {
		return nil, fmt.Errorf("payload %s: %d bytes, the artifact says %d", ref.ConfigMap, len(data), ref.Size)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("payload %s: SHA-256 differs from the artifact's", ref.ConfigMap)
	}
	return data, nil
}
