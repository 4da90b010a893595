package controllers_test

import (
	"context"
	"net/http"
	"reflect"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// laggingCache reads one object as a cache that has not seen its latest writes yet would:
// the copy it was given. Everything else goes to the API server.
type laggingCache struct {
	client.Client
	old client.Object
}

func (c laggingCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if key == client.ObjectKeyFromObject(c.old) {
		reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(c.old.DeepCopyObject()).Elem())
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// Two writers share the conditions of receivers and subscriptions, and a merge patch
// replaces a list whole: a controller writing Ready from a cache that lags the other
// writer's condition would erase it, and nothing would write it again until its state
// changes (the breaker writes Degraded when the circuit opens or closes).
var _ = Describe("Conditions another writer sets", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "shared")
		Expect(err).NotTo(HaveOccurred())
	})

	// setCondition writes cond as the other writer does, on the stored object (again on a
	// conflict with the suite manager's controllers, which write the same status).
	setCondition := func(obj client.Object, conditions func() *[]metav1.Condition, cond metav1.Condition) {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
			base := obj.DeepCopyObject().(client.Object)
			meta.SetStatusCondition(conditions(), cond)
			g.Expect(k8s.Status().Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))).To(Succeed())
		}).Should(Succeed())
	}

	It("survive the subscription controller's write from a lagging cache: the breaker's Degraded stays", func() {
		subscribeReady(ns, "crm", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"quote.*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: newSink(http.StatusOK).URL}}})
		var old funnelv1.FunnelSubscription
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "crm"}, &old)).To(Succeed())
		old.Status = funnelv1.FunnelSubscriptionStatus{} // as before its first status write

		var sub funnelv1.FunnelSubscription
		sub.Namespace, sub.Name = ns, "crm"
		setCondition(&sub, func() *[]metav1.Condition { return &sub.Status.Conditions }, metav1.Condition{Type: funnelv1.ConditionDegraded,
			Status: metav1.ConditionTrue, Reason: funnelv1.ReasonDestinationFailing, Message: "5 retryable failures in a row"})

		r := &controllers.SubscriptionReconciler{Client: laggingCache{Client: k8s, old: &old}, Recorder: mgrRecorder}
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&old)}
		res, err := r.Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Get(ctx, req.NamespacedName, &sub)).To(Succeed())
		Expect(meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionDegraded)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(res.RequeueAfter).To(BeNumerically(">", 0), "it looks again once its cache has caught up")

		r.Client = k8s // caught up
		_, err = r.Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Get(ctx, req.NamespacedName, &sub)).To(Succeed())
		Expect(meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionDegraded)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)).To(HaveField("Reason", funnelv1.ReasonReady))
	})

	It("survive the receiver controller's write from a lagging cache: retention's MaxEventsReached stays", func() {
		rcv := funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
			Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true}}}
		Expect(k8s.Create(ctx, &rcv)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&rcv), &rcv)).To(Succeed())
			g.Expect(meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionReady)).NotTo(BeNil())
			// The suite manager's retention has made its first pass: it writes the
			// condition again only when its state changes.
			g.Expect(meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionMaxEventsReached)).NotTo(BeNil())
		}).Should(Succeed())
		old := rcv.DeepCopy()
		old.Status = funnelv1.FunnelReceiverStatus{}

		setCondition(&rcv, func() *[]metav1.Condition { return &rcv.Status.Conditions }, metav1.Condition{Type: funnelv1.ConditionMaxEventsReached,
			Status: metav1.ConditionTrue, Reason: funnelv1.ReasonMaxEventsReached, Message: "more than maxEvents finished events"})

		r := &controllers.ReceiverReconciler{Client: laggingCache{Client: k8s, old: old}, Policy: receiver.Policy{AllowInsecure: true}}
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(old)}
		res, err := r.Reconcile(ctx, req)
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Get(ctx, req.NamespacedName, &rcv)).To(Succeed())
		Expect(meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionMaxEventsReached)).To(HaveField("Status", metav1.ConditionTrue))
		Expect(res.RequeueAfter).To(BeNumerically(">", 0), "it looks again once its cache has caught up")
	})
})
