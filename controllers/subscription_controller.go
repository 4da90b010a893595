package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
)

// DefaultSubscriptionRecheck is how often a subscription that is not Ready for a reason
// outside its spec (a Secret, a permission) is looked at again. The operator does not
// watch Secrets or RBAC, so time is what notices their change; a Ready subscription that
// depends on them is rechecked ten times less often.
const DefaultSubscriptionRecheck = 30 * time.Second

// SubscriptionReconciler keeps a FunnelSubscription's Ready condition honest: the filter
// compiles, its ServiceAccount may read the Secrets its actions name and they exist, its
// Job templates pass a dry run as that account.
type SubscriptionReconciler struct {
	client.Client
	// Identity acts as the subscription's ServiceAccount.
	Identity *identity.Clients
	Recorder recorder.EventRecorder
	// Recheck is DefaultSubscriptionRecheck when 0.
	Recheck time.Duration
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelsubscriptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelsubscriptions/status,verbs=patch

// Reconcile computes the Ready condition and writes it with one patch when it changed.
func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sub funnelv1.FunnelSubscription
	if err := r.Get(ctx, req.NamespacedName, &sub); err != nil {
		if apierrors.IsNotFound(err) {
			delivery.ForgetSubscription(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ready, err := r.ready(ctx, &sub)
	if err != nil {
		return ctrl.Result{}, err
	}
	ready.ObservedGeneration = sub.Generation
	previous := meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)
	if previous != nil {
		previous = previous.DeepCopy()
	}
	// Locked: the circuit breaker writes the Degraded condition, and a merge patch replaces
	// the conditions list whole, so a write from a cache older than the breaker's would
	// drop it. A conflict means the cache is behind: look again once it has caught up.
	wrote, err := statuspatch.Apply(ctx, r.Client, &sub, func(sub *funnelv1.FunnelSubscription) {
		meta.SetStatusCondition(&sub.Status.Conditions, ready)
		sub.Status.ObservedGeneration = sub.Generation
	}, client.MergeFromWithOptimisticLock{})
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: staleRecheck}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of FunnelSubscription %s: %w", req.NamespacedName, err)
	}
	if wrote && identityProblem(ready.Reason) && (previous == nil || previous.Reason != ready.Reason || previous.Message != ready.Message) {
		r.Recorder.Eventf(&sub, nil, corev1.EventTypeWarning, ready.Reason, "Authorize", "%s", ready.Message)
	}
	return ctrl.Result{RequeueAfter: r.recheck(&sub, ready)}, nil
}

// identityProblem: the subscription's account may not do what its actions need, or it
// has none. People are told with an Event, once per change.
func identityProblem(reason string) bool {
	return reason == funnelv1.ReasonForbidden || reason == funnelv1.ReasonServiceAccountRequired
}

// recheck is when to look again at what the operator does not watch: the Secrets and
// permissions of the subscription's ServiceAccount.
func (r *SubscriptionReconciler) recheck(sub *funnelv1.FunnelSubscription, ready metav1.Condition) time.Duration {
	every := r.Recheck
	if every <= 0 {
		every = DefaultSubscriptionRecheck
	}
	switch {
	case ready.Reason == funnelv1.ReasonSecretNotFound || ready.Reason == funnelv1.ReasonSecretKeyMissing ||
		ready.Reason == funnelv1.ReasonInvalidSigningKey || ready.Reason == funnelv1.ReasonForbidden:
		return every
	case ready.Status == metav1.ConditionTrue && len(identity.Needs(sub)) > 0:
		return 10 * every
	default:
		return 0 // only a change of the subscription can change the outcome
	}
}

// ready decides the Ready condition; only unexpected API errors are returned.
func (r *SubscriptionReconciler) ready(ctx context.Context, sub *funnelv1.FunnelSubscription) (metav1.Condition, error) {
	notReady := func(reason, format string, args ...any) (metav1.Condition, error) {
		return condition(funnelv1.ConditionReady, metav1.ConditionFalse, reason, fmt.Sprintf(format, args...)), nil
	}
	if sub.Spec.Filter != "" {
		if _, err := delivery.CompileFilter(sub.Spec.Filter); err != nil {
			return notReady(funnelv1.ReasonInvalidFilter, "spec.filter: %v", err)
		}
	}
	if needs := identity.Needs(sub); len(needs) > 0 {
		c, err := r.Identity.For(sub)
		if errors.Is(err, identity.ErrNoServiceAccount) {
			return notReady(funnelv1.ReasonServiceAccountRequired,
				"A ServiceAccount is needed (for %s): set spec.serviceAccountName, or run the operator with --default-service-account; only HTTP actions without Secrets need none",
				identity.Describe(needs))
		}
		if err != nil {
			return metav1.Condition{}, err
		}
		signing := map[funnelv1.SecretKeyRef]bool{}
		for _, ref := range append(delivery.SigningRefs(&sub.Spec.Action), delivery.SigningRefs(sub.Spec.Delivery.DeadLetter)...) {
			signing[ref] = true
		}
		for _, ref := range subscriptionSecrets(sub) {
			v, err := delivery.SecretValue(ctx, c, sub.Namespace, ref)
			if err == nil && signing[ref] {
				if _, err := delivery.SigningKey(v); err != nil {
					return notReady(funnelv1.ReasonInvalidSigningKey, "Secret %q, key %q: %v", ref.Name, ref.Key, err)
				}
			}
			switch {
			case err == nil:
			case apierrors.IsForbidden(err):
				return notReady(funnelv1.ReasonForbidden, "%s", apiMessage(err))
			case apierrors.IsNotFound(err):
				return notReady(funnelv1.ReasonSecretNotFound, "Secret %q does not exist", ref.Name)
			case errors.Is(err, delivery.ErrSecretKeyMissing):
				return notReady(funnelv1.ReasonSecretKeyMissing, "Secret %q has no non-empty key %q", ref.Name, ref.Key)
			default:
				return metav1.Condition{}, fmt.Errorf("FunnelSubscription %s/%s: %w", sub.Namespace, sub.Name, err)
			}
		}
		for _, j := range []struct {
			field string
			a     *funnelv1.Action
		}{{"spec.action.job", &sub.Spec.Action}, {"spec.delivery.deadLetter.job", sub.Spec.Delivery.DeadLetter}} {
			if j.a == nil || j.a.Job == nil {
				continue
			}
			err := dryRunJob(ctx, c, sub, j.a.Job)
			switch {
			case err == nil:
			case apierrors.IsForbidden(err):
				return notReady(funnelv1.ReasonForbidden, "%s", apiMessage(err))
			case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
				return notReady(funnelv1.ReasonInvalidJobTemplate, "%s.template: %s", j.field, err.Error())
			default:
				return metav1.Condition{}, fmt.Errorf("validating the Job template of FunnelSubscription %s/%s: %w", sub.Namespace, sub.Name, err)
			}
		}
	}
	if sub.Spec.Suspend {
		return notReady(funnelv1.ReasonSuspended, "spec.suspend is set: no new events are matched and pending retries wait")
	}
	return condition(funnelv1.ConditionReady, metav1.ConditionTrue, funnelv1.ReasonReady, "Routing matching events"), nil
}

// apiMessage is the API server's own message of a refusal.
func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}

// dryRunJob asks the API server, as the subscription's ServiceAccount (c), whether it
// would create a Job built from the template, without creating it.
func dryRunJob(ctx context.Context, c client.Client, sub *funnelv1.FunnelSubscription, a *funnelv1.JobAction) error {
	job := &batchv1.Job{ObjectMeta: *a.Template.ObjectMeta.DeepCopy(), Spec: *a.Template.Spec.DeepCopy()}
	job.Namespace, job.Name, job.GenerateName = sub.Namespace, "", "funnel-dry-run-"
	return c.Create(ctx, job, client.DryRunAll)
}

// subscriptionSecrets lists the Secret keys of a subscription's action and dead letter.
func subscriptionSecrets(sub *funnelv1.FunnelSubscription) []funnelv1.SecretKeyRef {
	return append(delivery.SecretRefs(&sub.Spec.Action), delivery.SecretRefs(sub.Spec.Delivery.DeadLetter)...)
}

// SetupWithManager registers the controller. It watches no Secrets and no RBAC: a
// subscription that depends on them is looked at again from time to time (recheck).
func (r *SubscriptionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("funnelsubscription").
		For(&funnelv1.FunnelSubscription{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(r)
}
