package controllers

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

const (
	// staleRecheck is how soon a pass that found its cache behind its own last write
	// looks again.
	staleRecheck = 100 * time.Millisecond
	// staleForget is how long a write is remembered: far longer than the cache lags.
	staleForget = time.Minute
)

// staleGuard remembers, for the events whose status this process just wrote, the
// resourceVersion each write replaced. The controllers' cache lags their own writes by a
// few milliseconds, and a delivery attempt's outcome can wake an event within them: a
// pass that still reads the replaced version would do again what the write recorded
// (another attempt, a second Event). Versions are only compared for equality.
type staleGuard struct {
	mu      sync.Mutex
	written map[types.NamespacedName]staleWrite
	pruned  time.Time
}

type staleWrite struct {
	replaced string
	at       time.Time
}

// wrote records that the status of key was written over version replaced at now.
func (g *staleGuard) wrote(key types.NamespacedName, replaced string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.written == nil {
		g.written = map[types.NamespacedName]staleWrite{}
	}
	g.written[key] = staleWrite{replaced: replaced, at: now}
	// Finished events get no further pass to clear their entry: forget old ones now and then.
	if now.Sub(g.pruned) > staleForget {
		for k, w := range g.written {
			if now.Sub(w.at) > staleForget {
				delete(g.written, k)
			}
		}
		g.pruned = now
	}
}

// stale reports whether version is the one this process's last write of key replaced,
// i.e. the cache has not caught up with that write yet. Any other version means it has
// (or someone wrote since), and the write is forgotten.
func (g *staleGuard) stale(key types.NamespacedName, version string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	w, ok := g.written[key]
	if !ok {
		return false
	}
	if w.replaced == version && now.Sub(w.at) <= staleForget {
		return true
	}
	delete(g.written, key)
	return false
}
