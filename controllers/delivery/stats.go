package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// DefaultStatsInterval is how often subscription counts are written.
const DefaultStatsInterval = 10 * time.Second

// counts are increments not yet written to a subscription's status.
type counts struct {
	matched, succeeded, failed int64
	last                       time.Time
}

// Stats batches the matched/succeeded/failed counts of subscriptions and writes them
// every Interval, one patch per subscription that changed: a busy subscription costs
// one write per interval, not one per event. Counts not yet written when the leader
// stops are lost: they are statistics, the deliveries themselves are in the events.
type Stats struct {
	Client client.Client
	// Reader reads subscriptions from the API server: an optimistic-lock patch needs the
	// current resourceVersion, which a cache may lag behind.
	Reader   client.Reader
	Interval time.Duration

	mu      sync.Mutex
	pending map[types.NamespacedName]*counts
}

// NewStats returns a Stats writing through c.
func NewStats(c client.Client, reader client.Reader, interval time.Duration) *Stats {
	if interval <= 0 {
		interval = DefaultStatsInterval
	}
	return &Stats{Client: c, Reader: reader, Interval: interval, pending: map[types.NamespacedName]*counts{}}
}

func (s *Stats) add(key types.NamespacedName, fn func(*counts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.pending[key]
	if c == nil {
		c = &counts{}
		s.pending[key] = c
	}
	fn(c)
}

// Matched counts an event routed to the subscription.
func (s *Stats) Matched(key types.NamespacedName) { s.add(key, func(c *counts) { c.matched++ }) }

// Finished counts a delivery that ended, at time t.
func (s *Stats) Finished(key types.NamespacedName, succeeded bool, t time.Time) {
	s.add(key, func(c *counts) {
		if succeeded {
			c.succeeded++
		} else {
			c.failed++
		}
		if t.After(c.last) {
			c.last = t
		}
	})
}

// NeedLeaderElection: counts come from deliveries, which run on the leader.
func (s *Stats) NeedLeaderElection() bool { return true }

// Start writes pending counts every Interval until ctx ends, and once more then.
func (s *Stats) Start(ctx context.Context) error {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.Flush(flushCtx)
			cancel()
			return nil
		case <-t.C:
			s.Flush(ctx)
		}
	}
}

// Flush writes every pending count now.
func (s *Stats) Flush(ctx context.Context) {
	s.mu.Lock()
	batch := s.pending
	s.pending = map[types.NamespacedName]*counts{}
	s.mu.Unlock()
	for key, c := range batch {
		if err := s.write(ctx, key, c); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Writing subscription counts", "subscription", key)
		}
	}
}

func (s *Stats) write(ctx context.Context, key types.NamespacedName, c *counts) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var sub funnelv1.FunnelSubscription
		if err := s.Reader.Get(ctx, key, &sub); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("reading FunnelSubscription %s: %w", key, err)
		}
		patch := client.MergeFromWithOptions(sub.DeepCopy(), client.MergeFromWithOptimisticLock{})
		sub.Status.Matched += c.matched
		sub.Status.Succeeded += c.succeeded
		sub.Status.Failed += c.failed
		if !c.last.IsZero() && (sub.Status.LastDeliveryTime == nil || c.last.After(sub.Status.LastDeliveryTime.Time)) {
			t := metav1.NewTime(c.last)
			sub.Status.LastDeliveryTime = &t
		}
		return s.Client.Status().Patch(ctx, &sub, patch)
	})
}
