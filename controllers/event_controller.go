package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

var eventProcessingDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "funnel_event_processing_duration_seconds",
	Help:    "Time of one processing pass over a FunnelEvent, by event family and the phase it left the event in (or error).",
	Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
}, []string{"family", "result"})

func init() { metrics.Registry.MustRegister(eventProcessingDuration) }

// Families are the event families, each processed by its own named controller.
var Families = []funnel.Family{
	funnel.FamilyLeaseTransaction, funnel.FamilyLease, funnel.FamilyQuote, funnel.FamilyProspect, funnel.FamilyUnknown,
}

// EventReconciler processes FunnelEvents of one family: validate the typed data,
// summarise, dispatch to deliveries, and record the outcome in status. One
// implementation serves every family; the type handler comes from api/funnel.
type EventReconciler struct {
	client.Client
	Family     funnel.Family
	Dispatcher Dispatcher
	Recorder   recorder.EventRecorder
	Clock      clock.PassiveClock
	// Sealer tells the events the receiver created from others, which are not delivered.
	Sealer receiver.Sealer
	// Tracing makes a span of each pass, in the trace of the request that stored the
	// event; nil is tracing off.
	Tracing *tracing.Tracing
	// Events finds the events still delivering to a changed subscription, to wake them
	// (the Router's index); SetupWithManager needs it.
	Events *delivery.EventIndex

	recent staleGuard
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents,verbs=get;list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents/status,verbs=patch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelsubscriptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create

// Reconcile runs one processing pass, with at most one status write.
func (r *EventReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, err error) {
	start := r.Clock.Now()
	var ev funnelv1.FunnelEvent
	if err := r.Get(ctx, req.NamespacedName, &ev); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ev.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if r.recent.stale(req.NamespacedName, ev.ResourceVersion, start) {
		return ctrl.Result{RequeueAfter: staleRecheck}, nil // our last write is not in the cache yet
	}
	ctx, span := r.Tracing.Pass(ctx, &ev, string(r.Family))
	defer func() { tracing.EndPass(span, &ev, err) }()
	log := ctrl.LoggerFrom(ctx).WithValues("type", ev.Spec.Type, "id", ev.Spec.EventID)
	ctx = ctrl.LoggerInto(ctx, log)

	token := replayToken(ev.Annotations[funnelv1.AnnotationReplay])
	if ev.Status.Phase.Finished() && token == ev.Status.ObservedReplay {
		return ctrl.Result{}, nil // finished; it leaves the cache as the watch catches up
	}

	base := ev.DeepCopy()
	replayed := ""
	if token != ev.Status.ObservedReplay {
		replayed = resetForReplay(&ev.Status, token)
	}

	o, d, err := r.process(ctx, &ev)
	if err != nil {
		eventProcessingDuration.WithLabelValues(string(r.Family), "error").Observe(r.Clock.Since(start).Seconds())
		return ctrl.Result{}, err
	}
	// Nothing to record but attempts handed over moments ago: their outcomes wake the
	// event soon, and that pass writes once (a replay's reset is written at once). Not
	// observed in the metric: the pass that records the outcome is.
	if d.Settling && token == base.Status.ObservedReplay {
		return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
	}
	o.conflict = conflictCondition(&ev)
	o.apply(&ev.Status, ev.Generation, r.Clock.Now())
	// The pass's only write, and for most events the only one after the receiver's create
	// (a final phase takes the event out of the cache). It carries the resourceVersion the
	// pass read: a pass that worked from a copy older than the stored one (a former leader,
	// a write whose answer was lost) is refused instead of overwriting newer deliveries.
	wrote, err := statuspatch.Patch(ctx, r.Client, base, &ev, client.MergeFromWithOptimisticLock{})
	if apierrors.IsConflict(err) {
		// Written since this pass read it (another writer, or the receiver's duplicate
		// count): what this pass decided may rest on an old copy. Look again.
		log.V(1).Info("Status changed since it was read; processing again")
		return ctrl.Result{RequeueAfter: staleRecheck}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("writing status of FunnelEvent %s/%s: %w", ev.Namespace, ev.Name, err)
	}
	if wrote {
		r.recent.wrote(req.NamespacedName, base.ResourceVersion, r.Clock.Now())
		if replayed != "" {
			r.Recorder.Eventf(&ev, nil, corev1.EventTypeNormal, funnelv1.ReasonReplayed, "Replay", "Processing again (replay %q, %s)", token, replayed)
			log.Info("Replayed event", "previous", replayed)
		}
		if o.phase == funnelv1.PhaseFailed && base.Status.Phase != funnelv1.PhaseFailed {
			r.Recorder.Eventf(&ev, nil, corev1.EventTypeWarning, o.ready.Reason, "Process", "%s", o.ready.Message)
		}
		if o.validated.Status == metav1.ConditionFalse && !meta.IsStatusConditionFalse(base.Status.Conditions, funnelv1.ConditionValidated) {
			r.Recorder.Eventf(&ev, nil, corev1.EventTypeWarning, o.validated.Reason, "Validate", "%s", o.validated.Message)
		}
		if o.conflict != nil && meta.FindStatusCondition(base.Status.Conditions, funnelv1.ConditionContentConflict) == nil {
			r.Recorder.Eventf(&ev, nil, corev1.EventTypeWarning, funnelv1.ConditionContentConflict, "Receive", "%s", o.conflict.Message)
		}
	}
	d.Recorded()
	eventProcessingDuration.WithLabelValues(string(r.Family), string(o.phase)).Observe(r.Clock.Since(start).Seconds())
	return ctrl.Result{RequeueAfter: d.RequeueAfter}, nil
}

// process validates the event with its type's handler and dispatches it. Invalid data
// is a terminal outcome, not an error: retrying cannot fix it.
func (r *EventReconciler) process(ctx context.Context, ev *funnelv1.FunnelEvent) (outcome, delivery.Result, error) {
	handler := funnel.Lookup(ev.Spec.Type)
	details := handler.Decode(ev.Spec.Data.Raw)
	// What the receiver found in the envelope counts as much as what is in the data.
	details.Issues = append(envelopeIssues(ev), details.Issues...)
	if err := r.Sealer.Check(ev); err != nil {
		return notReceived(handler.Known, details, err), delivery.Result{}, nil
	}
	d, err := r.Dispatcher.Dispatch(ctx, ev, details)
	if err != nil {
		return outcome{}, delivery.Result{}, fmt.Errorf("dispatching FunnelEvent %s/%s: %w", ev.Namespace, ev.Name, err)
	}
	return newOutcome(handler.Known, details, d.Deliveries), d, nil
}

// SetupWithManager registers the family's controller: named after the family, fed only
// the events whose type label belongs to it, and woken by changes of the Jobs its
// deliveries run (Jobs carry their event's type label, so the right family wakes).
func (r *EventReconciler) SetupWithManager(mgr ctrl.Manager, concurrency int) error {
	if r.Events == nil {
		return fmt.Errorf("the %s event controller needs the events' index (Events) to wake them when a subscription changes", r.Family)
	}
	family := familyPredicate(r.Family)
	b := ctrl.NewControllerManagedBy(mgr).
		Named(string(r.Family)).
		For(&funnelv1.FunnelEvent{}, builder.WithPredicates(family, replayPredicate())).
		Watches(&batchv1.Job{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &funnelv1.FunnelEvent{}, handler.OnlyControllerOwner()),
			builder.WithPredicates(family)).
		Watches(&funnelv1.FunnelSubscription{}, handler.EnqueueRequestsFromMapFunc(r.deliveringTo(family)),
			builder.WithPredicates(subscriptionChanged())).
		WithOptions(controller.Options{MaxConcurrentReconciles: concurrency})
	if w, ok := r.Dispatcher.(waker); ok {
		b = b.WatchesRawSource(w.Wakeups(family))
	}
	if o, ok := r.Dispatcher.(orderer); ok {
		b = b.Watches(&funnelv1.FunnelEvent{}, turns(o, family))
	}
	if s, ok := r.Dispatcher.(slotter); ok {
		b = b.Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(freedSlot(s, family)), builder.WithPredicates(jobEnded()))
	}
	return b.Complete(r)
}

// deliveringTo maps a subscription to the events of this family that still deliver to
// it (delivery.IndexDeliveringTo), so that a change of the subscription is acted on at
// once: a delivery held back while it was suspended or not Ready goes ahead, a dead
// letter it no longer has ends, a delivery to it once deleted fails.
func (r *EventReconciler) deliveringTo(mine predicate.Predicate) handler.MapFunc {
	return func(ctx context.Context, sub client.Object) []reconcile.Request {
		events, err := r.Events.DeliveringTo(ctx, client.ObjectKeyFromObject(sub))
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Waking the events of a changed subscription; they wake on their own timers", "subscription", klog.KObj(sub))
			return nil
		}
		return requestsFor(events, mine)
	}
}

// requestsFor is the reconcile requests of the events mine admits (this family's).
func requestsFor(events []funnelv1.FunnelEvent, mine predicate.Predicate) []reconcile.Request {
	var out []reconcile.Request
	for i := range events {
		if mine.Generic(event.GenericEvent{Object: &events[i]}) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&events[i])})
		}
	}
	return out
}

// subscriptionChanged lets through what may change a waiting delivery: a new generation
// of the spec, a different Ready condition, a deletion (and a creation, in case the
// deletion went unseen).
func subscriptionChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() {
				return true
			}
			old, okOld := e.ObjectOld.(*funnelv1.FunnelSubscription)
			sub, okNew := e.ObjectNew.(*funnelv1.FunnelSubscription)
			if !okOld || !okNew {
				return false
			}
			before := meta.FindStatusCondition(old.Status.Conditions, funnelv1.ConditionReady)
			after := meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)
			return !equality.Semantic.DeepEqual(before, after)
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// waker is a Dispatcher that finishes work outside the pass (the delivery executor's
// HTTP attempts) and then wakes the events it was for, among those mine admits.
type waker interface {
	Wakeups(mine predicate.Predicate) source.Source
}

// orderer is a Dispatcher that delivers the events of a subject in order: it names the
// events whose turn may have come when an event finishes a delivery or leaves the cache.
type orderer interface {
	Next(ctx context.Context, ev *funnelv1.FunnelEvent) ([]funnelv1.FunnelEvent, error)
}

// slotter is a Dispatcher that bounds a subscription's active Jobs: it names the events
// whose delivery may start when a Job of theirs ends.
type slotter interface {
	HeldFor(ctx context.Context, job client.Object) ([]funnelv1.FunnelEvent, error)
}

// freedSlot maps a Job that ended to the events of this family it held back.
func freedSlot(s slotter, mine predicate.Predicate) handler.MapFunc {
	return func(ctx context.Context, job client.Object) []reconcile.Request {
		events, err := s.HeldFor(ctx, job)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Waking the deliveries held by maxInFlight; they wake on their own timers", "job", klog.KObj(job))
			return nil
		}
		return requestsFor(events, mine)
	}
}

// jobEnded lets through a Job that completes or fails, or is deleted.
func jobEnded() predicate.Predicate {
	ended := func(o client.Object) bool {
		j, ok := o.(*batchv1.Job)
		return ok && delivery.JobEnded(j)
	}
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return !ended(e.ObjectOld) && ended(e.ObjectNew) },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// turns wakes, among the events mine admits, those whose turn came: when an event's
// delivery finishes, or it leaves the cache (finished, or deleted). It acts on what the
// cache has just been told, so the woken pass sees the finished delivery.
func turns(o orderer, mine predicate.Predicate) handler.EventHandler {
	wake := func(ctx context.Context, ev *funnelv1.FunnelEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		events, err := o.Next(ctx, ev)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Waking the next events of a subject; they wake on their own timers", "event", klog.KObj(ev))
			return
		}
		for _, req := range requestsFor(events, mine) {
			q.Add(req)
		}
	}
	return handler.Funcs{
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			old, okOld := e.ObjectOld.(*funnelv1.FunnelEvent)
			ev, okNew := e.ObjectNew.(*funnelv1.FunnelEvent)
			if okOld && okNew && finishedADelivery(old, ev) {
				wake(ctx, ev, q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if ev, ok := e.Object.(*funnelv1.FunnelEvent); ok {
				wake(ctx, ev, q)
			}
		},
	}
}

// finishedADelivery tells whether ev has a finished delivery that old had not finished
// (or not routed).
func finishedADelivery(old, ev *funnelv1.FunnelEvent) bool {
	for _, d := range ev.Status.Deliveries {
		if d.Phase != funnelv1.DeliverySucceeded && d.Phase != funnelv1.DeliveryFailed {
			continue
		}
		i := slices.IndexFunc(old.Status.Deliveries, func(o funnelv1.DeliveryStatus) bool { return o.Subscription == d.Subscription })
		if i < 0 || old.Status.Deliveries[i].Phase != d.Phase {
			return true
		}
	}
	return false
}

// familyPredicate admits events whose event-type label is a known type of the family;
// the unknown family takes every other event.
func familyPredicate(f funnel.Family) predicate.Predicate {
	known := sets.New(funnel.KnownTypes()...)
	mine := sets.New(funnel.TypesOf(f)...)
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		t := strings.ToLower(o.GetLabels()[funnelv1.LabelEventType])
		if f == funnel.FamilyUnknown {
			return !known.Has(t)
		}
		return mine.Has(t)
	})
}

// replayPredicate lets through creations (and the initial list after a restart) and the
// updates that ask for work: a new replay value. The controller's own status and label
// writes do not wake it again.
func replayPredicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld.GetAnnotations()[funnelv1.AnnotationReplay] != e.ObjectNew.GetAnnotations()[funnelv1.AnnotationReplay]
		},
		DeleteFunc: func(event.DeleteEvent) bool { return false },
	}
}
