// Package backfill runs FunnelBackfills: archived events delivered again, to one
// subscription only, paced, resumable. The archive is the source (events are read a page
// at a time in receipt order) and the record: each event's outcome is a row there, so a
// restart neither skips nor repeats an event that got an outcome, and nothing is written
// to the API server per event — the backfill's status only every few seconds.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
)

const (
	// pageSize is how many archived events one read returns.
	pageSize = 100
	// DefaultProgressInterval is how often a running backfill writes its status.
	DefaultProgressInterval = 2 * time.Second
	// recheck is how soon a backfill that cannot run looks again.
	recheck = 30 * time.Second
)

// Deliverer makes one attempt of a subscription's action for an event: delivery.Router.
type Deliverer interface {
	Attempt(ctx context.Context, ev *funnelv1.FunnelEvent, sub *funnelv1.FunnelSubscription, n int32) delivery.Outcome
}

// Reconciler starts a worker per FunnelBackfill that can run, and stops it when the
// backfill is deleted or completes, or when the operator loses the lead.
type Reconciler struct {
	Client client.Client
	// Archive is where events come from and outcomes go; nil: the archive is off and
	// backfills say so.
	Archive   *archive.Store
	Deliverer Deliverer
	Clock     clock.Clock
	// ProgressInterval is DefaultProgressInterval when zero.
	ProgressInterval time.Duration

	mu      sync.Mutex
	base    context.Context
	stopAll context.CancelFunc
	workers map[types.UID]*worker
	wg      sync.WaitGroup
}

type worker struct {
	key    types.NamespacedName
	cancel context.CancelFunc
	done   chan struct{}
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelbackfills,verbs=list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelbackfills/status,verbs=patch

// Reconcile checks a backfill and runs or stops its worker.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var bf funnelv1.FunnelBackfill
	if err := r.Client.Get(ctx, req.NamespacedName, &bf); err != nil {
		if apierrors.IsNotFound(err) {
			r.stopByName(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !bf.DeletionTimestamp.IsZero() || meta.IsStatusConditionTrue(bf.Status.Conditions, funnelv1.ConditionComplete) {
		r.stop(bf.UID)
		return ctrl.Result{}, nil
	}
	ready, err := r.check(ctx, &bf)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.setConditions(ctx, client.ObjectKeyFromObject(&bf), ready); err != nil {
		return ctrl.Result{}, err
	}
	if ready.Status != metav1.ConditionTrue {
		r.stop(bf.UID)
		return ctrl.Result{RequeueAfter: recheck}, nil
	}
	r.start(&bf)
	return ctrl.Result{}, nil
}

// check is the Ready condition: the archive on, the subscription there with an HTTP action.
func (r *Reconciler) check(ctx context.Context, bf *funnelv1.FunnelBackfill) (metav1.Condition, error) {
	c := metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: bf.Generation}
	var sub funnelv1.FunnelSubscription
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: bf.Namespace, Name: bf.Spec.Subscription}, &sub); {
	case r.Archive == nil:
		c.Reason, c.Message = funnelv1.ReasonNoArchive, "the operator runs without the archive (FUNNEL_ARCHIVE_DATABASE_URL), where backfills read events"
	case apierrors.IsNotFound(err):
		c.Reason, c.Message = funnelv1.ReasonSubscriptionNotFound, "FunnelSubscription "+bf.Spec.Subscription+" does not exist"
	case err != nil:
		return c, fmt.Errorf("reading FunnelSubscription %s/%s: %w", bf.Namespace, bf.Spec.Subscription, err)
	case sub.Spec.Action.HTTP == nil:
		c.Reason, c.Message = funnelv1.ReasonUnsupportedAction, "FunnelSubscription "+sub.Name+" runs Jobs; backfills deliver to HTTP actions"
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, funnelv1.ReasonBackfilling, "delivering archived events to "+sub.Name
	}
	return c, nil
}

// start runs a worker for bf unless one runs.
func (r *Reconciler) start(bf *funnelv1.FunnelBackfill) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.base == nil || r.base.Err() != nil {
		return // not leading (any more)
	}
	if _, ok := r.workers[bf.UID]; ok {
		return
	}
	ctx, cancel := context.WithCancel(r.base)
	w := &worker{key: client.ObjectKeyFromObject(bf), cancel: cancel, done: make(chan struct{})}
	r.workers[bf.UID] = w
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(w.done)
		defer func() {
			r.mu.Lock()
			delete(r.workers, bf.UID)
			r.mu.Unlock()
		}()
		r.loop(ctx, w.key, bf.DeepCopy())
	}()
}

// loop runs a backfill until it completes, is deleted or the context ends; after a
// failure (the archive's database down, a conflict) it waits and resumes from the
// position it last wrote.
func (r *Reconciler) loop(ctx context.Context, key types.NamespacedName, bf *funnelv1.FunnelBackfill) {
	log := ctrl.Log.WithName("backfill").WithValues("funnelbackfill", key)
	ctx = ctrl.LoggerInto(ctx, log)
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: 7, Cap: time.Minute}
	for {
		err := r.run(ctx, bf)
		if err == nil || errors.Is(err, errGone) || ctx.Err() != nil {
			return
		}
		delay := backoff.Step()
		log.Error(err, "Backfill interrupted; resuming", "after", delay)
		t := r.Clock.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		var cur funnelv1.FunnelBackfill
		if err := r.Client.Get(ctx, key, &cur); err != nil || cur.UID != bf.UID {
			return // gone; a new one with the name gets its own worker
		}
		bf = &cur
	}
}

// stop cancels a backfill's worker and waits for it.
func (r *Reconciler) stop(uid types.UID) {
	r.mu.Lock()
	w := r.workers[uid]
	r.mu.Unlock()
	if w != nil {
		w.cancel()
		<-w.done
	}
}

// stopByName stops the worker of a deleted backfill, known only by name now.
func (r *Reconciler) stopByName(key types.NamespacedName) {
	r.mu.Lock()
	var uids []types.UID
	for uid, w := range r.workers {
		if w.key == key {
			uids = append(uids, uid)
		}
	}
	r.mu.Unlock()
	for _, uid := range uids {
		r.stop(uid)
	}
}

// errGone ends a worker whose backfill was deleted.
var errGone = errors.New("the FunnelBackfill is gone")

// run delivers the backfill's events from its position on, and completes it.
func (r *Reconciler) run(ctx context.Context, bf *funnelv1.FunnelBackfill) error {
	q, err := r.query(bf)
	if err != nil {
		return err
	}
	eps := bf.Spec.EventsPerSecond
	if eps <= 0 {
		eps = funnelv1.DefaultBackfillEventsPerSecond
	}
	limiter := rate.NewLimiter(rate.Limit(eps), 1)
	interval := r.ProgressInterval
	if interval <= 0 {
		interval = DefaultProgressInterval
	}
	if bf.Status.Position != "" {
		if q.After, err = archive.DecodeCursor(bf.Status.Position); err != nil {
			return fmt.Errorf("status.position: %w", err)
		}
	}
	lastWrite := time.Time{}
	for {
		var sub funnelv1.FunnelSubscription
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: bf.Namespace, Name: bf.Spec.Subscription}, &sub); err != nil {
			return fmt.Errorf("reading FunnelSubscription %s: %w", bf.Spec.Subscription, err)
		}
		if len(bf.Spec.EventTypes) == 0 {
			q.TypePatterns = sub.Spec.EventTypes
		}
		page, more, err := r.Archive.List(ctx, q)
		if err != nil {
			return err
		}
		uids := make([]types.UID, len(page))
		for i := range page {
			uids[i] = page[i].UID
		}
		done, err := r.Archive.BackfillDone(ctx, bf.UID, uids)
		if err != nil {
			return err
		}
		for _, ev := range page {
			if !done[ev.UID] {
				if err := limiter.Wait(ctx); err != nil {
					return err
				}
				if err := r.deliver(ctx, bf, &sub, ev); err != nil {
					return err
				}
			}
			c := ev.Cursor()
			q.After = &c
			if now := r.Clock.Now(); now.Sub(lastWrite) >= interval {
				if err := r.progress(ctx, bf, q, false); err != nil {
					return err
				}
				lastWrite = now
			}
		}
		if !more {
			return r.progress(ctx, bf, q, true)
		}
	}
}

// query selects the backfill's events.
func (r *Reconciler) query(bf *funnelv1.FunnelBackfill) (archive.Query, error) {
	q := archive.Query{Namespace: bf.Namespace, TypePatterns: bf.Spec.EventTypes, Limit: pageSize,
		ReceivedBefore: bf.CreationTimestamp.Time}
	if bf.Spec.ReceivedBefore != nil {
		q.ReceivedBefore = bf.Spec.ReceivedBefore.Time
	}
	if bf.Spec.ReceivedAfter != nil {
		q.ReceivedAfter = bf.Spec.ReceivedAfter.Time
	}
	if bf.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(bf.Spec.Selector)
		if err != nil {
			return q, fmt.Errorf("spec.selector: %w", err)
		}
		if !sel.Empty() {
			q.Labels = sel
		}
	}
	return q, nil
}

// deliver makes the attempts the subscription's policy allows, and records the outcome.
func (r *Reconciler) deliver(ctx context.Context, bf *funnelv1.FunnelBackfill, sub *funnelv1.FunnelSubscription, ev archive.Event) error {
	fev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: ev.Name, UID: ev.UID, Labels: ev.Labels},
		Spec: ev.Spec, Status: ev.Status}
	d := archive.BackfillDelivery{Backfill: bf.UID, Namespace: bf.Namespace, BackfillName: bf.Name, Event: ev, Subscription: sub.Name}
	for n := int32(1); ; n++ {
		o := r.Deliverer.Attempt(ctx, fev, sub, n)
		if ctx.Err() != nil {
			return ctx.Err() // stopped mid-attempt: no outcome; the next run tries again
		}
		d.Attempts, d.ResponseCode, d.LastError = n, o.ResponseCode, o.Error
		if o.Succeeded || o.RetryIn <= 0 {
			d.Phase = string(funnelv1.DeliveryFailed)
			if o.Succeeded {
				d.Phase = string(funnelv1.DeliverySucceeded)
			}
			deliveriesTotal.WithLabelValues(bf.Namespace+"/"+bf.Name, d.Phase).Inc()
			return r.Archive.RecordBackfillDelivery(ctx, d)
		}
		t := r.Clock.NewTimer(o.RetryIn)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C():
		}
	}
}

// progress writes the counts and position; with done, the completion.
func (r *Reconciler) progress(ctx context.Context, bf *funnelv1.FunnelBackfill, q archive.Query, done bool) error {
	delivered, failed, err := r.Archive.BackfillCounts(ctx, bf.UID)
	if err != nil {
		return err
	}
	remaining := int64(0)
	if !done {
		if remaining, err = r.Archive.Count(ctx, q); err != nil {
			return err
		}
	}
	now := metav1.NewTime(r.Clock.Now())
	complete := metav1.Condition{Type: funnelv1.ConditionComplete, Status: metav1.ConditionFalse, Reason: funnelv1.ReasonInProgress,
		Message: "delivering", ObservedGeneration: bf.Generation}
	if done {
		complete.Status, complete.Reason = metav1.ConditionTrue, funnelv1.ReasonCompleted
		complete.Message = fmt.Sprintf("%d delivered, %d failed", delivered, failed)
	}
	cur := &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: bf.Namespace, Name: bf.Name}}
	_, err = statuspatch.ApplyLatest(ctx, r.Client, cur, func(cur *funnelv1.FunnelBackfill) error {
		if cur.UID != bf.UID {
			return errGone
		}
		cur.Status.ObservedGeneration = cur.Generation
		cur.Status.Delivered, cur.Status.Failed, cur.Status.Remaining = delivered, failed, remaining
		if q.After != nil {
			cur.Status.Position = q.After.Encode()
		}
		if cur.Status.StartTime == nil {
			cur.Status.StartTime = &now
		}
		if done {
			cur.Status.CompletionTime = &now
		}
		meta.SetStatusCondition(&cur.Status.Conditions, complete)
		return nil
	})
	if apierrors.IsNotFound(err) {
		return errGone
	}
	if err != nil {
		return fmt.Errorf("writing the progress of FunnelBackfill %s/%s: %w", bf.Namespace, bf.Name, err)
	}
	return nil
}

// setConditions writes the Ready condition (and Complete=False before the first
// progress) when they changed.
func (r *Reconciler) setConditions(ctx context.Context, key types.NamespacedName, ready metav1.Condition) error {
	cur := &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	_, err := statuspatch.ApplyLatest(ctx, r.Client, cur, func(cur *funnelv1.FunnelBackfill) error {
		meta.SetStatusCondition(&cur.Status.Conditions, ready)
		if meta.FindStatusCondition(cur.Status.Conditions, funnelv1.ConditionComplete) == nil {
			meta.SetStatusCondition(&cur.Status.Conditions, metav1.Condition{Type: funnelv1.ConditionComplete,
				Status: metav1.ConditionFalse, Reason: funnelv1.ReasonInProgress, Message: "not started", ObservedGeneration: cur.Generation})
		}
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the conditions of FunnelBackfill %s: %w", key, err)
	}
	return nil
}

// Start holds the workers' context while this replica leads; they stop with it.
func (r *Reconciler) Start(ctx context.Context) error {
	<-ctx.Done()
	r.mu.Lock()
	r.stopAll()
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// NeedLeaderElection: backfills run on the leader.
func (r *Reconciler) NeedLeaderElection() bool { return true }

// SetupWithManager registers the controller and the runnable that holds the workers.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.base, r.stopAll = context.WithCancel(context.Background())
	r.workers = map[types.UID]*worker{}
	if err := mgr.Add(r); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("funnelbackfill").
		For(&funnelv1.FunnelBackfill{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A backfill waiting for its subscription (or for an HTTP action) looks again as soon as
		// the subscription appears or changes, not only at the next recheck.
		Watches(&funnelv1.FunnelSubscription{}, handler.EnqueueRequestsFromMapFunc(r.backfillsOf)).
		// A process may run it more than once, one after the other (a new leader; tests).
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		Complete(r)
}

// backfillsOf names the backfills of sub's namespace that deliver to sub.
func (r *Reconciler) backfillsOf(ctx context.Context, sub client.Object) []reconcile.Request {
	var list funnelv1.FunnelBackfillList
	if err := r.Client.List(ctx, &list, client.InNamespace(sub.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing FunnelBackfills for a changed FunnelSubscription", "funnelsubscription", client.ObjectKeyFromObject(sub))
		return nil
	}
	var reqs []reconcile.Request
	for _, bf := range list.Items {
		if bf.Spec.Subscription == sub.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&bf)})
		}
	}
	return reqs
}
