package controllers_test

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// subscribeReady creates a subscription in ns and waits until it is Ready.
func subscribeReady(ns, name string, spec funnelv1.FunnelSubscriptionSpec) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
	Eventually(subscriptionReady(ns, name)).Should(HaveField("Reason", funnelv1.ReasonReady))
}

var _ = Describe("Delivery fairness", func() {
	var ns, path string
	BeforeEach(func() { ns, path = openReceiverNamespace("greedy") })

	// Fairness: deliveries run in their own executor, at most a share of it per namespace,
	// so one tenant's slow targets hold neither the event controllers' workers nor
	// everybody's delivery slots. 20 events of one family to a hanging endpoint are more
	// than that family's workers (16): without the executor, they would keep the other
	// namespace's event of the same family Pending until they time out.
	It("keeps one namespace's hanging endpoints from holding another namespace's events", func() {
		hanging, err := harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(hanging.Close)
		hanging.Hold()
		subscribeReady(ns, "slow", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: hanging.URL, Timeout: &metav1.Duration{Duration: time.Minute}}},
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(0))}})
		body := string(example("classic-lease_transaction.status_updated.json"))
		for i := range 20 {
			a := post(webhookURL, path, []byte(strings.Replace(body, "8932127", fmt.Sprint(7000000+i), 1)), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
		}
		Eventually(hanging.Held).Should(BeNumerically(">=", 16), "the greedy namespace's attempts hang")

		other, otherPath := openReceiverNamespace("other")
		target := newSink(http.StatusOK)
		subscribeReady(other, "fast", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}})
		a := post(webhookURL, otherPath, []byte(body), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)

		Eventually(func(g Gomega) []funnelv1.EventPhase {
			var list funnelv1.FunnelEventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(other))).To(Succeed())
			var phases []funnelv1.EventPhase
			for _, ev := range list.Items {
				phases = append(phases, ev.Status.Phase)
			}
			return phases
		}, "10s").Should(Equal([]funnelv1.EventPhase{funnelv1.PhaseSucceeded}))
		Expect(target.got()).To(HaveLen(1))
		Expect(hanging.Held()).To(BeNumerically(">=", 16), "the other namespace was served while the greedy one still hung")
	})
})

var _ = Describe("Delivery metrics", func() {
	// seriesOf counts the delivery metrics' series of one subscription ("namespace/name").
	seriesOf := func(subscription string) int {
		GinkgoHelper()
		families, err := metrics.Registry.Gather()
		Expect(err).NotTo(HaveOccurred())
		n := 0
		for _, f := range families {
			if !strings.HasPrefix(f.GetName(), "funnel_deliver") {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "subscription" && l.GetValue() == subscription {
						n++
					}
				}
			}
		}
		return n
	}

	It("forgets a deleted subscription's series", func() {
		ns, path := openReceiverNamespace("metrics")
		target := newSink(http.StatusOK)
		subscribeReady(ns, "gone", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}})
		a := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)
		// funnel_deliveries_total{result="succeeded"} and funnel_delivery_duration_seconds.
		Eventually(func() int { return seriesOf(ns + "/gone") }).Should(Equal(2))

		Expect(k8s.Delete(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gone"}})).To(Succeed())
		Eventually(func() int { return seriesOf(ns + "/gone") }).Should(BeZero())
	})
})
