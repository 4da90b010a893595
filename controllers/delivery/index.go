package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// IndexDeliveringTo is a field index of the controllers' FunnelEvent cache: the
// subscriptions an event still has deliveries (or dead letters) to make to. A change of a
// subscription (resumed, Ready again, its dead letter removed, deleted) wakes exactly
// those events, whatever timer they wait on.
const IndexDeliveringTo = "funnel.leasing.dev/delivering-to"

func deliveringTo(o client.Object) []string {
	ev, ok := o.(*funnelv1.FunnelEvent)
	if !ok {
		return nil
	}
	var subs []string
	for _, d := range ev.Status.Deliveries {
		if !finished(d.Phase) || (d.DeadLetter != nil && !finished(d.DeadLetter.Phase)) {
			subs = append(subs, d.Subscription)
		}
	}
	return subs
}

// eventIndexes are the indexes EventIndex registers, in order.
var eventIndexes = []struct {
	name    string
	extract client.IndexerFunc
}{
	{IndexDeliveringTo, deliveringTo},
	{IndexSubject, subjectsOf},
}

// EventIndex looks up the controllers' cached FunnelEvents by IndexDeliveringTo and
// IndexSubject. It registers the indexes on its first lookup, not at setup: registering
// an index starts the cache's FunnelEvent informer, and only the leader looks events up
// (its controllers watch them anyway). A follower, which only answers Funnel, so neither
// watches nor holds the unfinished events (bench/README.md measures what that saves).
type EventIndex struct {
	reader  client.Reader
	indexer client.FieldIndexer

	mu         sync.Mutex
	added      int // eventIndexes registered so far
	registered atomic.Bool
}

// NewEventIndex looks events up in cache, registering its indexes there on first use.
func NewEventIndex(cache interface {
	client.Reader
	client.FieldIndexer
}) *EventIndex {
	return &EventIndex{reader: cache, indexer: cache}
}

// register adds the indexes the first time; a failed one is tried again on the next lookup.
func (x *EventIndex) register(ctx context.Context) error {
	if x.registered.Load() {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for ; x.added < len(eventIndexes); x.added++ {
		ix := eventIndexes[x.added]
		if err := x.indexer.IndexField(ctx, &funnelv1.FunnelEvent{}, ix.name, ix.extract); err != nil {
			return fmt.Errorf("indexing FunnelEvents by %s: %w", ix.name, err)
		}
	}
	x.registered.Store(true)
	return nil
}

// list lists the cached events of ns whose index value is value: the cache's own
// objects, to read, never to change.
func (x *EventIndex) list(ctx context.Context, ns, index, value string) ([]funnelv1.FunnelEvent, error) {
	if err := x.register(ctx); err != nil {
		return nil, err
	}
	var list funnelv1.FunnelEventList
	if err := x.reader.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{index: value},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// DeliveringTo lists, from the cache, the events with unfinished deliveries to the
// subscription key. They are the cache's own objects: read them, never change them.
func (x *EventIndex) DeliveringTo(ctx context.Context, key types.NamespacedName) ([]funnelv1.FunnelEvent, error) {
	events, err := x.list(ctx, key.Namespace, IndexDeliveringTo, key.Name)
	if err != nil {
		return nil, fmt.Errorf("listing the FunnelEvents delivering to %s: %w", key, err)
	}
	return events, nil
}
