package delivery

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// IndexDeliveringTo is a field index of the controllers' FunnelEvent cache: the
// subscriptions an event still has deliveries (or dead letters) to make to. A change of a
// subscription (resumed, Ready again, its dead letter removed, deleted) wakes exactly
// those events, whatever timer they wait on.
const IndexDeliveringTo = "funnel.leasing.dev/delivering-to"

// IndexDeliveries registers IndexDeliveringTo and IndexSubject with the manager's cache.
func IndexDeliveries(ctx context.Context, indexer client.FieldIndexer) error {
	err := indexer.IndexField(ctx, &funnelv1.FunnelEvent{}, IndexDeliveringTo, func(o client.Object) []string {
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
	})
	if err != nil {
		return fmt.Errorf("indexing FunnelEvents by the subscriptions they deliver to: %w", err)
	}
	if err := indexer.IndexField(ctx, &funnelv1.FunnelEvent{}, IndexSubject, subjectsOf); err != nil {
		return fmt.Errorf("indexing FunnelEvents by subject: %w", err)
	}
	return nil
}

// DeliveringTo lists, from the cache, the events with unfinished deliveries to the
// subscription key. They are the cache's own objects: read them, never change them.
func DeliveringTo(ctx context.Context, cache client.Reader, key types.NamespacedName) ([]funnelv1.FunnelEvent, error) {
	var list funnelv1.FunnelEventList
	if err := cache.List(ctx, &list, client.InNamespace(key.Namespace), client.MatchingFields{IndexDeliveringTo: key.Name},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the FunnelEvents delivering to %s: %w", key, err)
	}
	return list.Items, nil
}
