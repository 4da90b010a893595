package receiver

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// recentCapacity is how many created events a replica remembers (about 100 bytes each).
const recentCapacity = 8192

// recentNames remembers the events this replica created last, a bounded ring. A receipt
// of one of them (a duplicate, or Funnel retrying an answer it missed) reads the stored
// object straight away instead of creating it first: the API server refuses that create
// only after nearly all the work of one it accepts (decoding, admission, validation,
// the etcd transaction).
type recentNames struct {
	mu   sync.Mutex
	set  map[types.NamespacedName]struct{}
	ring []types.NamespacedName
	next int
}

func newRecentNames(capacity int) *recentNames {
	return &recentNames{set: make(map[types.NamespacedName]struct{}, capacity), ring: make([]types.NamespacedName, capacity)}
}

// add remembers key, forgetting the oldest one when full.
func (r *recentNames) add(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[key]; ok {
		return
	}
	if old := r.ring[r.next]; old.Name != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = key
	r.set[key] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}

// has reports whether key was created here lately.
func (r *recentNames) has(key types.NamespacedName) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[key]
	return ok
}
