package device

import (
	"context"
	"maps"
	"sync"

	"github.com/wasmbed/wasmbed/internal/firmware/appmgr"
	"github.com/wasmbed/wasmbed/internal/protocol"
)

// configCache is the applications' configuration source. The application
// manager holds its lock while an application initialises, so host config
// calls cannot read it directly; they read this cache instead. It is filled
// by every configuration push, and keys an application asked for before
// they were cached (at boot) are fetched from the manager once it is free.
type configCache struct {
	mu     sync.Mutex
	mgr    *appmgr.Manager
	vals   map[string]map[string]string
	wanted map[string]map[string]struct{}
}

// Lookup implements wasm.ConfigSource.
func (c *configCache) Lookup(app, key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.vals[app][key]; ok {
		return v, true
	}
	if c.wanted == nil {
		c.wanted = map[string]map[string]struct{}{}
	}
	if c.wanted[app] == nil {
		c.wanted[app] = map[string]struct{}{}
	}
	c.wanted[app][key] = struct{}{}
	return "", false
}

// set replaces an application's plain values.
func (c *configCache) set(app string, values map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.vals == nil {
		c.vals = map[string]map[string]string{}
	}
	c.vals[app] = maps.Clone(values)
}

// refresh fetches the wanted keys from the manager. It must not be called
// with the manager's lock held (it is not: only from the client's
// goroutine and from boot after the manager opened).
func (c *configCache) refresh() {
	c.mu.Lock()
	mgr := c.mgr
	want := make(map[string][]string, len(c.wanted))
	for app, keys := range c.wanted {
		for k := range keys {
			want[app] = append(want[app], k)
		}
	}
	c.mu.Unlock()
	if mgr == nil {
		return
	}
	for app, keys := range want {
		for _, k := range keys {
			v, ok := mgr.Lookup(app, k)
			if !ok {
				continue
			}
			c.mu.Lock()
			if c.vals == nil {
				c.vals = map[string]map[string]string{}
			}
			if c.vals[app] == nil {
				c.vals[app] = map[string]string{}
			}
			c.vals[app][k] = v
			c.mu.Unlock()
		}
	}
}

// commands is the application manager's command adapter with the
// configuration cache kept current.
type commands struct {
	*appmgr.Commands
	cfg *configCache
}

// Configure applies a push and refreshes the cache.
func (c commands) Configure(ctx context.Context, m *protocol.ConfigPush) error {
	if err := c.Commands.Configure(ctx, m); err != nil {
		return err
	}
	c.cfg.set(m.App, m.Values)
	c.cfg.refresh()
	return nil
}
