package delivery

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
)

const (
	// MaxDeliveries is how many subscriptions one event can be routed to (the bound of
	// status.deliveries).
	MaxDeliveries = 64
	// maxDeadLetterAttempts bounds the tries of a dead letter on transient failures.
	maxDeadLetterAttempts = 3
	// pausedRecheck is a safety net for deliveries held back by their subscription
	// (suspended, not Ready): a change of the subscription wakes them anyway.
	pausedRecheck = 5 * time.Minute
	// jobRecheck is a safety net for running Jobs; their changes wake the event anyway.
	jobRecheck = 5 * time.Minute
	// httpRecheck is a safety net for HTTP attempts in flight; their end wakes the event.
	httpRecheck = time.Minute
	// DefaultSettleTime is how long a pass with nothing to record but attempts just handed
	// over leaves the status alone, waiting for their outcomes.
	DefaultSettleTime = 2 * time.Second
)

// Result is a pass's outcome for an event's deliveries.
type Result struct {
	// Deliveries is the new status.deliveries, ordered by subscription name.
	Deliveries []funnelv1.DeliveryStatus
	// RequeueAfter, when positive, is when a delivery needs the next pass.
	RequeueAfter time.Duration
	// Settling: nothing to record yet but HTTP attempts handed over moments ago. Their
	// outcomes usually follow within milliseconds and wake the event, so the caller skips
	// this pass's status write: an event with fast targets costs one write, not a
	// "Running" one and then the outcome. RequeueAfter brings the pass that records the
	// attempts as Running if they are still under way by then.
	Settling bool

	effects *effects
}

// Recorded tells others what the pass did — Events, metrics, subscription counts — once
// its status write succeeded (or wrote nothing new): a pass whose write is refused tells
// nothing, and the pass that records the same outcome instead tells it once.
func (res Result) Recorded() {
	if res.effects != nil {
		for _, f := range res.effects.run {
			f()
		}
	}
}

// effects are what a pass has to tell others, held until its status is written.
type effects struct {
	r   *Router
	run []func()
}

func (fx *effects) event(ev *funnelv1.FunnelEvent, typ, reason, action, note string, args ...any) {
	fx.run = append(fx.run, func() { fx.r.Recorder.Eventf(ev, nil, typ, reason, action, note, args...) })
}

func (fx *effects) count(sub, result string) {
	fx.run = append(fx.run, func() { deliveriesTotal.WithLabelValues(sub, result).Inc() })
}

func (fx *effects) finished(sub types.NamespacedName, succeeded bool, t time.Time) {
	fx.run = append(fx.run, func() { fx.r.Stats.Finished(sub, succeeded, t) })
}

// Router routes events to FunnelSubscriptions and advances their deliveries. It keeps
// all delivery state in the event's status, so a new leader picks up where the last one
// stopped; it never sleeps nor waits for a target: retries are scheduled through
// RequeueAfter, and HTTP attempts run in the Executor, whose outcomes wake the event.
type Router struct {
	// Client reads events, subscriptions and Jobs from the cache.
	Client client.Client
	// APIReader reads from the API server what the cache may not hold yet: a Job the
	// cache does not know is looked for there before it is called gone.
	APIReader client.Reader
	// Identity acts as each subscription's ServiceAccount: Job creates and Secret reads.
	Identity *identity.Clients
	Scheme   *runtime.Scheme
	// HTTP makes the HTTP attempts (NewHTTPClient), in Executor.
	HTTP     *http.Client
	Executor *Executor
	// SettleTime: see Result.Settling; DefaultSettleTime when 0.
	SettleTime time.Duration
	Clock      clock.PassiveClock
	Recorder   recorder.EventRecorder
	Stats      *Stats

	filtersMu sync.Mutex
	filters   map[types.UID]compiledFilter
	routes    pendingRoutes
}

type compiledFilter struct {
	generation int64
	filter     *Filter
	err        error
}

// Dispatch routes the event if it has not been routed yet, then advances every
// unfinished delivery as far as it can go without waiting.
func (r *Router) Dispatch(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details) (Result, error) {
	deliveries := make([]funnelv1.DeliveryStatus, len(ev.Status.Deliveries))
	for i := range ev.Status.Deliveries {
		ev.Status.Deliveries[i].DeepCopyInto(&deliveries[i])
	}
	now := r.Clock.Now()
	routed := len(deliveries) == 0
	if routed {
		var kept bool
		if deliveries, kept = r.routes.take(ev, now); !kept {
			var err error
			if deliveries, err = r.route(ctx, ev); err != nil {
				return Result{}, err
			}
		}
	}
	before := make([]funnelv1.DeliveryStatus, len(deliveries))
	for i := range deliveries {
		deliveries[i].DeepCopyInto(&before[i])
	}

	res := Result{effects: &effects{r: r}}
	for i := range deliveries {
		s := r.advance(ctx, res.effects, ev, details, &deliveries[i], now)
		if s.wait > 0 && (res.RequeueAfter == 0 || s.wait < res.RequeueAfter) {
			res.RequeueAfter = s.wait
		}
		res.Settling = res.Settling || s.settling
	}
	// Settling only while there is nothing else to record.
	res.Settling = res.Settling && equality.Semantic.DeepEqual(before, deliveries)
	res.Deliveries = deliveries
	switch {
	case routed && res.Settling:
		r.routes.keep(ev, before, now)
	case routed:
		for _, d := range deliveries {
			key := types.NamespacedName{Namespace: ev.Namespace, Name: d.Subscription}
			res.effects.run = append(res.effects.run, func() { r.Stats.Matched(key) })
		}
	}
	return res, nil
}

// Wakeups is a watch source for an event controller: the events mine admits, when one
// of their HTTP attempts ends.
func (r *Router) Wakeups(mine predicate.Predicate) source.Source { return r.Executor.Source(mine) }

// step is how a delivery stands after a pass.
type step struct {
	// wait is when it needs the next pass (0: not on a timer).
	wait time.Duration
	// settling: an HTTP attempt handed over less than SettleTime ago, not recorded yet.
	settling bool
}

// route finds the subscriptions of the event's namespace that want it: not suspended, of
// its receiver if they name one, of a matching type, and whose filter compiles and is
// true for it. A subscription that is not Ready for another reason (a Secret missing, a
// permission refused) gets its delivery all the same: it waits until the subscription is
// Ready (advance), rather than the event being lost to it.
func (r *Router) route(ctx context.Context, ev *funnelv1.FunnelEvent) ([]funnelv1.DeliveryStatus, error) {
	var subs funnelv1.FunnelSubscriptionList
	if err := r.Client.List(ctx, &subs, client.InNamespace(ev.Namespace)); err != nil {
		return nil, fmt.Errorf("listing FunnelSubscriptions: %w", err)
	}
	slices.SortFunc(subs.Items, func(a, b funnelv1.FunnelSubscription) int { return strings.Compare(a.Name, b.Name) })
	log := ctrl.LoggerFrom(ctx)
	var input map[string]any
	var out []funnelv1.DeliveryStatus
	for i := range subs.Items {
		sub := &subs.Items[i]
		if sub.Spec.Suspend ||
			(sub.Spec.Receiver != "" && sub.Spec.Receiver != ev.Spec.Receiver) ||
			!TypeMatches(sub.Spec.EventTypes, ev.Spec.Type) {
			continue
		}
		if sub.Spec.Filter != "" {
			f, err := r.filter(sub)
			if err != nil {
				continue // reported in the subscription's Ready condition
			}
			if input == nil {
				if input, err = EventInput(ev); err != nil {
					return nil, err
				}
			}
			ok, err := f.Match(ctx, input)
			if err != nil {
				log.V(1).Info("Filter did not evaluate; not matching", "subscription", sub.Name, "error", err.Error())
			}
			if !ok {
				continue
			}
		}
		if len(out) == MaxDeliveries {
			r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, "TooManySubscriptions", "Route",
				"More than %d subscriptions match; delivering to the first %d by name", MaxDeliveries, MaxDeliveries)
			break
		}
		out = append(out, funnelv1.DeliveryStatus{Subscription: sub.Name, Phase: funnelv1.DeliveryPending})
	}
	return out, nil
}

// notReady is the subscription's Ready condition when the subscription controller has
// looked at this generation and found it not Ready (a missing Secret, a refused
// permission, an invalid Job template), else nil.
func notReady(sub *funnelv1.FunnelSubscription) *metav1.Condition {
	c := meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)
	if c == nil || c.ObservedGeneration != sub.Generation || c.Status != metav1.ConditionFalse || c.Reason == funnelv1.ReasonSuspended {
		return nil
	}
	return c
}

// hold records why a delivery waits instead of making its next attempt; release clears it.
func hold(d *funnelv1.DeliveryStatus, reason funnelv1.DeliveryWaitReason, msg string) {
	d.Reason, d.Message = reason, trim(msg)
}

func release(d *funnelv1.DeliveryStatus) { d.Reason, d.Message = "", "" }

// filter returns the subscription's compiled filter, compiling once per generation.
func (r *Router) filter(sub *funnelv1.FunnelSubscription) (*Filter, error) {
	r.filtersMu.Lock()
	defer r.filtersMu.Unlock()
	if c, ok := r.filters[sub.UID]; ok && c.generation == sub.Generation {
		return c.filter, c.err
	}
	if r.filters == nil || len(r.filters) > 4096 {
		r.filters = map[types.UID]compiledFilter{} // forget deleted subscriptions now and then
	}
	f, err := CompileFilter(sub.Spec.Filter)
	r.filters[sub.UID] = compiledFilter{generation: sub.Generation, filter: f, err: err}
	return f, err
}

// advance moves one delivery as far as it can go now.
func (r *Router) advance(ctx context.Context, fx *effects, ev *funnelv1.FunnelEvent, details funnel.Details, d *funnelv1.DeliveryStatus, now time.Time) step {
	if finished(d.Phase) && (d.DeadLetter == nil || finished(d.DeadLetter.Phase)) {
		return step{}
	}
	var sub funnelv1.FunnelSubscription
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ev.Namespace, Name: d.Subscription}, &sub); err != nil {
		if !finished(d.Phase) {
			r.fail(ctx, fx, ev, details, nil, d, now, "FunnelSubscription "+d.Subscription+" no longer exists")
		} else {
			d.DeadLetter.Phase, d.DeadLetter.LastError = funnelv1.DeliveryFailed, "FunnelSubscription "+d.Subscription+" no longer exists"
		}
		return step{}
	}
	// A suspended or not Ready subscription holds back new attempts (of the delivery or
	// its dead letter); one under way is followed.
	running := d.Phase == funnelv1.DeliveryRunning || (d.DeadLetter != nil && d.DeadLetter.Phase == funnelv1.DeliveryRunning)
	var reason funnelv1.DeliveryWaitReason
	var msg string
	if c := notReady(&sub); sub.Spec.Suspend {
		reason, msg = funnelv1.WaitSuspended, "FunnelSubscription "+sub.Name+" is suspended"
	} else if c != nil {
		reason, msg = funnelv1.WaitSubscriptionNotReady, fmt.Sprintf("FunnelSubscription %s is not Ready: %s: %s", sub.Name, c.Reason, c.Message)
	}
	if reason != "" && !running {
		if d.Phase == funnelv1.DeliveryPending {
			hold(d, reason, msg)
		}
		return step{wait: pausedRecheck}
	}
	release(d)
	if finished(d.Phase) {
		return r.advanceDeadLetter(ctx, fx, ev, details, &sub, d, now)
	}
	if d.NextAttemptTime != nil && now.Before(d.NextAttemptTime.Time) {
		return step{wait: d.NextAttemptTime.Sub(now)}
	}
	pol := policyOf(sub.Spec.Delivery)
	expired := pol.timeout > 0 && !now.Before(ev.Spec.ReceivedAt.Add(pol.timeout))
	if expired && d.Phase != funnelv1.DeliveryRunning {
		return r.fail(ctx, fx, ev, details, &sub, d, now, fmt.Sprintf("delivery timeout of %s exceeded; last error: %s", pol.timeout, d.LastError))
	}

	// An attempt under way is looked at before the timeout is applied: a Job that
	// completed in time succeeded, however late this pass comes.
	key := sub.Namespace + "/" + sub.Name
	a := r.run(ctx, ev, details, &sub, &sub.Spec.Action, d, false, now)
	if a.running && expired && a.job != "" {
		// An HTTP call ends by itself within its timeout; a Job is stopped.
		reason := fmt.Sprintf("delivery timeout of %s exceeded while Job %s ran; it was stopped", pol.timeout, a.job)
		if err := r.stopJob(ctx, &sub, a.job); err != nil {
			reason = fmt.Sprintf("delivery timeout of %s exceeded while Job %s ran; stopping it failed: %s", pol.timeout, a.job, err)
		}
		d.Job = a.job
		return r.fail(ctx, fx, ev, details, &sub, d, now, reason)
	}
	if a.running {
		if s, ok := r.underWay(a, now); ok {
			return s
		}
		if d.Phase != funnelv1.DeliveryRunning {
			d.Phase, d.Attempts, d.Job, d.LastAttemptTime = funnelv1.DeliveryRunning, d.Attempts+1, a.job, metaTime(a.since(now))
		}
		return step{wait: a.recheck()}
	}
	if d.Phase != funnelv1.DeliveryRunning {
		d.Attempts++
		d.LastAttemptTime = metaTime(a.since(now))
	}
	observeCall(key, a)
	d.ResponseCode, d.LastError, d.Job = a.code, a.err, a.job
	switch {
	case a.succeeded:
		d.Phase, d.NextAttemptTime, d.CompletionTime = funnelv1.DeliverySucceeded, nil, metaTime(now)
		fx.count(key, "succeeded")
		fx.finished(client.ObjectKeyFromObject(&sub), true, now)
		return step{}
	case a.retryable && d.Attempts <= pol.retries:
		wait := pol.wait(d.Attempts)
		if a.retryAfter > wait {
			wait = min(a.retryAfter, pol.maxBackoff)
		}
		if pol.timeout > 0 && now.Add(wait).After(ev.Spec.ReceivedAt.Add(pol.timeout)) {
			return r.fail(ctx, fx, ev, details, &sub, d, now, fmt.Sprintf("delivery timeout of %s would pass before the next retry; last error: %s", pol.timeout, a.err))
		}
		d.Phase, d.NextAttemptTime = funnelv1.DeliveryPending, metaTime(now.Add(wait))
		fx.count(key, "retry")
		return step{wait: wait}
	default:
		return r.fail(ctx, fx, ev, details, &sub, d, now, a.err)
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

// fail ends a delivery and starts its dead letter, if the subscription has one.
func (r *Router) fail(ctx context.Context, fx *effects, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription,
	d *funnelv1.DeliveryStatus, now time.Time, reason string) step {
	d.Phase, d.NextAttemptTime, d.CompletionTime, d.LastError = funnelv1.DeliveryFailed, nil, metaTime(now), trim(reason)
	fx.event(ev, corev1.EventTypeWarning, "DeliveryFailed", "Deliver",
		"Delivery to %s failed after %d attempts: %s", d.Subscription, d.Attempts, d.LastError)
	if sub == nil {
		return step{}
	}
	fx.count(sub.Namespace+"/"+sub.Name, "failed")
	fx.finished(client.ObjectKeyFromObject(sub), false, now)
	if sub.Spec.Delivery.DeadLetter != nil {
		d.DeadLetter = &funnelv1.DeadLetterStatus{Phase: funnelv1.DeliveryPending}
		return r.advanceDeadLetter(ctx, fx, ev, details, sub, d, now)
	}
	return step{}
}

// advanceDeadLetter runs a failed delivery's dead letter: once, with a few retries on
// transient failures.
func (r *Router) advanceDeadLetter(ctx context.Context, fx *effects, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription, d *funnelv1.DeliveryStatus, now time.Time) step {
	dl := d.DeadLetter
	if dl == nil || finished(dl.Phase) {
		return step{}
	}
	if sub.Spec.Delivery.DeadLetter == nil {
		dl.Phase, dl.NextAttemptTime, dl.CompletionTime = funnelv1.DeliveryFailed, nil, metaTime(now)
		dl.LastError = "spec.delivery.deadLetter was removed before the dead letter was delivered"
		fx.event(ev, corev1.EventTypeWarning, "DeadLetterFailed", "DeadLetter",
			"Delivery to %s failed and its dead letter was not delivered: %s", d.Subscription, dl.LastError)
		return step{}
	}
	if dl.NextAttemptTime != nil && now.Before(dl.NextAttemptTime.Time) {
		return step{wait: dl.NextAttemptTime.Sub(now)}
	}
	a := r.run(ctx, ev, details, sub, sub.Spec.Delivery.DeadLetter, d, true, now)
	if a.running {
		if s, ok := r.underWay(a, now); ok {
			return s
		}
		if dl.Phase != funnelv1.DeliveryRunning {
			dl.Phase, dl.Attempts, dl.Job = funnelv1.DeliveryRunning, dl.Attempts+1, a.job
		}
		return step{wait: a.recheck()}
	}
	if dl.Phase != funnelv1.DeliveryRunning {
		dl.Attempts++
	}
	key := sub.Namespace + "/" + sub.Name
	observeCall(key, a)
	dl.ResponseCode, dl.LastError, dl.Job = a.code, a.err, a.job
	switch {
	case a.succeeded:
		dl.Phase, dl.NextAttemptTime, dl.CompletionTime = funnelv1.DeliverySucceeded, nil, metaTime(now)
		fx.count(key, "dead_lettered")
		fx.event(ev, corev1.EventTypeWarning, "DeadLettered", "DeadLetter",
			"Delivery to %s failed; dead letter delivered", d.Subscription)
		return step{}
	case a.retryable && dl.Attempts < maxDeadLetterAttempts:
		wait := policyOf(sub.Spec.Delivery).wait(dl.Attempts)
		dl.Phase, dl.NextAttemptTime = funnelv1.DeliveryPending, metaTime(now.Add(wait))
		return step{wait: wait}
	default:
		dl.Phase, dl.NextAttemptTime, dl.CompletionTime = funnelv1.DeliveryFailed, nil, metaTime(now)
		fx.event(ev, corev1.EventTypeWarning, "DeadLetterFailed", "DeadLetter",
			"Delivery to %s failed and so did its dead letter: %s", d.Subscription, dl.LastError)
		return step{}
	}
}

// run makes one attempt of an action (the delivery's, or its dead letter): a Job is
// created or followed here; an HTTP call is handed to the executor, and run reports it
// running until its outcome is back.
func (r *Router) run(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription,
	action *funnelv1.Action, d *funnelv1.DeliveryStatus, deadLetter bool, now time.Time) attempt {
	if action.Job != nil {
		var env []corev1.EnvVar
		if deadLetter {
			env = []corev1.EnvVar{
				{Name: "FUNNEL_SUBSCRIPTION", Value: d.Subscription},
				{Name: "FUNNEL_DELIVERY_ERROR", Value: d.LastError},
				{Name: "FUNNEL_DELIVERY_ATTEMPTS", Value: fmt.Sprint(d.Attempts)},
			}
		}
		job, err := newJob(ev, sub.Name, action.Job, JobName(ev, sub.Name, deadLetter), env, r.Scheme)
		if err != nil {
			return attempt{err: trim(err.Error())}
		}
		creator, err := r.Identity.For(sub)
		if err != nil {
			return attempt{err: trim("creating Job " + job.Name + ": " + err.Error()), job: job.Name}
		}
		// Whether this Job was created already: the status records it running.
		started := d.Phase == funnelv1.DeliveryRunning && d.Job == job.Name
		if deadLetter {
			started = d.DeadLetter.Phase == funnelv1.DeliveryRunning && d.DeadLetter.Job == job.Name
		}
		return runJob(ctx, r.Client, r.APIReader, creator, ev, job, started)
	}

	// The attempt in flight, if one is recorded as Running, else the next one.
	phase, number := d.Phase, d.Attempts
	if deadLetter {
		phase, number = d.DeadLetter.Phase, d.DeadLetter.Attempts
	}
	if phase != funnelv1.DeliveryRunning {
		number++
	}
	h := httpAttempt{router: r, event: client.ObjectKeyFromObject(ev), uid: ev.UID, subscription: sub.Name,
		summary: details.Summary, deadLetter: deadLetter, number: number, replays: ev.Status.Replays}
	if deadLetter {
		h.failure = failureOf(d)
	}
	key := AttemptKey{Event: h.event, UID: ev.UID, Replays: ev.Status.Replays, Subscription: sub.Name, DeadLetter: deadLetter, Number: number}
	st := r.Executor.attempt(key, wakeObject(ev), h.run)
	if !st.done {
		return attempt{running: true, submitted: st.submitted}
	}
	return st.outcome
}

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
	return r.call(ctx, &ev, &sub, action, h.summary, h.number, h.deadLetter, h.failure)
}

// observeCall records how long an HTTP call took. It is done by the pass that records
// the outcome, which has just read the subscription: a call that ends after its
// subscription was deleted does not bring the deleted series back.
func observeCall(subscription string, a attempt) {
	if !a.at.IsZero() {
		deliveryDuration.WithLabelValues(subscription).Observe(a.took.Seconds())
	}
}

// wakeObject is what the executor tells the event controllers when an attempt ends: the
// event's name and the label that says whose it is.
func wakeObject(ev *funnelv1.FunnelEvent) client.Object {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: ev.Name,
		Labels: map[string]string{funnelv1.LabelEventType: ev.Labels[funnelv1.LabelEventType]}}}
}

func finished(p funnelv1.DeliveryPhase) bool {
	return p == funnelv1.DeliverySucceeded || p == funnelv1.DeliveryFailed
}

func metaTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}
