package receiver

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// maxPendingDuplicates bounds the events whose duplicate counts wait to be written; past
// it new counts are dropped (and counted in a metric): the count is best effort, memory
// is not.
const maxPendingDuplicates = 10000

// duplicateCounter adds duplicate receipts to status.duplicates in the background, so a
// duplicate is answered as fast as a first receipt and a failing status write never fails
// a request. Receipts of the same event that arrive together are coalesced into one patch.
type duplicateCounter struct {
	client client.Client

	mu      sync.Mutex
	pending map[types.NamespacedName]pendingCount
	wake    chan struct{}
}

// pendingCount is what is to be added to one event, with the version of the event the
// receiver read when it compared the duplicate: usually still current, it saves reading
// the event again before the patch.
type pendingCount struct {
	n               int64
	resourceVersion string
	duplicates      int64
}

func newDuplicateCounter(c client.Client) *duplicateCounter {
	return &duplicateCounter{client: c, pending: map[types.NamespacedName]pendingCount{}, wake: make(chan struct{}, 1)}
}

// add records one more receipt of the event seen as ev; it never blocks.
func (d *duplicateCounter) add(ev *funnelv1.FunnelEvent) {
	key := client.ObjectKeyFromObject(ev)
	d.mu.Lock()
	p, ok := d.pending[key]
	if !ok && len(d.pending) >= maxPendingDuplicates {
		d.mu.Unlock()
		duplicateCountsDropped.Inc()
		return
	}
	d.pending[key] = pendingCount{n: p.n + 1, resourceVersion: ev.ResourceVersion, duplicates: ev.Status.Duplicates}
	d.mu.Unlock()
	if !ok {
		duplicateCountsPending.Inc()
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run writes pending counts until ctx ends.
func (d *duplicateCounter) run(ctx context.Context) {
	defer func() {
		d.mu.Lock()
		duplicateCountsPending.Sub(float64(len(d.pending)))
		d.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		}
		d.mu.Lock()
		batch := d.pending
		d.pending = map[types.NamespacedName]pendingCount{}
		d.mu.Unlock()
		for key, p := range batch {
			if err := d.write(ctx, key, p); err != nil {
				duplicateCountsDropped.Add(float64(p.n))
				ctrl.LoggerFrom(ctx).V(1).Info("Could not record duplicate receipts", "event", key, "count", p.n, "error", err.Error())
			}
			duplicateCountsPending.Dec()
		}
	}
}

// write adds p.n to the event's status.duplicates with an optimistic-lock patch, so
// concurrent writers (the reconciler, another replica) never lose an increment. The first
// try uses the version the receiver read; after a conflict the event is read again.
func (d *duplicateCounter) write(ctx context.Context, key types.NamespacedName, p pendingCount) error {
	ev := &funnelv1.FunnelEvent{}
	ev.Namespace, ev.Name, ev.ResourceVersion, ev.Status.Duplicates = key.Namespace, key.Name, p.resourceVersion, p.duplicates
	first := true
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			ev = &funnelv1.FunnelEvent{}
			if err := d.client.Get(ctx, key, ev); err != nil {
				if apierrors.IsNotFound(err) {
					return nil // deleted meanwhile (retention): nothing to count on
				}
				return fmt.Errorf("reading FunnelEvent %s: %w", key, err)
			}
		}
		first = false
		patch := client.MergeFromWithOptions(ev.DeepCopy(), client.MergeFromWithOptimisticLock{})
		ev.Status.Duplicates += p.n
		err := d.client.Status().Patch(ctx, ev, patch)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}
