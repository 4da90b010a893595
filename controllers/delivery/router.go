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
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
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
	// Events looks up the cached events by the subscriptions they deliver to and by
	// subject (NewEventIndex on the cache Client reads from).
	Events *EventIndex
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
	// Tracing makes a span of each attempt and sends its traceparent; nil is tracing off.
	Tracing *tracing.Tracing

	filtersMu sync.Mutex
	filters   map[types.UID]compiledFilter
	routes    pendingRoutes
	breakers  breakers
	jobSlots  jobSlots
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
	var capped bool
	if routed {
		rt, kept := r.routes.take(ev, now)
		if !kept {
			var err error
			if rt, err = r.route(ctx, ev, details); err != nil {
				return Result{}, err
			}
		}
		deliveries, capped = rt.deliveries, rt.capped
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
		r.routes.keep(ev, routing{deliveries: before, capped: capped}, now)
	case routed:
		if capped {
			res.effects.event(ev, corev1.EventTypeWarning, funnelv1.ReasonTooManySubscriptions, "Route",
				"More than %d subscriptions match; delivering to the first %d by name", MaxDeliveries, MaxDeliveries)
		}
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
	// ended: how the attempt this step recorded ended.
	ended ending
}

// route finds the subscriptions of the event's namespace that want it: not suspended, of
// its receiver if they name one, of a matching type, asking for valid data only if it is
// valid, and whose filter compiles and is true for it. A subscription that is not Ready
// for another reason (a Secret missing, a permission refused) gets its delivery all the
// same: it waits until the subscription is Ready (advance), rather than the event being
// lost to it.
func (r *Router) route(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details) (routing, error) {
	var subs funnelv1.FunnelSubscriptionList
	if err := r.Client.List(ctx, &subs, client.InNamespace(ev.Namespace)); err != nil {
		return routing{}, fmt.Errorf("listing FunnelSubscriptions: %w", err)
	}
	slices.SortFunc(subs.Items, func(a, b funnelv1.FunnelSubscription) int { return strings.Compare(a.Name, b.Name) })
	var input map[string]any
	var out []funnelv1.DeliveryStatus
	for i := range subs.Items {
		sub := &subs.Items[i]
		if sub.Spec.RequireValidData && !details.Valid() {
			continue
		}
		if ok, err := r.wants(ctx, sub, ev, &input); err != nil {
			return routing{}, err
		} else if !ok {
			continue
		}
		if len(out) == MaxDeliveries {
			// Told (a Warning Event) by the pass that records this routing.
			return routing{deliveries: out, capped: true}, nil
		}
		out = append(out, funnelv1.DeliveryStatus{Subscription: sub.Name, AttemptStatus: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending}})
	}
	return routing{deliveries: out}, nil
}

// wants tells whether sub wants ev: not suspended, of its receiver if it names one, of a
// matching type, and with a filter that compiles and is true for it. input is the
// filter's view of ev, built on first use and kept for the caller's next question.
func (r *Router) wants(ctx context.Context, sub *funnelv1.FunnelSubscription, ev *funnelv1.FunnelEvent, input *map[string]any) (bool, error) {
	if sub.Spec.Suspend ||
		(sub.Spec.Receiver != "" && sub.Spec.Receiver != ev.Spec.Receiver) ||
		!TypeMatches(sub.Spec.EventTypes, ev.Spec.Type) {
		return false, nil
	}
	if sub.Spec.Filter == "" {
		return true, nil
	}
	f, err := r.filter(sub)
	if err != nil {
		return false, nil // reported in the subscription's Ready condition
	}
	if *input == nil {
		if *input, err = EventInput(ev); err != nil {
			return false, err
		}
	}
	ok, err := f.Match(ctx, *input)
	if err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Filter did not evaluate; not matching", "subscription", sub.Name, "error", err.Error())
	}
	return ok, nil
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

// advance moves one delivery, and then its dead letter, as far as they can go now.
func (r *Router) advance(ctx context.Context, fx *effects, ev *funnelv1.FunnelEvent, details funnel.Details, d *funnelv1.DeliveryStatus, now time.Time) step {
	if finished(d.Phase) && (d.DeadLetter == nil || finished(d.DeadLetter.Phase)) {
		return step{}
	}
	var sub funnelv1.FunnelSubscription
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ev.Namespace, Name: d.Subscription}, &sub); err != nil {
		gone := "FunnelSubscription " + d.Subscription + " no longer exists"
		if !finished(d.Phase) {
			end(&d.AttemptStatus, funnelv1.DeliveryFailed, now, gone)
			fx.event(ev, corev1.EventTypeWarning, funnelv1.ReasonDeliveryFailed, "Deliver",
				"Delivery to %s failed after %d attempts: %s", d.Subscription, d.Attempts, d.LastError)
		} else {
			end(&d.DeadLetter.AttemptStatus, funnelv1.DeliveryFailed, now, gone)
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
	if reason == "" && !running && !finished(d.Phase) && sub.Spec.Ordering != nil {
		if head, err := r.ahead(ctx, ev, &sub); err != nil {
			reason, msg = funnelv1.WaitOrdering, "cannot tell whether an earlier event goes first: "+err.Error()
		} else if head != "" {
			key := sub.Spec.Ordering.Key
			reason, msg = funnelv1.WaitOrdering, fmt.Sprintf("waiting for FunnelEvent %s, earlier for %s %s", head, key, ev.Labels[key.Label()])
		}
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

	key := sub.Namespace + "/" + sub.Name
	pol := policyOf(sub.Spec.Delivery)
	seq := sequence{status: &d.AttemptStatus, action: r.actionOf(ev, details, &sub, &sub.Spec.Action, d, false),
		retries: pol.retries, pol: pol, metric: key, gate: r.circuitGate(ev, &sub)}
	if g := r.jobSlotGate(ctx, ev, &sub); g != nil {
		seq.gate = g // a Job has no circuit breaker
	}
	if pol.timeout > 0 {
		seq.deadline = ev.Spec.ReceivedAt.Add(pol.timeout)
	}
	st, t := r.step(ctx, seq, now)
	r.recordOutcome(fx, ev, &sub, &d.AttemptStatus, st, now)
	switch t {
	case gated:
		if sub.Spec.Action.Job != nil {
			hold(d, funnelv1.WaitMaxInFlight, jobSlotsHeld(&sub))
		} else {
			hold(d, funnelv1.WaitCircuitOpen, circuitHeld(&sub))
		}
	case succeeded:
		fx.count(key, "succeeded")
		fx.finished(client.ObjectKeyFromObject(&sub), true, now)
	case retrying:
		fx.count(key, "retry")
	case failed:
		fx.event(ev, corev1.EventTypeWarning, funnelv1.ReasonDeliveryFailed, "Deliver",
			"Delivery to %s failed after %d attempts: %s", d.Subscription, d.Attempts, d.LastError)
		fx.count(key, "failed")
		fx.finished(client.ObjectKeyFromObject(&sub), false, now)
		if sub.Spec.Delivery.DeadLetter != nil {
			d.DeadLetter = &funnelv1.DeadLetterStatus{AttemptStatus: funnelv1.AttemptStatus{Phase: funnelv1.DeliveryPending}}
			return r.advanceDeadLetter(ctx, fx, ev, details, &sub, d, now)
		}
	}
	return st
}

// advanceDeadLetter runs a failed delivery's dead letter: once, with a few retries on
// transient failures.
func (r *Router) advanceDeadLetter(ctx context.Context, fx *effects, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription, d *funnelv1.DeliveryStatus, now time.Time) step {
	dl := d.DeadLetter
	if dl == nil || finished(dl.Phase) {
		return step{}
	}
	if sub.Spec.Delivery.DeadLetter == nil {
		end(&dl.AttemptStatus, funnelv1.DeliveryFailed, now, "spec.delivery.deadLetter was removed before the dead letter was delivered")
		fx.event(ev, corev1.EventTypeWarning, funnelv1.ReasonDeadLetterFailed, "DeadLetter",
			"Delivery to %s failed and its dead letter was not delivered: %s", d.Subscription, dl.LastError)
		return step{}
	}
	key := sub.Namespace + "/" + sub.Name
	st, t := r.step(ctx, sequence{status: &dl.AttemptStatus, action: r.actionOf(ev, details, sub, sub.Spec.Delivery.DeadLetter, d, true),
		retries: maxDeadLetterAttempts - 1, pol: policyOf(sub.Spec.Delivery), metric: key}, now)
	switch t {
	case succeeded:
		fx.count(key, "dead_lettered")
		fx.event(ev, corev1.EventTypeWarning, funnelv1.ReasonDeadLettered, "DeadLetter",
			"Delivery to %s failed; dead letter delivered", d.Subscription)
	case failed:
		fx.event(ev, corev1.EventTypeWarning, funnelv1.ReasonDeadLetterFailed, "DeadLetter",
			"Delivery to %s failed and so did its dead letter: %s", d.Subscription, dl.LastError)
	}
	return st
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
