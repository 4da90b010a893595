package controllers_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
)

var _ = Describe("Circuit breaker", func() {
	It("stops hammering a failing destination: deliveries wait, one probe at a time, and all go ahead once it answers", func() {
		ns, path := openReceiverNamespace("breaker")
		var requests atomic.Int64
		var down atomic.Bool
		down.Store(true)
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			requests.Add(1)
			if down.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}))
		DeferCleanup(target.Close)
		subscribeReady(ns, "pms", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(100)), BackoffPolicy: funnelv1.BackoffLinear,
				BackoffDelay: funnelv1.NewDuration(50 * time.Millisecond), MaxBackoff: funnelv1.NewDuration(2 * time.Second),
				CircuitBreaker: &funnelv1.CircuitBreaker{ConsecutiveFailures: ptr(int32(3)), ProbeInterval: funnelv1.NewDuration(time.Second)}}})
		var names []string
		for i := range 5 {
			a := post(webhookURL, path, statusUpdate(100+i, 90000+i, i), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			names = append(names, a.event())
		}

		degraded := func(g Gomega) *metav1.Condition {
			var sub funnelv1.FunnelSubscription
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pms"}, &sub)).To(Succeed())
			return meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionDegraded)
		}
		Eventually(degraded).Should(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue), HaveField("Reason", funnelv1.ReasonDestinationFailing)))
		Eventually(func(g Gomega) []funnelv1.DeliveryWaitReason {
			var reasons []funnelv1.DeliveryWaitReason
			for _, name := range names {
				reasons = append(reasons, getEvent(ns, name)(g).Status.Deliveries[0].Reason)
			}
			return reasons
		}).Should(ContainElement(funnelv1.WaitCircuitOpen), "deliveries wait instead of spending their retries")

		// Five events retrying every 50-250ms would send dozens of requests in 3s; the open
		// breaker lets one probe through at a time, the first after 1s, then after 2s.
		open := requests.Load()
		Consistently(func() int64 { return requests.Load() - open }, "3s", "100ms").Should(BeNumerically("<=", 3))

		down.Store(false)
		for _, name := range names {
			Eventually(getEvent(ns, name)).Should(finished(funnelv1.PhaseSucceeded))
		}
		Eventually(degraded).Should(HaveField("Status", metav1.ConditionFalse))
		Eventually(kubeEvents(ns, "pms")).Should(SatisfyAll(
			ContainElement(HaveField("Reason", funnelv1.ReasonCircuitOpened)), ContainElement(HaveField("Reason", funnelv1.ReasonCircuitClosed))))
		Expect(metricValue("funnel_circuit_transitions_total", map[string]string{"subscription": ns + "/pms", "state": "open"})).To(Equal(1.0))
		Expect(metricValue("funnel_circuit_open", map[string]string{"subscription": ns + "/pms"})).To(Equal(0.0))
	})
})

var _ = Describe("maxInFlight", func() {
	It("bounds the requests in flight to one destination; every event is delivered", func() {
		ns, path := openReceiverNamespace("inflight")
		target := newOrderSink(200 * time.Millisecond)
		subscribeReady(ns, "pms", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{MaxInFlight: ptr(int32(2))}})
		var names []string
		for i := range 6 {
			a := post(webhookURL, path, statusUpdate(200+i, 91000+i, i), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			names = append(names, a.event())
		}
		for _, name := range names {
			Eventually(getEvent(ns, name)).Should(finished(funnelv1.PhaseSucceeded))
		}
		delivered, _, most := target.got()
		Expect(delivered).To(HaveLen(6))
		Expect(most).To(Equal(2), "at most maxInFlight at once, and that many")
	})
})

var _ = Describe("maxInFlight with a Job action", func() {
	It("keeps at most maxInFlight Jobs active; the others wait without spending an attempt, and all succeed", func() {
		ns, path := openReceiverNamespace("inflight-jobs")
		serviceAccount(ns, actionsAccount, jobsRules...)
		subscribeReady(ns, "move-in", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount,
			Action: jobAction(), Delivery: funnelv1.DeliveryPolicy{MaxInFlight: ptr(int32(1))}})
		var names []string
		for i := range 3 {
			a := post(webhookURL, path, statusUpdate(300+i, 93000+i, i), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			names = append(names, a.event())
		}
		active := func() []string {
			var out []string
			for _, j := range jobsOf(ns)(Default) {
				if !delivery.JobEnded(&j) {
					out = append(out, j.Name)
				}
			}
			return out
		}
		held := HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliveryPending),
			HaveField("Reason", funnelv1.WaitMaxInFlight), HaveField("Attempts", int32(0)))))
		done := map[string]bool{}
		for range 3 {
			Eventually(active).Should(HaveLen(1))
			var running string
			Eventually(func(g Gomega) []string {
				running = ""
				var waiting []string
				for _, name := range names {
					ev := getEvent(ns, name)(g)
					switch {
					case done[name]:
					case ev.Status.Deliveries != nil && ev.Status.Deliveries[0].Phase == funnelv1.DeliveryRunning:
						running = name
					default:
						g.Expect(ev).To(held)
						waiting = append(waiting, name)
					}
				}
				g.Expect(running).NotTo(BeEmpty())
				return waiting
			}).Should(HaveLen(2 - len(done)))
			Expect(active()).To(ConsistOf(runningJob(ns, running)), "one Job active while the others wait")
			finishJob(ns, runningJob(ns, running), "")
			Eventually(getEvent(ns, running)).Should(finished(funnelv1.PhaseSucceeded))
			done[running] = true
		}
		Expect(jobsOf(ns)(Default)).To(HaveLen(3), "one Job per event")
	})
})
