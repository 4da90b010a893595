package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
)

// receiverSecretIndex indexes FunnelReceivers by the names of the Secrets they reference,
// so a Secret change wakes exactly the receivers that use it.
const receiverSecretIndex = "spec.auth.secretNames"

// ReceiverReconciler keeps a FunnelReceiver's status honest: where Funnel must post, and
// whether requests can be accepted (auth configured, Secrets and keys present).
type ReceiverReconciler struct {
	client.Client
	// ExternalURL, when set (e.g. https://funnel.example.com), is prefixed to the webhook
	// path in status.url so users can hand the full URL to Funnel support.
	ExternalURL string
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers,verbs=get;list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch

// Reconcile computes the receiver's status from its spec and Secrets, and writes it with
// one patch when it changed.
func (r *ReceiverReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var rcv funnelv1.FunnelReceiver
	if err := r.Get(ctx, req.NamespacedName, &rcv); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !rcv.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	base := rcv.DeepCopy()
	cfg, err := receiver.Resolve(ctx, r.Client, &rcv)
	if err != nil {
		return ctrl.Result{}, err
	}
	rcv.Status.ObservedGeneration = rcv.Generation
	rcv.Status.WebhookPath = rcv.WebhookPath()
	rcv.Status.URL = ""
	if r.ExternalURL != "" {
		rcv.Status.URL = r.ExternalURL + rcv.Status.WebhookPath
	}
	ready := cfg.Ready
	ready.ObservedGeneration = rcv.Generation
	meta.SetStatusCondition(&rcv.Status.Conditions, ready)

	if equality.Semantic.DeepEqual(base.Status, rcv.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, &rcv, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of FunnelReceiver %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// secretNames lists the distinct Secrets a receiver depends on.
func secretNames(rcv *funnelv1.FunnelReceiver) []string {
	var names []string
	for _, u := range receiver.SecretUses(rcv) {
		if !slices.Contains(names, u.Ref.Name) {
			names = append(names, u.Ref.Name)
		}
	}
	return names
}

// SetupWithManager registers the controller, the Secret index and the Secret watch.
func (r *ReceiverReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &funnelv1.FunnelReceiver{}, receiverSecretIndex,
		func(o client.Object) []string { return secretNames(o.(*funnelv1.FunnelReceiver)) }); err != nil {
		return fmt.Errorf("indexing FunnelReceivers by Secret: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("funnelreceiver").
		For(&funnelv1.FunnelReceiver{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.receiversForSecret)).
		Complete(r)
}

// receiversForSecret maps a Secret event to the receivers that reference the Secret.
func (r *ReceiverReconciler) receiversForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var list funnelv1.FunnelReceiverList
	if err := r.List(ctx, &list, client.InNamespace(o.GetNamespace()),
		client.MatchingFields{receiverSecretIndex: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing FunnelReceivers for Secret", "secret", client.ObjectKeyFromObject(o))
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
