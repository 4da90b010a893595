package tenancy_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

var _ = Describe("A tenant whose HTTP targets never answer", func() {
	It("delays no other tenant: another namespace's event is delivered while its attempts still hang", func() {
		greedy, other := newTenant("greedy", subscriber...), newTenant("patient", subscriber...)
		greedyToken, otherToken := openReceiver(greedy.ns), openReceiver(other.ns)
		// Few workers and slots, so that a handful of events shows what hundreds would in
		// a default installation: the lease family's 2 workers, 4 delivery slots, 2 of
		// them per namespace.
		op := startOperatorFor([]string{greedy.ns, other.ns}, "--event-concurrency=lease=2",
			"--delivery-concurrency=4", "--delivery-concurrency-per-namespace=2")
		hanging := newSink()
		hanging.Hold()
		for _, name := range []string{"hang-1", "hang-2"} {
			Expect(greedy.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: greedy.ns, Name: name},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
					Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: hanging.URL + "/" + name, Timeout: &metav1.Duration{Duration: time.Minute}}},
					Delivery: funnelv1.DeliveryPolicy{Retries: ptr.To[int32](0)}}})).To(Succeed())
		}
		target := newSink()
		Expect(other.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: other.ns, Name: "fast"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}}})).To(Succeed())
		for _, s := range []struct{ ns, name string }{{greedy.ns, "hang-1"}, {greedy.ns, "hang-2"}, {other.ns, "fast"}} {
			Eventually(subscriptionReady(s.ns, s.name)).Should(HaveField("Reason", funnelv1.ReasonReady))
		}

		By("3 events of the greedy tenant, 6 attempts: more than the family's workers and than every delivery slot")
		for i := range 3 {
			Expect(postBody(op, greedy.ns, send.Auth{Token: greedyToken}, moveInNumber(i))).To(Equal(http.StatusOK))
		}
		Eventually(hanging.Held).Should(BeNumerically(">=", 2), "the greedy tenant's attempts hang")

		Expect(post(op, other.ns, otherToken, "v3-lease.move_in.json")).To(Equal(http.StatusOK))
		Eventually(event(other.ns, moveIn()), "10s").Should(HaveField("Status.Conditions", ContainElement(SatisfyAll(
			HaveField("Type", funnelv1.ConditionDelivered), HaveField("Status", metav1.ConditionTrue)))))
		Expect(target.Len()).To(Equal(1))
		Expect(hanging.Held()).To(BeNumerically(">=", 2), "delivered while the greedy tenant's attempts still hang")
	})
})
