package delivery

import (
	"context"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// tracedCall is call inside the span of the attempt: a child of the span in ctx (the pass
// that handed it over), or else of the request that stored ev; call sends the span's
// traceparent to the target.
func (r *Router) tracedCall(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription, action *funnelv1.HTTPAction,
	summary string, number int32, deadLetter bool, failure failureContext) attempt {
	ctx, span := r.Tracing.Attempt(ctx, ev, sub.Name, number, deadLetter)
	a := r.call(ctx, ev, sub, action, summary, number, deadLetter, failure)
	outcome := tracing.OutcomeFailed
	switch {
	case a.succeeded:
		outcome = tracing.OutcomeSucceeded
	case a.retryable:
		outcome = tracing.OutcomeRetryable
	}
	tracing.EndAttempt(span, a.code, outcome, a.err)
	return a
}
