package controllers_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

var _ = Describe("State metrics", func() {
	It("export the leader, the Ready state of receivers and subscriptions, and the backlog with its oldest event", func() {
		ns, path := openReceiverNamespace("state")
		Expect(metricValue("funnel_leader", nil)).To(Equal(1.0), "the only replica runs the controllers")
		Eventually(func() float64 {
			return metricValue("funnel_receiver_ready", map[string]string{"receiver": ns + "/funnel", "reason": funnelv1.ReasonAccepting})
		}).Should(Equal(1.0))

		By("a subscription whose filter does not compile")
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Filter: "event.data.(",
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: "http://127.0.0.1:1/"}}},
		})).To(Succeed())
		Eventually(func() []float64 {
			return seriesValues("funnel_subscription_ready", map[string]string{"subscription": ns + "/broken", "reason": funnelv1.ReasonInvalidFilter})
		}).Should(Equal([]float64{0}))
		Expect(seriesValues("funnel_subscription_ready", map[string]string{"subscription": ns + "/broken"})).To(HaveLen(1), "one series per object")

		By("an event waiting for the retry of a failed delivery")
		target := newSink(http.StatusInternalServerError)
		retries, wait := int32(3), funnelv1.NewDuration(time.Hour)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "down"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.*"},
				Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
				Delivery: funnelv1.DeliveryPolicy{Retries: &retries, BackoffDelay: wait}},
		})).To(Succeed())
		Eventually(subscriptionReady(ns, "down")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Expect(post(webhookURL, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusOK))
		var ev funnelv1.FunnelEvent
		Eventually(func(g Gomega) funnelv1.EventPhase {
			var list funnelv1.FunnelEventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(1))
			ev = list.Items[0]
			return ev.Status.Phase
		}).Should(Equal(funnelv1.PhaseProcessing))
		processing := map[string]string{"family": "lease", "phase": "Processing"}
		// The manager's cache follows the API server a moment later.
		Eventually(func() float64 { return metricValue("funnel_events_unfinished", processing) }).Should(BeNumerically(">=", 1))
		Expect(metricValue("funnel_events_oldest_unfinished_timestamp_seconds", processing)).
			To(BeNumerically("<=", float64(ev.Spec.ReceivedAt.UnixNano())/1e9))

		By("the receiver suspended")
		Expect(k8s.Patch(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`)))).To(Succeed())
		Eventually(func() []float64 {
			return seriesValues("funnel_receiver_ready", map[string]string{"receiver": ns + "/funnel"})
		}).Should(Equal([]float64{0}))
		Expect(seriesValues("funnel_receiver_ready", map[string]string{"receiver": ns + "/funnel", "reason": funnelv1.ReasonSuspended})).
			To(Equal([]float64{0}))
	})
})
