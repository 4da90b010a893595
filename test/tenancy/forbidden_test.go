package tenancy_test

import (
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
		reqs, err := harness.Requests(cp.AuditLog, operatorUser)
		Expect(err).NotTo(HaveOccurred())
		var creates []harness.Request
		for _, r := range reqs {
			if r.Resource == "jobs" && r.Verb == "create" && r.Namespace == t.ns {
				creates = append(creates, r)
			}
		}
		Expect(creates).NotTo(BeEmpty())
		Expect(creates).To(HaveEach(SatisfyAll(HaveField("Forbidden", true), HaveField("As", BeElementOf(
			"system:serviceaccount:"+t.ns+":reader", "system:serviceaccount:"+t.ns+":funnel-default")))))
	})
})
