package delivery

import (
	"context"
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// IndexSubject is a field index of the controllers' FunnelEvent cache: the event's
// subjects, as "<label>=<value>" for each ordering key's label it carries. An ordered
// delivery finds the earlier events of its subject through it, and a finished delivery
// the events that waited for it: both cost the events of one subject, not a namespace.
const IndexSubject = "funnel.leasing.dev/subject"

func subjectsOf(o client.Object) []string {
	var out []string
	for _, k := range funnelv1.OrderingKeys {
		if v := o.GetLabels()[k.Label()]; v != "" {
			out = append(out, subjectValue(k, v))
		}
	}
	return out
}

func subjectValue(k funnelv1.OrderingKey, v string) string { return k.Label() + "=" + v }

// eventsOf lists, from the cache, the unfinished events of ns whose key is value. They
// are the cache's own objects: read them, never change them.
func (x *EventIndex) eventsOf(ctx context.Context, ns string, key funnelv1.OrderingKey, value string) ([]funnelv1.FunnelEvent, error) {
	events, err := x.list(ctx, ns, IndexSubject, subjectValue(key, value))
	if err != nil {
		return nil, fmt.Errorf("listing the FunnelEvents of %s %s: %w", key, value, err)
	}
	return events, nil
}

// orderTime is when an event happened, for ordering: occurredAt, or receivedAt for a
// format without it.
func orderTime(ev *funnelv1.FunnelEvent) time.Time {
	if ev.Spec.OccurredAt != nil {
		return ev.Spec.OccurredAt.Time
	}
	return ev.Spec.ReceivedAt.Time
}

// before tells whether a goes before b: occurredAt, then receivedAt, then the name.
func before(a, b *funnelv1.FunnelEvent) bool {
	if ta, tb := orderTime(a), orderTime(b); !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if ra, rb := a.Spec.ReceivedAt.Time, b.Spec.ReceivedAt.Time; !ra.Equal(rb) {
		return ra.Before(rb)
	}
	return strings.Compare(a.Name, b.Name) < 0
}

// ahead is the event just before ev in its subject (under sub's ordering key) that has
// not finished its delivery to sub: ev's delivery waits for it. An earlier event not
// routed yet is ahead if sub wants it. "" when nothing is ahead, or ev has no value for
// the key. Finished events are not in the cache, and not ahead.
func (r *Router) ahead(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription) (string, error) {
	key := sub.Spec.Ordering.Key
	value := ev.Labels[key.Label()]
	if value == "" {
		return "", nil
	}
	events, err := r.Events.eventsOf(ctx, ev.Namespace, key, value)
	if err != nil {
		return "", err
	}
	head, err := r.nearest(ctx, ev, sub, events, false)
	if err != nil || head == nil {
		return "", err
	}
	return head.Name, nil
}

// nearest is the event of events closest to ev on one side of it — before it, or after
// it with after — that still has a delivery to make to sub; nil when there is none.
func (r *Router) nearest(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription, events []funnelv1.FunnelEvent, after bool) (*funnelv1.FunnelEvent, error) {
	// goesFirst orders the side looked at outwards from ev.
	goesFirst := func(a, b *funnelv1.FunnelEvent) bool {
		if after {
			return before(a, b)
		}
		return before(b, a)
	}
	var near *funnelv1.FunnelEvent
	for i := range events {
		e := &events[i]
		if e.UID == ev.UID || !goesFirst(ev, e) || (near != nil && goesFirst(near, e)) {
			continue
		}
		if waits, err := r.delivering(ctx, e, sub); err != nil {
			return nil, err
		} else if waits {
			near = e
		}
	}
	return near, nil
}

// delivering tells whether e still has a delivery to make to sub: one routed and not
// finished, or, not routed yet, one sub wants.
func (r *Router) delivering(ctx context.Context, e *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription) (bool, error) {
	if e.Status.Phase.Finished() {
		return false, nil
	}
	if len(e.Status.Deliveries) == 0 {
		var input map[string]any
		return r.wants(ctx, sub, e, &input)
	}
	for _, d := range e.Status.Deliveries {
		if d.Subscription == sub.Name {
			return !finished(d.Phase), nil
		}
	}
	return false, nil
}

// Next lists the events whose turn may have come now that ev finished a delivery or left
// the cache: for each subscription of the namespace that orders by a key ev has, the
// first event after ev in that subject with a delivery to make to it. Only it can go
// ahead; each event wakes its own successor in turn, so a subject's backlog drains with
// one wake per event. None when no subscription of the namespace orders its deliveries.
func (r *Router) Next(ctx context.Context, ev *funnelv1.FunnelEvent) ([]funnelv1.FunnelEvent, error) {
	var subs funnelv1.FunnelSubscriptionList
	if err := r.Client.List(ctx, &subs, client.InNamespace(ev.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing FunnelSubscriptions: %w", err)
	}
	var out []funnelv1.FunnelEvent
	seen := map[string]bool{}
	for i := range subs.Items {
		sub := &subs.Items[i]
		if sub.Spec.Ordering == nil || ev.Labels[sub.Spec.Ordering.Key.Label()] == "" {
			continue
		}
		key := sub.Spec.Ordering.Key
		events, err := r.Events.eventsOf(ctx, ev.Namespace, key, ev.Labels[key.Label()])
		if err != nil {
			return nil, err
		}
		next, err := r.nearest(ctx, ev, sub, events, true)
		if err != nil {
			return nil, err
		}
		if next != nil && !seen[next.Name] {
			seen[next.Name] = true
			out = append(out, *next)
		}
	}
	return out, nil
}
