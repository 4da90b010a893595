package delivery

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

func TestOrderingKeyLabels(t *testing.T) {
	want := map[funnelv1.OrderingKey]string{
		funnelv1.OrderByLeaseTransaction: funnel.LabelLeaseTransactionID, funnelv1.OrderByCommunity: funnel.LabelCommunityID,
		funnelv1.OrderByUnit: funnel.LabelUnitID, funnelv1.OrderByClient: funnel.LabelClientID, funnelv1.OrderByRenter: funnel.LabelRenterID,
	}
	for _, k := range funnelv1.OrderingKeys {
		if k.Label() != want[k] {
			t.Errorf("%s: label %q, the receiver sets %q", k, k.Label(), want[k])
		}
	}
}

// orderedEvent is an event of lease transaction tx (none when empty) that occurred at
// minute occurred, received at minute received.
func orderedEvent(name, tx string, occurred, received int, deliveries ...funnelv1.DeliveryStatus) *funnelv1.FunnelEvent {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: name, UID: types.UID(name),
		Labels: map[string]string{funnelv1.LabelEventType: "lease_transaction.status_updated"}},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, Type: "lease_transaction.status_updated",
			ReceivedAt: metav1.NewMicroTime(base.Add(time.Duration(received) * time.Minute)), Data: runtime.RawExtension{Raw: []byte(`{}`)}}}
	occ := metav1.NewMicroTime(base.Add(time.Duration(occurred) * time.Minute))
	ev.Spec.OccurredAt = &occ
	if tx != "" {
		ev.Labels[funnel.LabelLeaseTransactionID] = tx
	}
	if len(deliveries) > 0 {
		ev.Status.Phase, ev.Status.Deliveries = funnelv1.PhaseProcessing, deliveries
	}
	return ev
}

func deliveryTo(sub string, phase funnelv1.DeliveryPhase) funnelv1.DeliveryStatus {
	return funnelv1.DeliveryStatus{Subscription: sub, AttemptStatus: funnelv1.AttemptStatus{Phase: phase}}
}

// TestOrdering: which event an ordered delivery waits for, and which event's turn comes
// when one finishes.
func TestOrdering(t *testing.T) {
	ordered := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "pms"},
		Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"}, Ordering: &funnelv1.Ordering{Key: funnelv1.OrderByLeaseTransaction},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://pms"}}}}
	for _, tc := range []struct {
		name   string
		events []*funnelv1.FunnelEvent
		// ahead: for each event, the event it waits for ("" none).
		ahead map[string]string
		// next: for each event, the events whose turn comes when it finishes.
		next map[string][]string
	}{
		{name: "not routed yet: each waits for the one that occurred just before it, whatever the order received",
			events: []*funnelv1.FunnelEvent{orderedEvent("c", "1", 3, 1), orderedEvent("a", "1", 1, 2), orderedEvent("b", "1", 2, 3), orderedEvent("x", "2", 0, 0)},
			ahead:  map[string]string{"a": "", "b": "a", "c": "b", "x": ""},
			next:   map[string][]string{"a": {"b"}, "b": {"c"}, "c": nil, "x": nil}},
		{name: "a delivery finished, or failed for good, is not waited for",
			events: []*funnelv1.FunnelEvent{orderedEvent("a", "1", 1, 1, deliveryTo("pms", funnelv1.DeliverySucceeded), deliveryTo("other", funnelv1.DeliveryPending)),
				orderedEvent("b", "1", 2, 2, deliveryTo("pms", funnelv1.DeliveryFailed)), orderedEvent("c", "1", 3, 3, deliveryTo("pms", funnelv1.DeliveryPending))},
			ahead: map[string]string{"b": "", "c": ""}},
		{name: "an event routed elsewhere, or one the subscription does not want, is skipped",
			events: []*funnelv1.FunnelEvent{orderedEvent("a", "1", 1, 1, deliveryTo("pms", funnelv1.DeliveryPending)),
				orderedEvent("b", "1", 2, 2, deliveryTo("other", funnelv1.DeliveryPending)), orderedEvent("c", "1", 3, 3),
				orderedEvent("d", "1", 4, 4)},
			ahead: map[string]string{"b": "a", "c": "a", "d": "c"},
			next:  map[string][]string{"a": {"c"}}},
		{name: "the same occurredAt: receivedAt, then the name, decide",
			events: []*funnelv1.FunnelEvent{orderedEvent("b", "1", 1, 1), orderedEvent("a", "1", 1, 2), orderedEvent("c", "1", 1, 2)},
			ahead:  map[string]string{"b": "", "a": "b", "c": "a"}},
		{name: "an event without the key waits for nothing",
			events: []*funnelv1.FunnelEvent{orderedEvent("a", "1", 1, 1), orderedEvent("b", "", 2, 2)},
			ahead:  map[string]string{"b": ""}, next: map[string][]string{"b": nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithIndex(&funnelv1.FunnelEvent{}, IndexSubject, subjectsOf).WithObjects(ordered.DeepCopy())
			byName := map[string]*funnelv1.FunnelEvent{}
			for _, ev := range tc.events {
				if ev.Name == "d" {
					ev.Spec.Type, ev.Labels[funnelv1.LabelEventType] = "lease.move_in", "lease.move_in" // not wanted
				}
				b = b.WithObjects(ev.DeepCopy())
				byName[ev.Name] = ev
			}
			c := b.Build()
			r := &Router{Client: c, Events: &EventIndex{reader: c, added: len(eventIndexes)}}
			for name, want := range tc.ahead {
				if got, err := r.ahead(context.Background(), byName[name], ordered); err != nil || got != want {
					t.Errorf("%s waits for %q (%v), want %q", name, got, err, want)
				}
			}
			for name, want := range tc.next {
				got, err := r.Next(context.Background(), byName[name])
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range got {
					names = append(names, e.Name)
				}
				if len(names) != len(want) || (len(want) > 0 && names[0] != want[0]) {
					t.Errorf("after %s: %v, want %v", name, names, want)
				}
			}
		})
	}
}
