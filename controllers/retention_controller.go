package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
)

// Retention defaults.
const (
	// DefaultRetentionRecheck is the longest a receiver waits between retention passes:
	// maxEvents has no expiry time to wake up for, and new events finish all the time.
	DefaultRetentionRecheck = 10 * time.Minute
	// DefaultRetentionDeletesPerSecond bounds deletes across receivers, so cleaning up a
	// backlog never competes with ingest for the API server.
	DefaultRetentionDeletesPerSecond = 20
	// retentionPageSize is the page size of the metadata-only list of finished events.
	retentionPageSize = 500
	// maxDeletesPerPass bounds one pass; a larger backlog continues in the next pass. It
	// also bounds what a pass remembers: the oldest maxDeletesPerPass events, not all.
	maxDeletesPerPass = 1000
)

// Why retention deleted an event: the reason label of funnel_retention_deleted_total.
const (
	deletedForAge       = "age"
	deletedForMaxEvents = "max_events"
)

var (
	retentionDeleted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_retention_deleted_total",
		Help: "Finished FunnelEvents deleted by retention, by receiver (namespace/name) and reason: age (past spec.retention.succeeded/failed) or max_events (beyond spec.retention.maxEvents while younger).",
	}, []string{"receiver", "reason"})
	retentionFinished = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "funnel_retention_finished_events",
		Help: "Finished FunnelEvents a receiver (namespace/name) holds after the last retention pass.",
	}, []string{"receiver"})
)

func init() { metrics.Registry.MustRegister(retentionDeleted, retentionFinished) }

// RetentionReconciler deletes a receiver's finished events past its retention: those
// older (since receipt) than spec.retention.succeeded (Succeeded and Ignored) or .failed
// (Failed), then the oldest beyond spec.retention.maxEvents. Finished events are not in
// any cache: it pages through their metadata only, and is woken by RequeueAfter when the
// next event expires, not by events. The receiver's MaxEventsReached condition, an Event
// and funnel_retention_deleted_total{reason="max_events"} say when the cap, not the age,
// decides.
type RetentionReconciler struct {
	client.Client
	// APIReader lists without the cache (finished events are not cached).
	APIReader client.Reader
	Clock     clock.PassiveClock
	// Limiter paces deletes.
	Limiter *rate.Limiter
	// Recheck is the longest wait between passes.
	Recheck time.Duration
	// Recorder records the MaxEventsReached transitions on the receiver.
	Recorder recorder.EventRecorder
	// Archive, when set, is the history archive: only events archived in their current
	// version are deleted, the others wait for the archiver.
	Archive ArchiveIndex
}

// ArchiveIndex says which events the archive holds, and in which version.
type ArchiveIndex interface {
	// ArchivedVersions returns the archived resourceVersion of those of uids archived.
	ArchivedVersions(ctx context.Context, uids []types.UID) (map[types.UID]string, error)
}

// archiveRecheck is how soon a pass runs again when the archive is behind.
const archiveRecheck = 15 * time.Second

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents,verbs=delete
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create

// finishedEvent is what a pass keeps of one finished event: enough to order and delete.
type finishedEvent struct {
	name            string
	uid             types.UID
	resourceVersion string
	created         time.Time
	// replay is its funnel.leasing.dev/replay value, "" without one.
	replay string
}

// olderThan orders events by receipt, oldest first; names break ties of the creation
// timestamp's one-second resolution.
func olderThan(a, b finishedEvent) int {
	if c := a.created.Compare(b.created); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// retentionPlan is what one pass found: the events to delete and why, and what to tell.
type retentionPlan struct {
	// byAge are events past their age; byCap the oldest of the younger ones beyond
	// maxEvents, oldest first.
	byAge, byCap []finishedEvent
	// finished counts the receiver's finished events before the deletes.
	finished int
	// overCap is true when more finished events than maxEvents are younger than their age.
	overCap bool
	// nextExpiry is when the oldest event kept expires.
	nextExpiry time.Time
	// unarchived counts the events due for deletion that the archive does not hold yet.
	unarchived int
	// replaying counts those kept because a replay was asked for and not started yet.
	replaying int
}

// spare drops from both delete lists the events spared says to keep in the cluster; on an
// error it stops there, and the pass with it.
func (p *retentionPlan) spare(spared func(finishedEvent) (bool, error)) error {
	for _, evs := range []*[]finishedEvent{&p.byAge, &p.byCap} {
		deleting := (*evs)[:0]
		for _, ev := range *evs {
			spare, err := spared(ev)
			if err != nil {
				return err
			}
			if !spare {
				deleting = append(deleting, ev)
			}
		}
		*evs = deleting
	}
	return nil
}

// Reconcile runs one retention pass for a receiver.
func (r *RetentionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	receiverLabel := req.String()
	var rcv funnelv1.FunnelReceiver
	if err := r.Get(ctx, req.NamespacedName, &rcv); err != nil {
		if apierrors.IsNotFound(err) {
			retentionFinished.DeleteLabelValues(receiverLabel)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	now := r.Clock.Now()
	plan, err := r.plan(ctx, &rcv, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.keepUnarchived(ctx, &plan); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.keepReplays(ctx, rcv.Namespace, &plan); err != nil {
		return ctrl.Result{}, err
	}

	deleted := 0
	for _, batch := range []struct {
		reason string
		events []finishedEvent
	}{{deletedForAge, plan.byAge}, {deletedForMaxEvents, plan.byCap}} {
		for _, ev := range batch.events {
			gone, err := r.delete(ctx, rcv.Namespace, ev)
			if err != nil {
				return ctrl.Result{}, err
			}
			if gone {
				retentionDeleted.WithLabelValues(receiverLabel, batch.reason).Inc()
				deleted++
			}
		}
	}
	retentionFinished.WithLabelValues(receiverLabel).Set(float64(plan.finished - deleted))
	if deleted > 0 {
		ctrl.LoggerFrom(ctx).Info("Deleted finished events past retention", "byAge", len(plan.byAge), "byMaxEvents", len(plan.byCap))
	}
	if err := r.reportCap(ctx, &rcv, plan.overCap); err != nil {
		return ctrl.Result{}, err
	}
	if deleted == maxDeletesPerPass {
		return ctrl.Result{RequeueAfter: time.Second}, nil // a backlog: continue soon
	}
	next := max(plan.nextExpiry.Sub(now), time.Second)
	if plan.unarchived > 0 {
		ctrl.LoggerFrom(ctx).V(1).Info("Waiting for the archive before deleting", "events", plan.unarchived)
		next = min(next, archiveRecheck)
	}
	if plan.replaying > 0 {
		ctrl.LoggerFrom(ctx).V(1).Info("Keeping events whose replay has not started", "events", plan.replaying)
		next = min(next, archiveRecheck)
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// keepUnarchived drops from the plan the events the archive does not hold in their
// current version; with no archive it keeps the plan.
func (r *RetentionReconciler) keepUnarchived(ctx context.Context, plan *retentionPlan) error {
	if r.Archive == nil {
		return nil
	}
	var uids []types.UID
	for _, evs := range [][]finishedEvent{plan.byAge, plan.byCap} {
		for _, ev := range evs {
			uids = append(uids, ev.uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	archived, err := r.Archive.ArchivedVersions(ctx, uids)
	if err != nil {
		return fmt.Errorf("asking the archive which events it holds (retention waits for it): %w", err)
	}
	return plan.spare(func(ev finishedEvent) (bool, error) {
		if archived[ev.uid] != ev.resourceVersion {
			plan.unarchived++
			return true, nil
		}
		return false, nil
	})
}

// keepReplays drops from the plan the events whose replay was asked for (a new
// funnel.leasing.dev/replay value) but not started yet: the replay watcher sets them
// Pending, and deleting one first would lose the replay the user asked for. Only events
// carrying the annotation are read, whole, from the API server; the list has metadata only.
func (r *RetentionReconciler) keepReplays(ctx context.Context, ns string, plan *retentionPlan) error {
	return plan.spare(func(fe finishedEvent) (bool, error) {
		pending, err := r.replayPending(ctx, ns, fe)
		if pending {
			plan.replaying++
		}
		return pending, err
	})
}

// replayPending tells whether the event as listed carries a replay value it has not
// started. One gone or re-created meanwhile is not: the delete's preconditions spare it.
func (r *RetentionReconciler) replayPending(ctx context.Context, ns string, fe finishedEvent) (bool, error) {
	if fe.replay == "" {
		return false, nil
	}
	var ev funnelv1.FunnelEvent
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: fe.name}, &ev); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("reading FunnelEvent %s/%s for its replay: %w", ns, fe.name, err)
	}
	return ev.UID == fe.uid && replayToken(ev.Annotations[funnelv1.AnnotationReplay]) != ev.Status.ObservedReplay, nil
}

// plan pages through the receiver's finished events once and decides what to delete:
// those past their age first, then the oldest of the rest beyond maxEvents, at most
// maxDeletesPerPass in all.
func (r *RetentionReconciler) plan(ctx context.Context, rcv *funnelv1.FunnelReceiver, now time.Time) (retentionPlan, error) {
	succeeded, failed := retentionTTLs(rcv.Spec.Retention)
	maxEvents := int(retentionMaxEvents(rcv.Spec.Retention))
	plan := retentionPlan{nextExpiry: now.Add(r.Recheck)}
	expired := 0
	// The oldest of the younger events, trimmed to the maxDeletesPerPass oldest now and
	// then: the cap never deletes more in one pass, so memory does not follow history.
	var young []finishedEvent
	trim := func() {
		slices.SortFunc(young, olderThan)
		young = young[:min(len(young), maxDeletesPerPass)]
	}
	err := r.eachFinished(ctx, rcv, func(phase funnelv1.EventPhase, m *metav1.PartialObjectMetadata) error {
		plan.finished++
		ttl := succeeded
		if phase == funnelv1.PhaseFailed {
			ttl = failed
		}
		ev := finishedEvent{name: m.Name, uid: m.UID, resourceVersion: m.ResourceVersion, created: m.CreationTimestamp.Time,
			replay: m.Annotations[funnelv1.AnnotationReplay]}
		if expires := ev.created.Add(ttl); !expires.After(now) {
			expired++
			if len(plan.byAge) < maxDeletesPerPass {
				plan.byAge = append(plan.byAge, ev)
			}
			return nil
		} else if expires.Before(plan.nextExpiry) {
			plan.nextExpiry = expires
		}
		if maxEvents > 0 {
			if young = append(young, ev); len(young) >= 2*maxDeletesPerPass {
				trim()
			}
		}
		return nil
	})
	if err != nil || maxEvents == 0 {
		return plan, err
	}
	excess := plan.finished - expired - maxEvents
	plan.overCap = excess > 0
	trim()
	room := maxDeletesPerPass - len(plan.byAge)
	plan.byCap = young[:max(0, min(excess, room, len(young)))]
	return plan, nil
}

// eachFinished pages through the metadata of the receiver's finished events, phase by
// phase, selected on the server by the CRD's selectable fields.
func (r *RetentionReconciler) eachFinished(ctx context.Context, rcv *funnelv1.FunnelReceiver,
	fn func(funnelv1.EventPhase, *metav1.PartialObjectMetadata) error) error {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
	for _, phase := range []funnelv1.EventPhase{funnelv1.PhaseSucceeded, funnelv1.PhaseIgnored, funnelv1.PhaseFailed} {
		selector := fields.Set{funnelv1.FieldReceiver: rcv.Name, funnelv1.FieldPhase: string(phase)}.AsSelector()
		for cont := ""; ; {
			if err := r.APIReader.List(ctx, list, client.InNamespace(rcv.Namespace), client.MatchingFieldsSelector{Selector: selector},
				client.Limit(retentionPageSize), client.Continue(cont)); err != nil {
				return fmt.Errorf("listing %s FunnelEvents of %s/%s: %w", phase, rcv.Namespace, rcv.Name, err)
			}
			for i := range list.Items {
				if err := fn(phase, &list.Items[i]); err != nil {
					return err
				}
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
	}
	return nil
}

// delete removes one event, paced by the limiter, only as the pass listed it: the UID
// precondition makes sure a re-created event of the same name (Funnel sent it again) is
// not the one deleted, the resourceVersion one that it has not changed since — a replay
// between the list and the delete (the pass may take minutes) made it unfinished again,
// and with the archive, the state deleted is the one archived. A changed event is left
// to the next pass. It reports whether this delete removed the event.
func (r *RetentionReconciler) delete(ctx context.Context, ns string, ev finishedEvent) (bool, error) {
	if err := r.Limiter.Wait(ctx); err != nil {
		return false, fmt.Errorf("waiting to delete FunnelEvent %s/%s: %w", ns, ev.name, err)
	}
	obj := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ev.name}}
	err := r.Delete(ctx, obj, client.Preconditions{UID: &ev.uid, ResourceVersion: &ev.resourceVersion})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("deleting FunnelEvent %s/%s: %w", ns, ev.name, err)
}

// reportCap sets the receiver's MaxEventsReached condition, with one status patch when it
// changed, and records an Event when the cap starts deciding.
func (r *RetentionReconciler) reportCap(ctx context.Context, rcv *funnelv1.FunnelReceiver, overCap bool) error {
	maxEvents := retentionMaxEvents(rcv.Spec.Retention)
	cond := metav1.Condition{Type: funnelv1.ConditionMaxEventsReached, Status: metav1.ConditionFalse,
		Reason: funnelv1.ReasonWithinMaxEvents, Message: "finished events are deleted by age only", ObservedGeneration: rcv.Generation}
	if overCap {
		cond.Status, cond.Reason = metav1.ConditionTrue, funnelv1.ReasonMaxEventsReached
		cond.Message = fmt.Sprintf("more than maxEvents (%d) finished events: the oldest are deleted before their age", maxEvents)
	}
	old := meta.FindStatusCondition(rcv.Status.Conditions, cond.Type)
	if sameCondition(old, cond) {
		return nil
	}
	// The optimistic lock keeps the receiver controller's Ready condition (both write the
	// conditions list, which a merge patch replaces whole); on a conflict, read again
	// (from the cache: the operator may list and watch receivers, not get them).
	_, err := statuspatch.ApplyLatest(ctx, r.Client, rcv, func(rcv *funnelv1.FunnelReceiver) error {
		meta.SetStatusCondition(&rcv.Status.Conditions, cond)
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile
	} else if err != nil {
		return fmt.Errorf("setting %s on FunnelReceiver %s/%s: %w", cond.Type, rcv.Namespace, rcv.Name, err)
	}
	if overCap && (old == nil || old.Status != metav1.ConditionTrue) && r.Recorder != nil {
		if r.Archive != nil {
			r.Recorder.Eventf(rcv, nil, corev1.EventTypeNormal, cond.Reason, "Retention",
				"More than maxEvents (%d) finished events: the oldest are deleted from the cluster before their age, once archived", maxEvents)
		} else {
			r.Recorder.Eventf(rcv, nil, corev1.EventTypeWarning, cond.Reason, "Retention",
				"More than maxEvents (%d) finished events: the oldest are deleted before their age; raise spec.retention.maxEvents to keep more", maxEvents)
		}
	}
	return nil
}

// sameCondition reports whether old already says what c says.
func sameCondition(old *metav1.Condition, c metav1.Condition) bool {
	return old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message &&
		old.ObservedGeneration == c.ObservedGeneration
}

// retentionTTLs returns the receiver's retention ages, with the defaults for objects
// stored before defaulting (the API server fills them in on create).
func retentionTTLs(r funnelv1.Retention) (succeeded, failed time.Duration) {
	return r.Succeeded.Or(funnelv1.DefaultSucceededRetention), r.Failed.Or(funnelv1.DefaultFailedRetention)
}

// retentionMaxEvents returns the receiver's cap on finished events, 0 for none, with the
// default for objects stored before it existed.
func retentionMaxEvents(r funnelv1.Retention) int32 {
	if r.MaxEvents == nil {
		return funnelv1.DefaultMaxEvents
	}
	return *r.MaxEvents
}

// SetupWithManager registers the retention controller. It reacts to receiver creation
// and spec changes; everything else is RequeueAfter.
func (r *RetentionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("retention").
		For(&funnelv1.FunnelReceiver{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}
