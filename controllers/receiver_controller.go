package controllers

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
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
// +kubebuilder:rbac:groups=funnel.leasing.dev,resources=funnelreceivers/status,verbs=get;patch;update
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
	ready, err := r.readyCondition(ctx, &rcv)
	if err != nil {
		return ctrl.Result{}, err
	}
	rcv.Status.ObservedGeneration = rcv.Generation
	rcv.Status.WebhookPath = rcv.WebhookPath()
	rcv.Status.URL = ""
	if r.ExternalURL != "" {
		rcv.Status.URL = r.ExternalURL + rcv.Status.WebhookPath
	}
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

// readyCondition decides the Ready condition. Only unexpected API errors are returned;
// configuration problems become a False condition with a reason the user can act on.
func (r *ReceiverReconciler) readyCondition(ctx context.Context, rcv *funnelv1.FunnelReceiver) (metav1.Condition, error) {
	notReady := func(reason, format string, args ...any) metav1.Condition {
		return metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	auth := rcv.Spec.Auth
	if auth.Token == nil && auth.HMAC == nil && !auth.InsecureSkipAuth {
		return notReady(funnelv1.ReasonNoAuth,
			"No authentication configured: set spec.auth.token or spec.auth.hmac, or spec.auth.insecureSkipAuth: true to accept unauthenticated requests"), nil
	}
	for _, s := range secretUses(rcv) {
		var secret corev1.Secret
		err := r.Get(ctx, types.NamespacedName{Namespace: rcv.Namespace, Name: s.ref.Name}, &secret)
		if apierrors.IsNotFound(err) {
			return notReady(funnelv1.ReasonSecretNotFound, "Secret %q referenced by %s does not exist", s.ref.Name, s.field), nil
		}
		if err != nil {
			return metav1.Condition{}, fmt.Errorf("reading Secret %s/%s: %w", rcv.Namespace, s.ref.Name, err)
		}
		if len(secret.Data[s.ref.Key]) == 0 {
			return notReady(funnelv1.ReasonSecretKeyMissing, "Secret %q has no non-empty key %q (referenced by %s)", s.ref.Name, s.ref.Key, s.field), nil
		}
	}
	if rcv.Spec.Suspend {
		return notReady(funnelv1.ReasonSuspended, "spec.suspend is set: requests are answered 503 so Funnel retries later"), nil
	}
	return metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: funnelv1.ReasonAccepting, Message: "Accepting events at " + rcv.WebhookPath()}, nil
}

// secretUse is one Secret key a receiver depends on, with the spec field naming it.
type secretUse struct {
	field string
	ref   funnelv1.SecretKeyRef
}

// secretUses lists the Secret keys a receiver's authentication depends on.
func secretUses(rcv *funnelv1.FunnelReceiver) []secretUse {
	var uses []secretUse
	if t := rcv.Spec.Auth.Token; t != nil {
		uses = append(uses, secretUse{"spec.auth.token.secretRef", t.SecretRef})
	}
	if h := rcv.Spec.Auth.HMAC; h != nil {
		uses = append(uses, secretUse{"spec.auth.hmac.secretRef", h.SecretRef})
	}
	return uses
}

// secretNames lists the distinct Secrets a receiver depends on.
func secretNames(rcv *funnelv1.FunnelReceiver) []string {
	var names []string
	for _, u := range secretUses(rcv) {
		if !slices.Contains(names, u.ref.Name) {
			names = append(names, u.ref.Name)
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
