package controllers

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
)

func deliveryOf(name string, phase funnelv1.DeliveryPhase, attempts int32) funnelv1.DeliveryStatus {
	return funnelv1.DeliveryStatus{Subscription: name, AttemptStatus: funnelv1.AttemptStatus{Phase: phase, Attempts: attempts}}
}

func TestValidOutcome(t *testing.T) {
	for _, tc := range []struct {
		name       string
		known      bool
		deliveries []funnelv1.DeliveryStatus
		phase      funnelv1.EventPhase
		delivered  metav1.ConditionStatus
		ready      metav1.ConditionStatus
		reason     string
	}{
		{"known type, no subscriptions", true, nil, funnelv1.PhaseSucceeded, metav1.ConditionTrue, metav1.ConditionTrue, funnelv1.ReasonProcessed},
		{"unknown type, no subscriptions", false, nil, funnelv1.PhaseIgnored, metav1.ConditionTrue, metav1.ConditionTrue, funnelv1.ReasonNotHandled},
		{"all delivered", true, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliverySucceeded, 1), deliveryOf("b", funnelv1.DeliverySucceeded, 3)},
			funnelv1.PhaseSucceeded, metav1.ConditionTrue, metav1.ConditionTrue, funnelv1.ReasonProcessed},
		{"unknown type delivered", false, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliverySucceeded, 1)},
			funnelv1.PhaseSucceeded, metav1.ConditionTrue, metav1.ConditionTrue, funnelv1.ReasonProcessed},
		{"one awaiting retry", true, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliverySucceeded, 1), deliveryOf("b", funnelv1.DeliveryPending, 2)},
			funnelv1.PhaseProcessing, metav1.ConditionUnknown, metav1.ConditionFalse, funnelv1.ReasonProcessing},
		{"a Job running, another failed", true, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliveryFailed, 4), deliveryOf("b", funnelv1.DeliveryRunning, 1)},
			funnelv1.PhaseProcessing, metav1.ConditionUnknown, metav1.ConditionFalse, funnelv1.ReasonProcessing},
		{"one failed for good", true, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliverySucceeded, 1), deliveryOf("b", funnelv1.DeliveryFailed, 4)},
			funnelv1.PhaseFailed, metav1.ConditionFalse, metav1.ConditionFalse, funnelv1.ReasonDeliveryFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOutcome(tc.known, funnel.Details{Summary: "summary"}, tc.deliveries)
			if o.phase != tc.phase || o.delivered.Status != tc.delivered || o.ready.Status != tc.ready || o.ready.Reason != tc.reason {
				t.Errorf("got phase %s, Delivered %s, Ready %s/%s; want %s, %s, %s/%s",
					o.phase, o.delivered.Status, o.ready.Status, o.ready.Reason, tc.phase, tc.delivered, tc.ready, tc.reason)
			}
			if o.validated.Status != metav1.ConditionTrue {
				t.Errorf("Validated = %s, want True", o.validated.Status)
			}
		})
	}
}

func TestOutcomeApply(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var st funnelv1.FunnelEventStatus
	newOutcome(true, funnel.Details{Summary: "s"}, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliveryPending, 2), deliveryOf("b", funnelv1.DeliverySucceeded, 1)}).apply(&st, 1, now)
	if st.Phase != funnelv1.PhaseProcessing || st.Attempts != 3 || st.ProcessedTime != nil {
		t.Fatalf("processing: got phase %s, attempts %d, processedTime %v", st.Phase, st.Attempts, st.ProcessedTime)
	}
	newOutcome(true, funnel.Details{Summary: "s"}, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliverySucceeded, 3), deliveryOf("b", funnelv1.DeliverySucceeded, 1)}).apply(&st, 1, now)
	if st.Phase != funnelv1.PhaseSucceeded || st.Attempts != 4 || !st.ProcessedTime.Time.Equal(now) {
		t.Fatalf("finished: got phase %s, attempts %d, processedTime %v", st.Phase, st.Attempts, st.ProcessedTime)
	}
	// The same outcome again keeps the first processedTime, so it writes nothing new.
	newOutcome(true, funnel.Details{Summary: "s"}, st.Deliveries).apply(&st, 1, now.Add(time.Hour))
	if !st.ProcessedTime.Time.Equal(now) {
		t.Errorf("processedTime moved to %v", st.ProcessedTime)
	}
	for _, c := range st.Conditions {
		if c.ObservedGeneration != 1 {
			t.Errorf("condition %s has observedGeneration %d", c.Type, c.ObservedGeneration)
		}
	}
}

func TestValidatedCondition(t *testing.T) {
	invalid := funnel.Issue{Field: "data.unit_id", Reason: "required integer is missing", Invalid: true}
	note := funnel.Issue{Field: "data.status", Reason: `"scheduled" is not one of the documented values`}
	envelope := funnel.Issue{Field: "event_timestamp", Reason: "is null", Invalid: true}
	for _, tc := range []struct {
		name    string
		known   bool
		issues  []funnel.Issue
		status  metav1.ConditionStatus
		reason  string
		message []string
	}{
		{"as documented", true, nil, metav1.ConditionTrue, funnelv1.ReasonValid, []string{"matches"}},
		{"unknown type", false, nil, metav1.ConditionTrue, funnelv1.ReasonValid, []string{"Unknown event type"}},
		{"an undocumented value is noted, not invalid", true, []funnel.Issue{note}, metav1.ConditionTrue, funnelv1.ReasonUndocumentedShape, []string{"data.status"}},
		{"a required field missing", true, []funnel.Issue{note, invalid}, metav1.ConditionFalse, funnelv1.ReasonInvalidPayload,
			[]string{"Invalid event data: data.unit_id: required integer is missing", "Also: data.status"}},
		{"an envelope error counts too", false, []funnel.Issue{envelope}, metav1.ConditionFalse, funnelv1.ReasonInvalidPayload, []string{"event_timestamp: is null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Validation informs: the phase follows the deliveries whatever the data.
			o := newOutcome(tc.known, funnel.Details{Issues: tc.issues}, []funnelv1.DeliveryStatus{deliveryOf("a", funnelv1.DeliverySucceeded, 1)})
			if o.phase != funnelv1.PhaseSucceeded {
				t.Errorf("phase %s, want Succeeded: invalid data is still delivered", o.phase)
			}
			c := o.validated
			if c.Status != tc.status || c.Reason != tc.reason {
				t.Errorf("Validated %s/%s, want %s/%s", c.Status, c.Reason, tc.status, tc.reason)
			}
			for _, m := range tc.message {
				if !strings.Contains(c.Message, m) {
					t.Errorf("message %q lacks %q", c.Message, m)
				}
			}
		})
	}
}

func TestEnvelopeIssues(t *testing.T) {
	ev := &funnelv1.FunnelEvent{}
	if got := envelopeIssues(ev); got != nil {
		t.Errorf("no annotation: %v", got)
	}
	ev.Annotations = map[string]string{funnelv1.AnnotationIssues: `[{"field":"id","reason":"is null","invalid":true},{"field":"timestamp","reason":"is a number"}]`}
	want := []funnel.Issue{{Field: "id", Reason: "is null", Invalid: true}, {Field: "timestamp", Reason: "is a number"}}
	if got := envelopeIssues(ev); !slices.Equal(got, want) {
		t.Errorf("envelopeIssues = %v, want %v", got, want)
	}
	ev.Annotations[funnelv1.AnnotationIssues] = "not json"
	if got := envelopeIssues(ev); len(got) != 1 || got[0].Invalid {
		t.Errorf("an unreadable annotation: %v", got)
	}
}

func TestResetForReplay(t *testing.T) {
	st := funnelv1.FunnelEventStatus{Phase: funnelv1.PhaseFailed, Duplicates: 3, Summary: "x", Attempts: 5, Replays: 1}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, Reason: funnelv1.ReasonDeliveryFailed, Message: "Delivery failed for pms"})
	previous := resetForReplay(&st, "r2")
	if previous != "previously Failed: Delivery failed for pms" {
		t.Errorf("previous = %q", previous)
	}
	want := funnelv1.FunnelEventStatus{Duplicates: 3, ObservedReplay: "r2"}
	if st.Phase != want.Phase || st.Duplicates != 3 || st.ObservedReplay != "r2" || st.Conditions != nil || st.Attempts != 0 || st.Summary != "" ||
		st.Replays != 2 {
		t.Errorf("status after reset = %+v", st)
	}
	if got := resetForReplay(&funnelv1.FunnelEventStatus{}, "r1"); got != "never processed" {
		t.Errorf("unprocessed: previous = %q", got)
	}
}

func TestReplayToken(t *testing.T) {
	if replayToken("2026-11-26T20:00:00Z") != "2026-11-26T20:00:00Z" || replayToken("") != "" {
		t.Error("short values must be kept as they are")
	}
	long := strings.Repeat("x", 200)
	tok := replayToken(long)
	if !strings.HasPrefix(tok, "sha256:") || len(tok) > 128 || tok == replayToken(long+"y") {
		t.Errorf("long value token %q", tok)
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("→", 10) // 3 bytes each
	for n := 4; n < len(s); n++ {
		got := delivery.Truncate(s, n)
		if len(got) > n || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
			t.Errorf("truncate(%d) = %q (%d bytes)", n, got, len(got))
		}
	}
	if delivery.Truncate("short", 10) != "short" {
		t.Error("short strings are kept")
	}
}

// TestFamilyPredicates checks that every event reaches exactly one family controller.
func TestFamilyPredicates(t *testing.T) {
	types := append(funnel.KnownTypes(), "lease_transaction.brand_new", "unheard.of", "")
	for _, typ := range types {
		ev := &funnelv1.FunnelEvent{}
		ev.Labels = map[string]string{funnelv1.LabelEventType: typ}
		var takers []funnel.Family
		for _, f := range Families {
			if familyPredicate(f).Create(event.CreateEvent{Object: ev}) {
				takers = append(takers, f)
			}
		}
		want := funnel.FamilyOf(typ)
		if len(takers) != 1 || takers[0] != want {
			t.Errorf("type %q is taken by %v, want only %s", typ, takers, want)
		}
	}
}
