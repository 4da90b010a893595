package reliability_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Scenario 8: the operator is SIGKILLed while a delivery waits for its target (the call
// runs in the delivery executor, recorded as Running). The next start makes the same
// attempt again: same Idempotency-Key, same attempt number, and the event ends
// Succeeded with one attempt counted.
var _ = Describe("Operator killed while a delivery waits for its target", func() {
	It("makes the same attempt again after the restart", func() {
		start := time.Now()
		f := newFixture("mid-attempt", fixtureOptions{})
		op := f.ops[0]

		// The target holds its first request until the spec ends, and answers the others.
		type call struct{ key, attempt string }
		var mu sync.Mutex
		var calls []call
		hold := make(chan struct{})
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			calls = append(calls, call{r.Header.Get("Idempotency-Key"), r.Header.Get("X-Funnel-Delivery-Attempt")})
			first := len(calls) == 1
			mu.Unlock()
			if first {
				select {
				case <-hold:
				case <-r.Context().Done():
				}
			}
		}))
		DeferCleanup(target.Close)
		DeferCleanup(func() { close(hold) })
		got := func() []call {
			mu.Lock()
			defer mu.Unlock()
			return append([]call(nil), calls...)
		}
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "slow"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{
				URL: target.URL, Timeout: &metav1.Duration{Duration: time.Minute}}}}})).To(Succeed())
		Eventually(func(g Gomega) {
			var sub funnelv1.FunnelSubscription
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: "slow"}, &sub)).To(Succeed())
			g.Expect(sub.Status.Conditions).To(ContainElement(SatisfyAll(HaveField("Type", funnelv1.ConditionReady), HaveField("Reason", funnelv1.ReasonReady))))
		}).Should(Succeed())

		sent := f.sender().SendAll(ctx, bodies(1), 1)
		o := f.checkStored(sent)
		var name string
		Eventually(func(g Gomega) funnelv1.DeliveryStatus {
			events := f.events(g)
			g.Expect(events).To(HaveLen(1))
			for n, ev := range events {
				name = n
				g.Expect(ev.Status.Deliveries).To(HaveLen(1))
				return ev.Status.Deliveries[0]
			}
			return funnelv1.DeliveryStatus{}
		}).Should(SatisfyAll(HaveField("Phase", funnelv1.DeliveryRunning), HaveField("Attempts", int32(1))),
			"the attempt in flight is recorded as Running once it outlasts the settle time")
		Expect(got()).To(HaveLen(1))

		By("SIGKILL while the target holds the request")
		op.Kill()
		Expect(op.Start()).To(Succeed())
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())

		f.waitFinal(1, time.Minute)
		ev := f.events(Default)[name]
		Expect(ev.Status.Phase).To(Equal(funnelv1.PhaseSucceeded))
		Expect(ev.Status.Deliveries).To(ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliverySucceeded), HaveField("Attempts", int32(1)))))
		made := got()
		Expect(made).To(HaveLen(2))
		Expect(made[1]).To(Equal(made[0]), "the same attempt again: same Idempotency-Key and attempt number")
		Expect(made[0].key).To(Equal(f.ns + "/" + name + "/slow"))
		record(o.row("8. operator SIGKILLed while a delivery waits for its target", time.Since(start),
			"the attempt Running at the kill was made again after the restart with the same Idempotency-Key and attempt number; the event Succeeded with 1 attempt"))
	})
})
