package controllers

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
)

// SubscriptionReconciler keeps a FunnelSubscription's Ready condition honest: the filter
// compiles, the Secrets its actions read exist, its Job templates are valid.
type SubscriptionReconciler struct {
	client.Client
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelsubscriptions,verbs=get;list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelsubscriptions/status,verbs=patch

// Reconcile computes the Ready condition and writes it with one patch when it changed.
func (r *SubscriptionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var sub funnelv1.FunnelSubscription
	if err := r.Get(ctx, req.NamespacedName, &sub); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !sub.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	base := sub.DeepCopy()
	ready, err := r.ready(ctx, &sub)
	if err != nil {
		return ctrl.Result{}, err
	}
	ready.ObservedGeneration = sub.Generation
	meta.SetStatusCondition(&sub.Status.Conditions, ready)
	sub.Status.ObservedGeneration = sub.Generation
	if equality.Semantic.DeepEqual(base.Status, sub.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, &sub, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of FunnelSubscription %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
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
	for _, ref := range subscriptionSecrets(sub) {
		var s corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: sub.Namespace, Name: ref.Name}, &s)
		if apierrors.IsNotFound(err) {
			return notReady(funnelv1.ReasonSecretNotFound, "Secret %q does not exist", ref.Name)
		}
		if err != nil {
			return metav1.Condition{}, fmt.Errorf("reading Secret %s/%s: %w", sub.Namespace, ref.Name, err)
		}
		if len(s.Data[ref.Key]) == 0 {
			return notReady(funnelv1.ReasonSecretKeyMissing, "Secret %q has no non-empty key %q", ref.Name, ref.Key)
		}
	}
	for _, j := range []struct {
		field string
		a     *funnelv1.Action
	}{{"spec.action.job", &sub.Spec.Action}, {"spec.delivery.deadLetter.job", sub.Spec.Delivery.DeadLetter}} {
		field, a := j.field, j.a
		if a == nil || a.Job == nil {
			continue
		}
		if msg, err := r.dryRunJob(ctx, sub, a.Job); err != nil {
			return metav1.Condition{}, err
		} else if msg != "" {
			return notReady(funnelv1.ReasonInvalidJobTemplate, "%s.template: %s", field, msg)
		}
	}
	if sub.Spec.Suspend {
		return notReady(funnelv1.ReasonSuspended, "spec.suspend is set: no new events are matched and pending retries wait")
	}
	return condition(funnelv1.ConditionReady, metav1.ConditionTrue, funnelv1.ReasonReady, "Routing matching events"), nil
}

// dryRunJob asks the API server whether a Job built from the template is valid, without
// creating it. It returns the API server's complaint, if any.
func (r *SubscriptionReconciler) dryRunJob(ctx context.Context, sub *funnelv1.FunnelSubscription, a *funnelv1.JobAction) (string, error) {
	job := &batchv1.Job{ObjectMeta: *a.Template.ObjectMeta.DeepCopy(), Spec: *a.Template.Spec.DeepCopy()}
	job.Namespace, job.Name, job.GenerateName = sub.Namespace, "", "funnel-dry-run-"
	err := r.Create(ctx, job, client.DryRunAll)
	switch {
	case err == nil:
		return "", nil
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		return err.Error(), nil
	default:
		return "", fmt.Errorf("validating the Job template of FunnelSubscription %s/%s: %w", sub.Namespace, sub.Name, err)
	}
}

// subscriptionSecrets lists the Secret keys of a subscription's action and dead letter.
func subscriptionSecrets(sub *funnelv1.FunnelSubscription) []funnelv1.SecretKeyRef {
	return append(delivery.SecretRefs(&sub.Spec.Action), delivery.SecretRefs(sub.Spec.Delivery.DeadLetter)...)
}

// SetupWithManager registers the controller and its watch of the referenced Secrets.
func (r *SubscriptionReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("funnelsubscription").
		For(&funnelv1.FunnelSubscription{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	b, err := watchSecretsOf(ctx, mgr, b, &funnelv1.FunnelSubscription{},
		func() client.ObjectList { return &funnelv1.FunnelSubscriptionList{} },
		func(o client.Object) []string {
			var names []string
			for _, ref := range subscriptionSecrets(o.(*funnelv1.FunnelSubscription)) {
				names = append(names, ref.Name)
			}
			return names
		})
	if err != nil {
		return err
	}
	return b.Complete(r)
}
