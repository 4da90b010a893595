package delivery

import (
	"context"
	"time"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// Outcome is what one attempt of a subscription's action made of an event.
type Outcome struct {
	Succeeded bool
	// ResponseCode is the HTTP status, 0 without an answer.
	ResponseCode int32
	// Error is the reason of a failure, fixed words (never the target's).
	Error string
	// RetryIn is how long to wait before the next attempt when the subscription's policy
	// allows one after this failure (its backoff, or the target's Retry-After up to
	// maxBackoff); 0 when the failure is final.
	RetryIn time.Duration
}

// Attempt makes attempt n (from 1) of sub's HTTP action for ev, now and in the caller's
// goroutine, as a delivery's attempt is made: the body, the headers, Secrets read as the
// subscription's ServiceAccount, the signature and the Idempotency-Key. A backfill
// delivers archived events with it: they are not in the cache the executor's attempts
// read events from, and have no FunnelEvent to own a Job, so only HTTP actions are for it.
func (r *Router) Attempt(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription, n int32) Outcome {
	if sub.Spec.Action.HTTP == nil {
		return Outcome{Error: "the action is not an HTTP call"}
	}
	a := r.tracedCall(ctx, ev, sub, sub.Spec.Action.HTTP, ev.Status.Summary, n, false, failureContext{})
	o := Outcome{Succeeded: a.succeeded, ResponseCode: a.code, Error: a.err}
	if pol := policyOf(sub.Spec.Delivery); !a.succeeded && a.retryable && n <= pol.retries {
		o.RetryIn = pol.retryWait(n, a.retryAfter)
	}
	return o
}

// call makes one HTTP call of an action for ev: the delivery's own, or its dead letter.
func (r *Router) call(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription, action *funnelv1.HTTPAction,
	summary string, number int32, deadLetter bool, failure failureContext) attempt {
	var f *failureContext
	if deadLetter {
		f = &failure
	}
	body, headers, err := message(ev, summary, sub.Name, action, number, f)
	if err != nil {
		return attempt{err: trim(err.Error())}
	}
	tracing.Inject(ctx, headers)
	req, err := newRequest(ctx, r.secretReader(sub), ev.Namespace, action, body, headers)
	if err != nil {
		// A missing Secret may be created any moment: retry rather than fail.
		return attempt{retryable: true, err: trim(err.Error())}
	}
	start := r.Clock.Now()
	a := req.do(ctx, r.HTTP, start)
	a.at, a.took = start, r.Clock.Since(start)
	return a
}
