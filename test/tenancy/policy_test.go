package tenancy_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// plainHTTP is a subscription spec that needs no ServiceAccount.
func plainHTTP() funnelv1.FunnelSubscriptionSpec {
	return funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
		Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://crm.example"}}}
}

// subscription is a FunnelSubscription named name in ns acting as account.
func subscription(ns, name, account string) *funnelv1.FunnelSubscription {
	sub := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: plainHTTP()}
	sub.Spec.ServiceAccountName = account
	return sub
}

var _ = Describe("Naming a ServiceAccount in a subscription (config/policies)", func() {
	It("is refused to a tenant who may not impersonate the account", func() {
		t := newTenant("name-sa", subscriber...)
		clusterAdminAccount(t.ns, "deployer")
		err := t.client.Create(ctx, subscription(t.ns, "escalate", "deployer"))
		Expect(err).To(Satisfy(apierrors.IsForbidden))
		Expect(err).To(MatchError(ContainSubstring("spec.serviceAccountName: " + t.user + " may not impersonate ServiceAccount " + t.ns + "/deployer")))
		Expect(t.client.Create(ctx, subscription(t.ns, "no-account", ""))).To(Succeed(), "a subscription without an account is the tenant's own")
	})

	It("is allowed for exactly the accounts the tenant may impersonate", func() {
		t := newTenant("name-sa", append(subscriber, mayImpersonate("runner"))...)
		clusterAdminAccount(t.ns, "deployer")
		Expect(t.client.Create(ctx, subscription(t.ns, "runs", "runner"))).To(Succeed())
		Expect(t.client.Create(ctx, subscription(t.ns, "escalate", "deployer"))).To(Satisfy(apierrors.IsForbidden))

		By("switching a subscription to an account the tenant may not impersonate")
		var sub funnelv1.FunnelSubscription
		Expect(t.client.Get(ctx, client.ObjectKey{Namespace: t.ns, Name: "runs"}, &sub)).To(Succeed())
		sub.Spec.ServiceAccountName = "deployer"
		Expect(t.client.Update(ctx, &sub)).To(Satisfy(apierrors.IsForbidden))
	})

	It("guards what a subscription does as its account: a spec change needs the same permission, a label does not", func() {
		t := newTenant("name-sa", subscriber...)
		clusterAdminAccount(t.ns, "deployer")
		By("the platform team's subscription acting as a powerful account")
		Expect(k8s.Create(ctx, subscription(t.ns, "platform", "deployer"))).To(Succeed())

		key := client.ObjectKey{Namespace: t.ns, Name: "platform"}
		Expect(t.client.Patch(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "platform"}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"action":{"http":{"url":"https://attacker.example"}}}}`)))).
			To(Satisfy(apierrors.IsForbidden), "retargeting it is acting as the account")
		Expect(t.client.Patch(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "platform"}},
			client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"crm"}}}`)))).To(Succeed())
		var sub funnelv1.FunnelSubscription
		Expect(k8s.Get(ctx, key, &sub)).To(Succeed())
		Expect(sub.Spec.Action.HTTP.URL).To(Equal("http://crm.example"))
		Expect(sub.Labels).To(HaveKeyWithValue("team", "crm"))
	})
})

var _ = Describe("Creating FunnelEvents (config/policies)", func() {
	It("is refused to anyone but the operator, while the receiver stores what Funnel sends and replay still works", func() {
		t := newTenant("forge", eventCreator...)
		err := t.client.Create(ctx, forgedEvent(t.ns, "evt-forged"))
		Expect(err).To(Satisfy(apierrors.IsForbidden))
		Expect(err).To(MatchError(ContainSubstring("FunnelEvents are created only by the funnel-operator receiver")))
		Expect(k8s.Create(ctx, forgedEvent(t.ns, "evt-forged"))).To(Satisfy(apierrors.IsForbidden), "not even a cluster admin")

		By("the operator's receiver, as its ServiceAccount, stores an event Funnel sent")
		token := openReceiver(t.ns)
		op := startOperator(t.ns)
		Eventually(func() int { return post(op, t.ns, token, "v3-lease.move_in.json") }).Should(Equal(http.StatusOK))
		name := exampleName("v3-lease.move_in.json")
		Eventually(event(t.ns, name)).Should(HaveField("Status.Phase", funnelv1.PhaseSucceeded))

		By("a replay is a patch, which the policy leaves to RBAC (here the admin's, who may not create events either)")
		Expect(k8s.Patch(ctx, &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: name}},
			client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"`+funnelv1.AnnotationReplay+`":"1"}}}`)))).To(Succeed())
		Eventually(event(t.ns, name)).Should(SatisfyAll(HaveField("Status.ObservedReplay", "1"), HaveField("Status.Phase", funnelv1.PhaseSucceeded)))
	})
})

var _ = Describe("FunnelEvents created without the admission policy", func() {
	It("are not delivered unless the receiver created them: no seal, or another event's, is refused", func() {
		t := newTenant("forge-seal", append(eventCreator, subscriber...)...)
		token := openReceiver(t.ns)
		sink := newSink()
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "crm"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sink.URL}}}})).To(Succeed())
		op := startOperator(t.ns)
		Eventually(subscriptionReady(t.ns, "crm")).Should(HaveField("Status", metav1.ConditionTrue))

		By("a genuine event, from the receiver")
		Eventually(func() int { return post(op, t.ns, token, "v3-lease.move_in.json") }).Should(Equal(http.StatusOK))
		genuine := event(t.ns, moveIn())
		Eventually(genuine).Should(HaveField("Status.Phase", funnelv1.PhaseSucceeded))
		Expect(sink.Len()).To(Equal(1))

		By("lifting the policy for the tenant's namespace, as an installation without config/policies")
		binding := &admissionv1.ValidatingAdmissionPolicyBinding{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "funnel-events-from-the-receiver"}, binding)).To(Succeed())
		lifted := binding.DeepCopy()
		lifted.Spec.MatchResources = &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{t.ns}}}}}
		Expect(k8s.Update(ctx, lifted)).To(Succeed())
		DeferCleanup(func() {
			var b admissionv1.ValidatingAdmissionPolicyBinding
			Expect(k8s.Get(ctx, client.ObjectKey{Name: binding.Name}, &b)).To(Succeed())
			b.Spec.MatchResources = binding.Spec.MatchResources
			Expect(k8s.Update(ctx, &b)).To(Succeed())
			Eventually(func() error { return k8s.Create(ctx, forgedEvent(t.ns, "evt-probe"), client.DryRunAll) }).
				Should(MatchError(ContainSubstring("FunnelEvents are created only by")), "the policy is in force again")
		})
		Eventually(func() error { return t.client.Create(ctx, forgedEvent(t.ns, "evt-probe"), client.DryRunAll) }).Should(Succeed())

		By("the tenant creates an event of its own, and one carrying the genuine event's seal")
		Expect(t.client.Create(ctx, forgedEvent(t.ns, "evt-forged"))).To(Succeed())
		g := genuine(Default)
		copied := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "evt-copied",
			Labels: g.Labels, Annotations: g.Annotations}, Spec: g.Spec}
		Expect(t.client.Create(ctx, copied)).To(Succeed())

		for name, why := range map[string]string{"evt-forged": "it has no seal", "evt-copied": "its seal does not match"} {
			Eventually(event(t.ns, name)).Should(SatisfyAll(
				HaveField("Status.Phase", funnelv1.PhaseFailed),
				HaveField("Status.Deliveries", BeEmpty()),
				HaveField("Status.Conditions", ContainElement(SatisfyAll(HaveField("Type", funnelv1.ConditionReady),
					HaveField("Status", metav1.ConditionFalse), HaveField("Reason", funnelv1.ReasonNotReceived),
					HaveField("Message", ContainSubstring(why))))),
			), name)
			Eventually(func(g Gomega) []eventsv1.Event {
				var list eventsv1.EventList
				g.Expect(k8s.List(ctx, &list, client.InNamespace(t.ns))).To(Succeed())
				return list.Items
			}).Should(ContainElement(SatisfyAll(HaveField("Regarding.Name", name), HaveField("Type", corev1.EventTypeWarning),
				HaveField("Reason", funnelv1.ReasonNotReceived))), name)
		}
		Consistently(sink.Len).WithTimeout(2*time.Second).Should(Equal(1), "only the genuine event was delivered")
	})
})
