package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
)

// Dispatcher is the seam where routing and delivery plug into event processing: given a
// validated event it decides which deliveries the event has and advances them. It owns
// status.deliveries; the reconciler derives phase and conditions from what it returns.
// delivery.Router is the implementation; NoDeliveries stands in where none is wanted.
type Dispatcher interface {
	Dispatch(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details) (delivery.Result, error)
}

// NoDeliveries is a Dispatcher that never delivers: every valid event is done as soon as
// it is validated.
type NoDeliveries struct{}

// Dispatch returns no deliveries.
func (NoDeliveries) Dispatch(context.Context, *funnelv1.FunnelEvent, funnel.Details) (delivery.Result, error) {
	return delivery.Result{}, nil
}

// outcome is a pass's verdict on an event, from which status is written.
type outcome struct {
	phase     funnelv1.EventPhase
	validated metav1.Condition
	delivered metav1.Condition
	ready     metav1.Condition
	// conflict is the ContentConflict condition of a variant, nil for other events.
	conflict   *metav1.Condition
	summary    string
	deliveries []funnelv1.DeliveryStatus
}

// newOutcome derives phase and conditions from the event's validation and deliveries.
// Validation informs: Validated says how the event differs from Funnel's docs, and an
// invalid event is delivered like any other (to the subscriptions that do not ask for
// valid data only). The phase follows the deliveries: Succeeded when all succeeded (or
// there are none and the type is known), Ignored when there are none and the type is
// unknown, Failed when any failed for good and none is still under way, Processing
// otherwise.
func newOutcome(known bool, details funnel.Details, deliveries []funnelv1.DeliveryStatus) outcome {
	o := outcome{
		summary:    details.Summary,
		deliveries: deliveries,
		validated:  validatedCondition(known, details.Issues),
	}
	var pending, failed []string
	for _, d := range deliveries {
		switch {
		case d.Phase == funnelv1.DeliveryFailed && d.DeadLetter != nil &&
			d.DeadLetter.Phase != funnelv1.DeliverySucceeded && d.DeadLetter.Phase != funnelv1.DeliveryFailed:
			pending = append(pending, d.Subscription+" (dead letter)")
		case d.Phase == funnelv1.DeliverySucceeded:
		case d.Phase == funnelv1.DeliveryFailed:
			failed = append(failed, d.Subscription)
		default:
			pending = append(pending, d.Subscription)
		}
	}
	switch {
	case len(deliveries) == 0 && known:
		o.phase = funnelv1.PhaseSucceeded
		o.delivered = condition(funnelv1.ConditionDelivered, metav1.ConditionTrue, funnelv1.ReasonNoSubscriptions, "No subscription matches the event")
		o.ready = condition(funnelv1.ConditionReady, metav1.ConditionTrue, funnelv1.ReasonProcessed, "Processed")
	case len(deliveries) == 0:
		o.phase = funnelv1.PhaseIgnored
		o.delivered = condition(funnelv1.ConditionDelivered, metav1.ConditionTrue, funnelv1.ReasonNoSubscriptions, "No subscription matches the event")
		o.ready = condition(funnelv1.ConditionReady, metav1.ConditionTrue, funnelv1.ReasonNotHandled, "No handler knows this event type and no subscription wants it")
	case len(pending) > 0:
		o.phase = funnelv1.PhaseProcessing
		msg := fmt.Sprintf("Delivering to %d of %d subscriptions: %s", len(pending), len(deliveries), joinNames(pending))
		o.delivered = condition(funnelv1.ConditionDelivered, metav1.ConditionUnknown, funnelv1.ReasonDelivering, msg)
		o.ready = condition(funnelv1.ConditionReady, metav1.ConditionFalse, funnelv1.ReasonProcessing, msg)
	case len(failed) > 0:
		o.phase = funnelv1.PhaseFailed
		msg := fmt.Sprintf("Delivery failed for %d of %d subscriptions: %s", len(failed), len(deliveries), joinNames(failed))
		o.delivered = condition(funnelv1.ConditionDelivered, metav1.ConditionFalse, funnelv1.ReasonDeliveryFailed, msg)
		o.ready = condition(funnelv1.ConditionReady, metav1.ConditionFalse, funnelv1.ReasonDeliveryFailed, msg)
	default:
		o.phase = funnelv1.PhaseSucceeded
		msg := fmt.Sprintf("Delivered to %d subscriptions", len(deliveries))
		o.delivered = condition(funnelv1.ConditionDelivered, metav1.ConditionTrue, funnelv1.ReasonAllDelivered, msg)
		o.ready = condition(funnelv1.ConditionReady, metav1.ConditionTrue, funnelv1.ReasonProcessed, msg)
	}
	return o
}

// notReceived is the outcome of an event the receiver did not create (why says how it
// tells): Failed, never delivered. Validation is still reported, for whoever looks into it.
func notReceived(known bool, details funnel.Details, why error) outcome {
	msg := "Not delivered: not created by the operator's receiver (" + why.Error() + ")"
	return outcome{
		phase:     funnelv1.PhaseFailed,
		summary:   details.Summary,
		validated: validatedCondition(known, details.Issues),
		delivered: condition(funnelv1.ConditionDelivered, metav1.ConditionFalse, funnelv1.ReasonNotReceived, msg),
		ready:     condition(funnelv1.ConditionReady, metav1.ConditionFalse, funnelv1.ReasonNotReceived, msg),
	}
}

// apply writes an outcome into the event's status. processedTime is stamped the first
// time a pass reaches a final phase, so an unchanged outcome writes nothing new.
func (o outcome) apply(st *funnelv1.FunnelEventStatus, generation int64, now time.Time) {
	st.Phase = o.phase
	st.Summary = o.summary
	st.Deliveries = o.deliveries
	st.Attempts = 0
	for _, d := range o.deliveries {
		st.Attempts += d.Attempts
	}
	conds := []metav1.Condition{o.validated, o.delivered, o.ready}
	if o.conflict != nil {
		conds = append(conds, *o.conflict)
	}
	for _, c := range conds {
		c.ObservedGeneration = generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	if o.phase.Finished() {
		if st.ProcessedTime == nil {
			t := metav1.NewTime(now)
			st.ProcessedTime = &t
		}
	} else {
		st.ProcessedTime = nil
	}
}

// resetForReplay clears what the previous processing recorded, so the next pass starts
// over, counts the replay (its deliveries are new ones: keys and Job names carry the
// count, so a reused annotation value is a new replay too), and returns a line describing the previous outcome (kept in an Event). The
// outcome is read from the Ready condition: a replay request has already set the phase
// back to Pending.
func resetForReplay(st *funnelv1.FunnelEventStatus, token string) string {
	previous := "never processed"
	if c := meta.FindStatusCondition(st.Conditions, funnelv1.ConditionReady); c != nil {
		outcome := funnelv1.PhaseFailed
		switch {
		case c.Status == metav1.ConditionTrue && c.Reason == funnelv1.ReasonNotHandled:
			outcome = funnelv1.PhaseIgnored
		case c.Status == metav1.ConditionTrue:
			outcome = funnelv1.PhaseSucceeded
		case c.Reason == funnelv1.ReasonProcessing:
			outcome = funnelv1.PhaseProcessing
		}
		previous = "previously " + string(outcome) + ": " + c.Message
	}
	*st = funnelv1.FunnelEventStatus{Duplicates: st.Duplicates, ObservedReplay: token, Replays: st.Replays + 1}
	return previous
}

// replayToken is what status.observedReplay records for a replay annotation value; long
// values are hashed to fit the field.
func replayToken(value string) string {
	if len(value) <= 64 {
		return value
	}
	sum := sha256.Sum256([]byte(value))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// conflictCondition says, for an event stored as a variant (label variant-of), which
// event its identity was stored as first; nil for other events.
func conflictCondition(ev *funnelv1.FunnelEvent) *metav1.Condition {
	first, ok := ev.Labels[funnelv1.LabelVariantOf]
	if !ok {
		return nil
	}
	c := condition(funnelv1.ConditionContentConflict, metav1.ConditionTrue, funnelv1.ReasonDifferentContent,
		fmt.Sprintf("Event %s (type %s, receiver %s) was received before with different content, stored as %s; this version is kept and processed too",
			idOrContent(ev.Spec.EventID), ev.Spec.Type, ev.Spec.Receiver, first))
	return &c
}

func idOrContent(id string) string {
	if id == "" {
		return "without id"
	}
	return "id " + id
}

// validatedCondition is False, reason InvalidPayload, when an issue contradicts what
// Funnel documents as required; True otherwise, reason UndocumentedShape when values
// were read that the docs do not describe. The message lists the issues, invalid first.
func validatedCondition(known bool, issues []funnel.Issue) metav1.Condition {
	var invalid, notes []string
	for _, i := range issues {
		if i.Invalid {
			invalid = append(invalid, i.String())
		} else {
			notes = append(notes, i.String())
		}
	}
	switch {
	case len(invalid) > 0:
		msg := "Invalid event data: " + strings.Join(invalid, "; ")
		if len(notes) > 0 {
			msg += ". Also: " + strings.Join(notes, "; ")
		}
		return condition(funnelv1.ConditionValidated, metav1.ConditionFalse, funnelv1.ReasonInvalidPayload, msg)
	case len(notes) > 0:
		return condition(funnelv1.ConditionValidated, metav1.ConditionTrue, funnelv1.ReasonUndocumentedShape,
			"Accepted; differs from Funnel's docs: "+strings.Join(notes, "; "))
	case !known:
		return condition(funnelv1.ConditionValidated, metav1.ConditionTrue, funnelv1.ReasonValid, "Unknown event type: any data object is accepted")
	}
	return condition(funnelv1.ConditionValidated, metav1.ConditionTrue, funnelv1.ReasonValid, "Data matches its event type")
}

// envelopeIssues are the issues the receiver recorded about the envelope (annotation
// funnel.leasing.dev/issues); an annotation that does not read as such is one issue.
func envelopeIssues(ev *funnelv1.FunnelEvent) []funnel.Issue {
	raw, ok := ev.Annotations[funnelv1.AnnotationIssues]
	if !ok {
		return nil
	}
	var issues []funnel.Issue
	if err := json.Unmarshal([]byte(raw), &issues); err != nil {
		return []funnel.Issue{{Field: "metadata.annotations", Reason: funnelv1.AnnotationIssues + " is not a JSON list of issues"}}
	}
	return issues
}

func condition(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: delivery.Truncate(msg, 1024)}
}

func joinNames(names []string) string {
	const max = 5
	out := ""
	for i, n := range names {
		if i == max {
			return out + fmt.Sprintf(", and %d more", len(names)-max)
		}
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}
