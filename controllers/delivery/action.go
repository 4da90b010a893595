package delivery

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/trace"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// action makes the attempts of one subscription action (a delivery's, or its dead
// letter's) for one event. The state machine (Router.step) decides when; the action only
// makes an attempt or tells how the one under way stands.
type action interface {
	// attempt starts the sequence's next attempt, or, while s records one as Running (or
	// one was started and not recorded yet), reports on it: under way, or its outcome.
	attempt(ctx context.Context, s *funnelv1.AttemptStatus) attempt
	// stop ends an attempt under way that the delivery timeout gave up on, and says what
	// was stopped ("Job x ran; it was stopped"). An attempt that ends by itself within a
	// bound (an HTTP call) is not stopped: false, and its outcome is recorded.
	stop(ctx context.Context, a attempt) (note string, stopped bool)
}

// actionOf is the action spec of a subscription's delivery of ev, or of its dead letter.
func (r *Router) actionOf(ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription,
	spec *funnelv1.Action, d *funnelv1.DeliveryStatus, deadLetter bool) action {
	if spec.Job != nil {
		j := jobAction{router: r, ev: ev, sub: sub, spec: spec.Job, deadLetter: deadLetter}
		if deadLetter {
			j.env = []corev1.EnvVar{
				{Name: "FUNNEL_SUBSCRIPTION", Value: d.Subscription},
				{Name: "FUNNEL_DELIVERY_ERROR", Value: d.LastError},
				{Name: "FUNNEL_DELIVERY_ATTEMPTS", Value: fmt.Sprint(d.Attempts)},
			}
		}
		return j
	}
	h := httpAttempt{router: r, event: client.ObjectKeyFromObject(ev), uid: ev.UID, subscription: sub.Name,
		summary: details.Summary, deadLetter: deadLetter, replays: ev.Status.Replays}
	a := httpAction{h: h, wake: wakeObject(ev)}
	if deadLetter {
		h.failure = failureOf(d)
		a.h = h
	} else if m := sub.Spec.Delivery.MaxInFlight; m != nil {
		a.limit = int(*m)
	}
	return a
}

// httpAction hands its attempts to the executor and reports them running until their
// outcome is back.
type httpAction struct {
	h    httpAttempt
	wake client.Object
	// limit is the subscription's maxInFlight (0: none); its dead letter has none.
	limit int
}

func (a httpAction) attempt(ctx context.Context, s *funnelv1.AttemptStatus) attempt {
	// The attempt in flight, if one is recorded as Running, else the next one.
	h := a.h
	h.pass = trace.SpanContextFromContext(ctx)
	h.number = s.Attempts
	if s.Phase != funnelv1.DeliveryRunning {
		h.number++
	}
	key := AttemptKey{Event: h.event, UID: h.uid, Replays: h.replays, Subscription: h.subscription, DeadLetter: h.deadLetter, Number: h.number}
	st := h.router.Executor.attemptWithin(key, a.limit, a.wake, h.run)
	if !st.done {
		return attempt{running: true, submitted: st.submitted}
	}
	return st.outcome
}

// stop: an HTTP call ends by itself within its timeout.
func (httpAction) stop(context.Context, attempt) (string, bool) { return "", false }

// httpAttempt is one HTTP attempt as the executor holds it: names, not the event or the
// body, which are read and built when it runs (from the cache: the event is there while
// unfinished), so waiting attempts cost little memory.
type httpAttempt struct {
	router       *Router
	event        types.NamespacedName
	uid          types.UID
	subscription string
	summary      string
	deadLetter   bool
	failure      failureContext
	number       int32
	replays      int32
	// pass is the span of the pass that handed the attempt over, its span's parent.
	pass trace.SpanContext
}

func (h httpAttempt) run(ctx context.Context) attempt {
	r := h.router
	var ev funnelv1.FunnelEvent
	if err := r.Client.Get(ctx, h.event, &ev); err != nil || ev.UID != h.uid {
		return attempt{err: "the event is gone"} // no pass will ask for this outcome
	}
	// The cache may not have the status of the pass that made this attempt yet (a
	// replay's reset): the attempt belongs to that pass's replay.
	ev.Status.Replays = h.replays
	var sub funnelv1.FunnelSubscription
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ev.Namespace, Name: h.subscription}, &sub); err != nil {
		return attempt{retryable: true, err: "FunnelSubscription " + h.subscription + " no longer exists"}
	}
	action := sub.Spec.Action.HTTP
	if h.deadLetter && sub.Spec.Delivery.DeadLetter != nil {
		action = sub.Spec.Delivery.DeadLetter.HTTP
	}
	if action == nil {
		return attempt{retryable: true, err: "the action is no longer an HTTP call"}
	}
	return r.tracedCall(trace.ContextWithSpanContext(ctx, h.pass), &ev, &sub, action, h.summary, h.number, h.deadLetter, h.failure)
}
