package tenancy_test

import (
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// eventReader lets a tenant read the Events of its namespace: how it learns why a
// subscription is not Ready.
var eventReader = rbacv1.PolicyRule{APIGroups: []string{eventsv1.GroupName}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}}

// jobAction is an ordinary Job action.
func jobAction() funnelv1.Action {
	return funnelv1.Action{Job: &funnelv1.JobAction{Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "example.com/pms:1"}}}}}}}}
}

var _ = Describe("A subscription whose ServiceAccount may not do what its action needs", func() {
	It("is Forbidden with the API server's message and a Warning Event, named or default account alike, and the operator does it in nobody else's name", func() {
		t := newTenant("forbidden", append(subscriber, mayImpersonate("reader"), eventReader)...)
		// Neither account may create Jobs: "reader" has no grant at all, the platform
		// team's default account may read one shared Secret.
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "reader")).To(Succeed())
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "funnel-default", rbacv1.PolicyRule{APIGroups: []string{""},
			Resources: []string{"secrets"}, ResourceNames: []string{"shared"}, Verbs: []string{"get"}})).To(Succeed())
		sink := newSink()
		token := openReceiver(t.ns)
		op := startOperator(t.ns, "--default-service-account=funnel-default")

		accounts := map[string]string{"as-reader": "reader", "as-default": "funnel-default"}
		for name, account := range accounts {
			sa := account
			if account == "funnel-default" {
				sa = "" // names none: the default applies
			}
			Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: name},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: sa, Action: jobAction()}})).To(Succeed())
		}
		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "plain"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sink.URL}}}})).To(Succeed())

		for name, account := range accounts {
			refusal := `jobs.batch is forbidden: User "system:serviceaccount:` + t.ns + `:` + account + `" cannot create resource "jobs" in API group "batch" in the namespace "` + t.ns + `"`
			Eventually(subscriptionReady(t.ns, name)).Should(SatisfyAll(HaveField("Status", metav1.ConditionFalse),
				HaveField("Reason", funnelv1.ReasonForbidden), HaveField("Message", refusal)), name)
			By("the tenant reads why in its namespace's Events: " + name)
			Eventually(func(g Gomega) []eventsv1.Event {
				var list eventsv1.EventList
				g.Expect(t.client.List(ctx, &list, client.InNamespace(t.ns))).To(Succeed())
				var mine []eventsv1.Event
				for _, e := range list.Items {
					if e.Regarding.Kind == "FunnelSubscription" && e.Regarding.Name == name {
						mine = append(mine, e)
					}
				}
				return mine
			}).Should(ConsistOf(SatisfyAll(HaveField("Type", corev1.EventTypeWarning), HaveField("Reason", funnelv1.ReasonForbidden),
				HaveField("Note", refusal))), name)
		}

		By("an event Funnel sends reaches the plain subscription; no Job exists")
		Expect(post(op, t.ns, token, "v3-lease.move_in.json")).To(Equal(http.StatusOK))
		Eventually(event(t.ns, moveIn())).Should(HaveField("Status.Deliveries",
			ContainElement(SatisfyAll(HaveField("Subscription", "plain"), HaveField("Phase", funnelv1.DeliverySucceeded)))))
		Expect(jobs(t.ns)).To(BeEmpty())

		By("every Job the operator asked for in the namespace was asked as a subscription's account, and refused")
		creates := jobCreates(t.ns)
		Expect(creates).NotTo(BeEmpty())
		Expect(creates).To(HaveEach(SatisfyAll(HaveField("Forbidden", true), HaveField("As", BeElementOf(
			"system:serviceaccount:"+t.ns+":reader", "system:serviceaccount:"+t.ns+":funnel-default")))))
	})
})

var _ = Describe("A subscription whose ServiceAccount loses its permission", func() {
	It("is Forbidden from the next event on, with the API server's message, once the tenant's admin removes the RoleBinding; nothing is created in the operator's name", func() {
		// The tenant's admin may impersonate the account and remove its RoleBinding.
		t := newTenant("revoked", append(subscriber, mayImpersonate("runner"), eventReader, rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName},
			Resources: []string{"rolebindings"}, ResourceNames: []string{"runner"}, Verbs: []string{"delete"}})...)
		Expect(testenv.ServiceAccount(ctx, k8s, t.ns, "runner", rbacv1.PolicyRule{APIGroups: []string{"batch"},
			Resources: []string{"jobs"}, Verbs: []string{"create"}})).To(Succeed())
		token := openReceiver(t.ns)
		op := startOperator(t.ns)
		Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "move-in"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "runner", Action: jobAction(),
				Delivery: funnelv1.DeliveryPolicy{Retries: ptr.To[int32](0)}}})).To(Succeed())
		Eventually(subscriptionReady(t.ns, "move-in")).Should(HaveField("Reason", funnelv1.ReasonReady))
		first, second := moveInNumber(1), moveInNumber(2)
		Expect(postBody(op, t.ns, send.Auth{Token: token}, first)).To(Equal(http.StatusOK))
		Eventually(func() []batchv1.Job { return jobs(t.ns) }).Should(HaveLen(1))

		By("the tenant's admin removes the account's RoleBinding")
		Expect(t.client.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "runner"}})).To(Succeed())
		Eventually(func(g Gomega) bool {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: "system:serviceaccount:" + t.ns + ":runner",
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: t.ns, Group: "batch", Resource: "jobs", Verb: "create"}}}
			g.Expect(k8s.Create(ctx, sar)).To(Succeed())
			return sar.Status.Allowed
		}).Should(BeFalse())

		Expect(postBody(op, t.ns, send.Auth{Token: token}, second)).To(Equal(http.StatusOK))
		refusal := `User "system:serviceaccount:` + t.ns + `:runner" cannot create resource "jobs" in API group "batch" in the namespace "` + t.ns + `"`
		Eventually(event(t.ns, eventName(second))).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliveryFailed), HaveField("LastError", ContainSubstring(refusal)))))))
		By("the tenant reads why in its namespace's Events")
		Eventually(func(g Gomega) []eventsv1.Event {
			var list eventsv1.EventList
			g.Expect(t.client.List(ctx, &list, client.InNamespace(t.ns))).To(Succeed())
			return list.Items
		}).Should(ContainElement(SatisfyAll(HaveField("Type", corev1.EventTypeWarning), HaveField("Reason", funnelv1.ReasonDeliveryFailed),
			HaveField("Regarding.Name", eventName(second)), HaveField("Note", ContainSubstring(refusal)))))
		Expect(jobs(t.ns)).To(HaveLen(1), "only the first event's Job")

		By("every Job create in the namespace was made as the account; the refused ones too")
		creates := jobCreates(t.ns)
		Expect(creates).To(HaveEach(HaveField("As", "system:serviceaccount:"+t.ns+":runner")))
		Expect(creates).To(ContainElement(HaveField("Forbidden", true)))
		Expect(creates).To(ContainElement(HaveField("Forbidden", false)))
	})
})

// jobCreates are the Job creates the operator's requests made in ns, as the audit log
// records them (with the user each was made as).
func jobCreates(ns string) []harness.Request {
	GinkgoHelper()
	reqs, err := harness.Requests(cp.AuditLog, operatorUser)
	Expect(err).NotTo(HaveOccurred())
	var creates []harness.Request
	for _, r := range reqs {
		if r.Resource == "jobs" && r.Verb == "create" && r.Namespace == ns {
			creates = append(creates, r)
		}
	}
	return creates
}
