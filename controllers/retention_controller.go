package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
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
	// maxDeletesPerPass bounds one pass; a larger backlog continues in the next pass.
	maxDeletesPerPass = 1000
)

// RetentionReconciler deletes a receiver's finished events past its retention: those
// older (since receipt) than spec.retention.succeeded (Succeeded and Ignored) or .failed
// (Failed), then the oldest beyond spec.retention.maxEvents. Finished events are not in
// any cache: it pages through their metadata only, and is woken by RequeueAfter when the
// next event expires, not by events.
type RetentionReconciler struct {
	client.Client
	// APIReader lists without the cache (finished events are not cached).
	APIReader client.Reader
	Clock     clock.PassiveClock
	// Limiter paces deletes.
	Limiter *rate.Limiter
	// Recheck is the longest wait between passes.
	Recheck time.Duration
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelevents,verbs=delete

// finishedEvent is what a pass keeps of one finished event: enough to order and delete.
type finishedEvent struct {
	name    string
	uid     types.UID
	created time.Time
	expires time.Time
}

// Reconcile runs one retention pass for a receiver.
func (r *RetentionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rcv funnelv1.FunnelReceiver
	if err := r.Get(ctx, req.NamespacedName, &rcv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	succeeded, failed := retentionTTLs(rcv.Spec.Retention)
	now := r.Clock.Now()

	var keep []finishedEvent
	nextExpiry := now.Add(r.Recheck)
	deleted := 0
	err := r.eachFinished(ctx, &rcv, func(phase funnelv1.EventPhase, meta *metav1.PartialObjectMetadata) error {
		ttl := succeeded
		if phase == funnelv1.PhaseFailed {
			ttl = failed
		}
		ev := finishedEvent{name: meta.Name, uid: meta.UID, created: meta.CreationTimestamp.Time}
		ev.expires = ev.created.Add(ttl)
		if !ev.expires.After(now) && deleted < maxDeletesPerPass {
			deleted++
			return r.delete(ctx, rcv.Namespace, ev)
		}
		if ev.expires.Before(nextExpiry) {
			nextExpiry = ev.expires
		}
		if rcv.Spec.Retention.MaxEvents != nil {
			keep = append(keep, ev)
		}
		return nil
	})
	if err != nil {
		return ctrl.Result{}, err
	}

	if max := rcv.Spec.Retention.MaxEvents; max != nil && len(keep) > int(*max) {
		slices.SortFunc(keep, func(a, b finishedEvent) int {
			if c := a.created.Compare(b.created); c != 0 {
				return c
			}
			return cmp.Compare(a.name, b.name)
		})
		for _, ev := range keep[:len(keep)-int(*max)] {
			if deleted == maxDeletesPerPass {
				break
			}
			deleted++
			if err := r.delete(ctx, rcv.Namespace, ev); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	if deleted > 0 {
		ctrl.LoggerFrom(ctx).Info("Deleted finished events past retention", "count", deleted)
	}
	if deleted == maxDeletesPerPass {
		return ctrl.Result{RequeueAfter: time.Second}, nil // a backlog: continue soon
	}
	return ctrl.Result{RequeueAfter: max(nextExpiry.Sub(now), time.Second)}, nil
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

// delete removes one event, paced by the limiter; the UID precondition makes sure a
// re-created event of the same name (Funnel sent it again) is not the one deleted.
func (r *RetentionReconciler) delete(ctx context.Context, ns string, ev finishedEvent) error {
	if err := r.Limiter.Wait(ctx); err != nil {
		return fmt.Errorf("waiting to delete FunnelEvent %s/%s: %w", ns, ev.name, err)
	}
	obj := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ev.name}}
	err := r.Delete(ctx, obj, client.Preconditions{UID: &ev.uid})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting FunnelEvent %s/%s: %w", ns, ev.name, err)
	}
	return nil
}

// retentionTTLs returns the receiver's retention ages, with the defaults for objects
// stored before defaulting (the API server fills them in on create).
func retentionTTLs(r funnelv1.Retention) (succeeded, failed time.Duration) {
	succeeded, failed = funnelv1.DefaultSucceededRetention, funnelv1.DefaultFailedRetention
	if r.Succeeded != nil {
		succeeded = r.Succeeded.Duration
	}
	if r.Failed != nil {
		failed = r.Failed.Duration
	}
	return succeeded, failed
}

// SetupWithManager registers the retention controller. It reacts to receiver creation
// and spec changes; everything else is RequeueAfter.
func (r *RetentionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("retention").
		For(&funnelv1.FunnelReceiver{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}
