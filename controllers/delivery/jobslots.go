package delivery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// jobSlotRecheck is how soon a delivery held by maxInFlight looks again by itself; a
// Job of its subscription that ends wakes it sooner (HeldFor).
const jobSlotRecheck = 30 * time.Second

// reservationKeep is how long a Job admitted but not yet seen in the cache counts as
// active: the cache's lag after a create, with room to spare.
const reservationKeep = time.Minute

// jobSlots bounds a subscription's active Jobs by its maxInFlight. The count is the
// subscription's Jobs in the operator's Job cache that have not completed or failed, so
// it holds across restarts and leaders; the Jobs admitted by this process and not in
// the cache yet are added, so concurrent passes do not overshoot while the cache lags.
type jobSlots struct {
	mu sync.Mutex
	// admitted: per subscription (namespace/name), the Jobs admitted and not yet seen in
	// the cache, with when.
	admitted map[string]map[string]time.Time
}

// admit tells whether the Job name of sub may start now: true when it exists already
// (its attempt goes on) or fewer than limit other Jobs of sub are active. An admitted
// Job counts as active until the cache shows it.
func (s *jobSlots) admit(ctx context.Context, cache client.Reader, sub *funnelv1.FunnelSubscription, name string, limit int, now time.Time) (bool, error) {
	var jobs batchv1.JobList
	if err := cache.List(ctx, &jobs, client.InNamespace(sub.Namespace),
		client.MatchingLabels{LabelSubscription: funnel.LabelValue(sub.Name)}, client.UnsafeDisableDeepCopy); err != nil {
		return false, fmt.Errorf("listing the Jobs of FunnelSubscription %s: %w", sub.Name, err)
	}
	key := sub.Namespace + "/" + sub.Name
	s.mu.Lock()
	defer s.mu.Unlock()
	mine := s.admitted[key]
	active := 0
	for i := range jobs.Items {
		j := &jobs.Items[i]
		delete(mine, j.Name) // the cache has it now
		if j.Name == name {
			return true, nil
		}
		if !JobEnded(j) {
			active++
		}
	}
	for n, at := range mine {
		if now.Sub(at) > reservationKeep {
			delete(mine, n)
		} else if n != name {
			active++
		}
	}
	if len(mine) == 0 {
		delete(s.admitted, key)
	}
	if active >= limit {
		return false, nil
	}
	if s.admitted == nil {
		s.admitted = map[string]map[string]time.Time{}
	}
	if s.admitted[key] == nil {
		s.admitted[key] = map[string]time.Time{}
	}
	s.admitted[key][name] = now
	return true, nil
}

// release forgets an admitted Job that was not created.
func (s *jobSlots) release(sub *funnelv1.FunnelSubscription, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := sub.Namespace + "/" + sub.Name
	if delete(s.admitted[key], name); len(s.admitted[key]) == 0 {
		delete(s.admitted, key)
	}
}

// JobEnded tells whether a Job completed or failed.
func JobEnded(j *batchv1.Job) bool {
	return slices.ContainsFunc(j.Status.Conditions, func(c batchv1.JobCondition) bool {
		return c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed)
	})
}

// jobSlotGate holds back a delivery's next Job while its subscription has maxInFlight
// Jobs active (sequence.gate), or nil when the subscription has no bound.
func (r *Router) jobSlotGate(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription) func(int32, time.Time) (bool, time.Duration) {
	m := sub.Spec.Delivery.MaxInFlight
	if m == nil || sub.Spec.Action.Job == nil {
		return nil
	}
	return func(number int32, now time.Time) (bool, time.Duration) {
		ok, err := r.jobSlots.admit(ctx, r.Client, sub, JobName(ev, sub.Name, false, number), int(*m), now)
		if err != nil {
			return false, jobSlotRecheck
		}
		return ok, jobSlotRecheck
	}
}

// jobSlotsHeld is the message of a delivery waiting for a Job of its subscription to end.
func jobSlotsHeld(sub *funnelv1.FunnelSubscription) string {
	return fmt.Sprintf("FunnelSubscription %s has %d Jobs active (spec.delivery.maxInFlight); waiting for one to end",
		sub.Name, *sub.Spec.Delivery.MaxInFlight)
}

// HeldFor lists the events whose delivery may start now that job, a Job of a
// subscription with maxInFlight, ended or is gone: the earliest received of those held
// by it, at most maxInFlight of them (one wake per freed slot, not the whole backlog).
func (r *Router) HeldFor(ctx context.Context, job client.Object) ([]funnelv1.FunnelEvent, error) {
	label := job.GetLabels()[LabelSubscription]
	if label == "" {
		return nil, nil
	}
	var subs funnelv1.FunnelSubscriptionList
	if err := r.Client.List(ctx, &subs, client.InNamespace(job.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing FunnelSubscriptions: %w", err)
	}
	var out []funnelv1.FunnelEvent
	for i := range subs.Items {
		sub := &subs.Items[i]
		if funnel.LabelValue(sub.Name) != label || sub.Spec.Delivery.MaxInFlight == nil {
			continue
		}
		events, err := r.Events.DeliveringTo(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: sub.Name})
		if err != nil {
			return nil, err
		}
		var held []funnelv1.FunnelEvent
		for _, ev := range events {
			if slices.ContainsFunc(ev.Status.Deliveries, func(d funnelv1.DeliveryStatus) bool {
				return d.Subscription == sub.Name && d.Reason == funnelv1.WaitMaxInFlight
			}) {
				held = append(held, ev)
			}
		}
		slices.SortFunc(held, func(a, b funnelv1.FunnelEvent) int {
			if c := a.Spec.ReceivedAt.Compare(b.Spec.ReceivedAt.Time); c != 0 {
				return c
			}
			return strings.Compare(a.Name, b.Name)
		})
		out = append(out, held[:min(len(held), int(*sub.Spec.Delivery.MaxInFlight))]...)
	}
	return out, nil
}
