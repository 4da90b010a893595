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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

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
	// pausedRecheck is how often a delivery of a suspended subscription looks again.
	pausedRecheck = time.Minute
	// jobRecheck is a safety net for running Jobs; their changes wake the event anyway.
	jobRecheck = 5 * time.Minute
)

// Result is a pass's outcome for an event's deliveries.
type Result struct {
	// Deliveries is the new status.deliveries, ordered by subscription name.
	Deliveries []funnelv1.DeliveryStatus
	// RequeueAfter, when positive, is when a delivery needs the next pass.
	RequeueAfter time.Duration
}

// Router routes events to FunnelSubscriptions and advances their deliveries. It keeps
// all delivery state in the event's status, so a new leader picks up where the last one
// stopped; it never sleeps, retries are scheduled through RequeueAfter.
type Router struct {
	// Client reads subscriptions and Jobs from the cache.
	Client client.Client
	// Identity acts as each subscription's ServiceAccount: Job creates and Secret reads.
	Identity *identity.Clients
	Scheme   *runtime.Scheme
	HTTP     *http.Client
	Clock    clock.PassiveClock
	Recorder recorder.EventRecorder
	Stats    *Stats

	filtersMu sync.Mutex
	filters   map[types.UID]compiledFilter
}

type compiledFilter struct {
	generation int64
	filter     *Filter
	err        error
}

// Dispatch routes the event if it has not been routed yet, then advances every
// unfinished delivery, concurrently.
func (r *Router) Dispatch(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details) (Result, error) {
	deliveries := make([]funnelv1.DeliveryStatus, len(ev.Status.Deliveries))
	for i := range ev.Status.Deliveries {
		ev.Status.Deliveries[i].DeepCopyInto(&deliveries[i])
	}
	if len(deliveries) == 0 {
		var err error
		if deliveries, err = r.route(ctx, ev); err != nil {
			return Result{}, err
		}
	}

	now := r.Clock.Now()
	waits := make([]time.Duration, len(deliveries))
	var wg sync.WaitGroup
	for i := range deliveries {
		wg.Go(func() { waits[i] = r.advance(ctx, ev, details, &deliveries[i], now) })
	}
	wg.Wait()

	var next time.Duration
	for _, w := range waits {
		if w > 0 && (next == 0 || w < next) {
			next = w
		}
	}
	return Result{Deliveries: deliveries, RequeueAfter: next}, nil
}

// route finds the subscriptions of the event's namespace that want it: not suspended,
// not known to be broken (Ready=False for their current generation), of its receiver if
// they name one, of a matching type, and whose filter is true for it.
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
		if sub.Spec.Suspend || knownNotReady(sub) ||
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
		r.Stats.Matched(client.ObjectKeyFromObject(sub))
	}
	return out, nil
}

// knownNotReady: the subscription controller has looked at this generation and found it
// broken (bad filter, missing Secret, invalid Job template).
func knownNotReady(sub *funnelv1.FunnelSubscription) bool {
	c := meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)
	return c != nil && c.ObservedGeneration == sub.Generation && c.Status == metav1.ConditionFalse &&
		c.Reason != funnelv1.ReasonSuspended
}

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

// advance moves one delivery as far as it can go now and returns when it needs the next
// pass (0: not on a timer).
func (r *Router) advance(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details, d *funnelv1.DeliveryStatus, now time.Time) time.Duration {
	if finished(d.Phase) && (d.DeadLetter == nil || finished(d.DeadLetter.Phase)) {
		return 0
	}
	var sub funnelv1.FunnelSubscription
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ev.Namespace, Name: d.Subscription}, &sub); err != nil {
		if !finished(d.Phase) {
			r.fail(ctx, ev, details, nil, d, now, "FunnelSubscription "+d.Subscription+" no longer exists")
		} else {
			d.DeadLetter.Phase, d.DeadLetter.LastError = funnelv1.DeliveryFailed, "FunnelSubscription "+d.Subscription+" no longer exists"
		}
		return 0
	}
	if sub.Spec.Suspend {
		return pausedRecheck
	}
	if finished(d.Phase) {
		return r.advanceDeadLetter(ctx, ev, details, &sub, d, now)
	}
	if d.NextAttemptTime != nil && now.Before(d.NextAttemptTime.Time) {
		return d.NextAttemptTime.Sub(now)
	}
	pol := policyOf(sub.Spec.Delivery)
	if pol.timeout > 0 && !now.Before(ev.Spec.ReceivedAt.Add(pol.timeout)) {
		return r.fail(ctx, ev, details, &sub, d, now, fmt.Sprintf("delivery timeout of %s exceeded; last error: %s", pol.timeout, d.LastError))
	}

	key := sub.Namespace + "/" + sub.Name
	a := r.run(ctx, ev, details, &sub, &sub.Spec.Action, d, false)
	if a.running {
		if d.Phase != funnelv1.DeliveryRunning {
			d.Phase, d.Attempts, d.Job, d.LastAttemptTime = funnelv1.DeliveryRunning, d.Attempts+1, a.job, metaTime(now)
		}
		return jobRecheck
	}
	if sub.Spec.Action.Job == nil || d.Phase != funnelv1.DeliveryRunning {
		d.Attempts++
		d.LastAttemptTime = metaTime(now)
	}
	d.ResponseCode, d.LastError, d.Job = a.code, a.err, a.job
	switch {
	case a.succeeded:
		d.Phase, d.NextAttemptTime, d.CompletionTime = funnelv1.DeliverySucceeded, nil, metaTime(now)
		deliveriesTotal.WithLabelValues(key, "succeeded").Inc()
		r.Stats.Finished(client.ObjectKeyFromObject(&sub), true, now)
		return 0
	case a.retryable && d.Attempts <= pol.retries:
		wait := pol.wait(d.Attempts)
		if a.retryAfter > wait {
			wait = min(a.retryAfter, pol.maxBackoff)
		}
		if pol.timeout > 0 && now.Add(wait).After(ev.Spec.ReceivedAt.Add(pol.timeout)) {
			return r.fail(ctx, ev, details, &sub, d, now, fmt.Sprintf("delivery timeout of %s would pass before the next retry; last error: %s", pol.timeout, a.err))
		}
		d.Phase, d.NextAttemptTime = funnelv1.DeliveryPending, metaTime(now.Add(wait))
		deliveriesTotal.WithLabelValues(key, "retry").Inc()
		return wait
	default:
		return r.fail(ctx, ev, details, &sub, d, now, a.err)
	}
}

// fail ends a delivery and starts its dead letter, if the subscription has one.
func (r *Router) fail(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription,
	d *funnelv1.DeliveryStatus, now time.Time, reason string) time.Duration {
	d.Phase, d.NextAttemptTime, d.CompletionTime, d.LastError = funnelv1.DeliveryFailed, nil, metaTime(now), trim(reason)
	r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, "DeliveryFailed", "Deliver",
		"Delivery to %s failed after %d attempts: %s", d.Subscription, d.Attempts, d.LastError)
	if sub == nil {
		return 0
	}
	deliveriesTotal.WithLabelValues(sub.Namespace+"/"+sub.Name, "failed").Inc()
	r.Stats.Finished(client.ObjectKeyFromObject(sub), false, now)
	if sub.Spec.Delivery.DeadLetter != nil {
		d.DeadLetter = &funnelv1.DeadLetterStatus{Phase: funnelv1.DeliveryPending}
		return r.advanceDeadLetter(ctx, ev, details, sub, d, now)
	}
	return 0
}

// advanceDeadLetter runs a failed delivery's dead letter: once, with a few retries on
// transient failures.
func (r *Router) advanceDeadLetter(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription, d *funnelv1.DeliveryStatus, now time.Time) time.Duration {
	dl := d.DeadLetter
	if dl == nil || finished(dl.Phase) || sub.Spec.Delivery.DeadLetter == nil {
		return 0
	}
	if dl.NextAttemptTime != nil && now.Before(dl.NextAttemptTime.Time) {
		return dl.NextAttemptTime.Sub(now)
	}
	a := r.run(ctx, ev, details, sub, sub.Spec.Delivery.DeadLetter, d, true)
	if a.running {
		if dl.Phase != funnelv1.DeliveryRunning {
			dl.Phase, dl.Attempts, dl.Job = funnelv1.DeliveryRunning, dl.Attempts+1, a.job
		}
		return jobRecheck
	}
	if sub.Spec.Delivery.DeadLetter.Job == nil || dl.Phase != funnelv1.DeliveryRunning {
		dl.Attempts++
	}
	dl.ResponseCode, dl.LastError, dl.Job = a.code, a.err, a.job
	key := sub.Namespace + "/" + sub.Name
	switch {
	case a.succeeded:
		dl.Phase, dl.NextAttemptTime, dl.CompletionTime = funnelv1.DeliverySucceeded, nil, metaTime(now)
		deliveriesTotal.WithLabelValues(key, "dead_lettered").Inc()
		r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, "DeadLettered", "DeadLetter",
			"Delivery to %s failed; dead letter delivered", d.Subscription)
		return 0
	case a.retryable && dl.Attempts < maxDeadLetterAttempts:
		wait := policyOf(sub.Spec.Delivery).wait(dl.Attempts)
		dl.Phase, dl.NextAttemptTime = funnelv1.DeliveryPending, metaTime(now.Add(wait))
		return wait
	default:
		dl.Phase, dl.NextAttemptTime, dl.CompletionTime = funnelv1.DeliveryFailed, nil, metaTime(now)
		r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, "DeadLetterFailed", "DeadLetter",
			"Delivery to %s failed and so did its dead letter: %s", d.Subscription, dl.LastError)
		return 0
	}
}

// run makes one attempt of an action (the delivery's, or its dead letter).
func (r *Router) run(ctx context.Context, ev *funnelv1.FunnelEvent, details funnel.Details, sub *funnelv1.FunnelSubscription,
	action *funnelv1.Action, d *funnelv1.DeliveryStatus, deadLetter bool) attempt {
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
		return runJob(ctx, r.Client, creator, ev, job)
	}

	attemptNo := d.Attempts + 1
	var body []byte
	var err error
	if deadLetter {
		attemptNo = d.DeadLetter.Attempts + 1
		body, err = deadLetterBody(ev, details.Summary, d)
	} else {
		body, err = eventBody(ev, details.Summary, action.HTTP.Body)
	}
	if err != nil {
		return attempt{err: trim("building the body: " + err.Error())}
	}
	headers := eventHeaders(ev, sub.Name, attemptNo)
	if deadLetter {
		headers.Set("X-Funnel-Dead-Letter", "true")
	}
	req, err := newRequest(ctx, r.secretReader(sub), ev.Namespace, action.HTTP, body, headers)
	if err != nil {
		// A missing Secret may be created any moment: retry rather than fail.
		return attempt{retryable: true, err: trim(err.Error())}
	}
	start := time.Now()
	a := req.do(ctx, r.HTTP, r.Clock.Now())
	deliveryDuration.WithLabelValues(sub.Namespace + "/" + sub.Name).Observe(time.Since(start).Seconds())
	return a
}

func finished(p funnelv1.DeliveryPhase) bool {
	return p == funnelv1.DeliverySucceeded || p == funnelv1.DeliveryFailed
}

func metaTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}
