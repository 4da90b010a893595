package delivery

import (
	"context"
	"fmt"
	"time"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// sequence is one sequence of attempts of an action for an event — a delivery, or its
// dead letter — and how it is retried. One state machine (Router.step) serves both.
type sequence struct {
	status *funnelv1.AttemptStatus
	action action
	// retries after the first attempt, for retryable failures.
	retries int32
	pol     policy
	// deadline, when not zero, is when the delivery's timeout passes: no attempt starts
	// after it, and an attempt still under way then is stopped if it does not end by
	// itself.
	deadline time.Time
	// metric is the subscription's series (namespace/name).
	metric string
	// gate, when set, may hold back the next attempt (number) — the circuit breaker —
	// saying when to ask again.
	gate func(number int32, now time.Time) (bool, time.Duration)
}

// transition is what a step did to its sequence, for the caller to tell others.
type transition int

const (
	// unchanged: waiting for a retry or an attempt under way, or held.
	unchanged transition = iota
	retrying
	succeeded
	failed
	// gated: the next attempt was due and the gate held it back.
	gated
)

// ending is how the attempt a step recorded ended, for the circuit breaker.
type ending int

const (
	endNone ending = iota
	// endAnswered: the destination answered (success, or a permanent refusal).
	endAnswered
	// endFailed: a retryable failure (408, 429, 5xx, timeout, connection error).
	endFailed
)

// step moves a sequence as far as it can go now: it makes its next attempt when due (or
// looks at the one under way) and records the outcome — succeeded, a retry at the
// policy's backoff (or the target's Retry-After, capped by maxBackoff), or failed:
// permanently, retries exhausted, or the deadline passed.
func (r *Router) step(ctx context.Context, seq sequence, now time.Time) (step, transition) {
	s := seq.status
	if finished(s.Phase) {
		return step{}, unchanged
	}
	if s.NextAttemptTime != nil && now.Before(s.NextAttemptTime.Time) {
		return step{wait: s.NextAttemptTime.Sub(now)}, unchanged
	}
	expired := !seq.deadline.IsZero() && !now.Before(seq.deadline)
	if expired && s.Phase != funnelv1.DeliveryRunning {
		end(s, funnelv1.DeliveryFailed, now, fmt.Sprintf("delivery timeout of %s exceeded; last error: %s", seq.pol.timeout, s.LastError))
		return step{}, failed
	}

	// An attempt under way is looked at before the timeout is applied: one that ended in
	// time (a Job that completed) counts, however late this pass comes.
	if s.Phase != funnelv1.DeliveryRunning && seq.gate != nil {
		if ok, wait := seq.gate(s.Attempts+1, now); !ok {
			return step{wait: wait}, gated
		}
	}
	a := seq.action.attempt(ctx, s)
	if a.running && expired {
		if note, stopped := seq.action.stop(ctx, a); stopped {
			s.Job = a.job
			end(s, funnelv1.DeliveryFailed, now, fmt.Sprintf("delivery timeout of %s exceeded while %s", seq.pol.timeout, note))
			return step{}, failed
		}
	}
	if a.running {
		if st, ok := r.underWay(a, now); ok {
			return st, unchanged
		}
		if s.Phase != funnelv1.DeliveryRunning {
			s.Phase, s.Attempts, s.Job, s.LastAttemptTime = funnelv1.DeliveryRunning, s.Attempts+1, a.job, metaTime(a.since(now))
		}
		return step{wait: a.recheck()}, unchanged
	}
	if s.Phase != funnelv1.DeliveryRunning {
		s.Attempts++
		s.LastAttemptTime = metaTime(a.since(now))
	}
	observeCall(seq.metric, a)
	s.ResponseCode, s.LastError, s.Job = a.code, trim(a.err), a.job
	ended := endNone
	switch {
	case a.retryable:
		ended = endFailed
	case a.succeeded || a.code != 0:
		ended = endAnswered
	}
	switch {
	case a.succeeded:
		end(s, funnelv1.DeliverySucceeded, now, "")
		return step{ended: ended}, succeeded
	case a.retryable && s.Attempts <= seq.retries:
		wait := seq.pol.retryWait(s.Attempts, a.retryAfter)
		if !seq.deadline.IsZero() && now.Add(wait).After(seq.deadline) {
			end(s, funnelv1.DeliveryFailed, now, fmt.Sprintf("delivery timeout of %s would pass before the next retry; last error: %s", seq.pol.timeout, a.err))
			return step{ended: ended}, failed
		}
		s.Phase, s.NextAttemptTime = funnelv1.DeliveryPending, metaTime(now.Add(wait))
		return step{wait: wait, ended: ended}, retrying
	default:
		end(s, funnelv1.DeliveryFailed, now, a.err)
		return step{ended: ended}, failed
	}
}

// end finishes a sequence in phase (Succeeded or Failed); a failure records its reason.
func end(s *funnelv1.AttemptStatus, phase funnelv1.DeliveryPhase, now time.Time, reason string) {
	s.Phase, s.NextAttemptTime, s.CompletionTime = phase, nil, metaTime(now)
	if phase == funnelv1.DeliveryFailed {
		s.LastError = trim(reason)
	}
}

// underWay tells, for an attempt in flight, whether it is too recent to record: then the
// pass waits for its outcome until SettleTime has passed.
func (r *Router) underWay(a attempt, now time.Time) (step, bool) {
	if a.job != "" || a.submitted.IsZero() {
		return step{}, false
	}
	settle := r.SettleTime
	if settle <= 0 {
		settle = DefaultSettleTime
	}
	if left := a.submitted.Add(settle).Sub(now); left > 0 {
		return step{wait: left, settling: true}, true
	}
	return step{}, false
}
