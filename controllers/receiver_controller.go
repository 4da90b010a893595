package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/controllers/statuspatch"
)

// ReceiverReconciler keeps a FunnelReceiver's status honest: where Funnel must post, and
// whether requests can be accepted (auth configured, Secrets and keys present).
type ReceiverReconciler struct {
	client.Client
	// ExternalURL, when set (e.g. https://funnel.example.com), is prefixed to the webhook
	// path in status.url so users can hand the full URL to Funnel support.
	ExternalURL string
	// Policy is what receivers may ask for, as the webhook server applies it.
	Policy receiver.Policy
	// Secrets reads the receivers' Secrets, as the webhook server does.
	Secrets *receiver.Secrets
}

// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers,verbs=list;watch
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers/status,verbs=patch

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

	cfg, err := receiver.Resolve(ctx, r.Secrets, &rcv, r.Policy)
	if err != nil {
		return ctrl.Result{}, err
	}
	// Locked, as retention writes the MaxEventsReached condition: see the subscription
	// controller's write.
	_, err = statuspatch.Apply(ctx, r.Client, &rcv, func(rcv *funnelv1.FunnelReceiver) {
		rcv.Status.ObservedGeneration = rcv.Generation
		rcv.Status.WebhookPath = rcv.WebhookPath()
		rcv.Status.URL = ""
		if r.ExternalURL != "" {
			rcv.Status.URL = r.ExternalURL + rcv.Status.WebhookPath
		}
		ready := cfg.Ready
		ready.ObservedGeneration = rcv.Generation
		meta.SetStatusCondition(&rcv.Status.Conditions, ready)
	}, client.MergeFromWithOptimisticLock{})
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: staleRecheck}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("patching status of FunnelReceiver %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller; receivers are woken when one of their
// Secrets changes (receiver.Secrets reads them again from time to time: Secrets are not
// watched).
func (r *ReceiverReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("funnelreceiver").
		For(&funnelv1.FunnelReceiver{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		WatchesRawSource(r.Secrets.Source()).
		Complete(r)
}
