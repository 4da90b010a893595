package controllers_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// orderSink is an HTTP target that records which event each request carried, how many
// were in flight at once, and answers 503 for the events told to fail.
type orderSink struct {
	*httptest.Server
	mu          sync.Mutex
	delivered   []string // events answered 2xx, in order
	requested   map[string]int
	failing     map[string]bool
	inFlight    int
	maxInFlight int
}

// newOrderSink answers each request after hold: long enough that requests made together
// overlap.
func newOrderSink(hold time.Duration) *orderSink {
	s := &orderSink{requested: map[string]int{}, failing: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.Header.Get("X-Funnel-Event-Name")
		s.mu.Lock()
		s.requested[name]++
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
		s.mu.Unlock()
		time.Sleep(hold) // the target's own pace, not a wait for the operator
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inFlight--
		if s.failing[name] {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		s.delivered = append(s.delivered, name)
	}))
	DeferCleanup(s.Close)
	return s
}

func (s *orderSink) fail(name string, failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[name] = failing
}

func (s *orderSink) got() (delivered []string, requested map[string]int, maxInFlight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	requested = map[string]int{}
	for k, v := range s.requested {
		requested[k] = v
	}
	return append([]string(nil), s.delivered...), requested, s.maxInFlight
}

// statusUpdate is a classic status update of lease transaction tx that occurred at
// minute minute of a fixed hour.
func statusUpdate(id, tx, minute int) []byte {
	at := time.Date(2026, 3, 1, 12, minute, 0, 0, time.UTC).Unix()
	return fmt.Appendf(nil, `{"id": %d, "event_type": "lease_transaction.status_updated", "event_timestamp": %d, "idempotency_key": null,
  "event_data": {"lease_transaction_id": %d, "lease_transaction_type": "Application", "current_status": "Approved",
  "previous_status": "Submitted", "client_id": 12453, "community_id": 43522}}`, id, at, tx)
}

var _ = Describe("Ordered delivery", func() {
	var ns, path string
	BeforeEach(func() { ns, path = openReceiverNamespace("order") })

	send := func(body []byte) string {
		GinkgoHelper()
		a := post(webhookURL, path, body, nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)
		return a.event()
	}
	ordered := func(url string) funnelv1.FunnelSubscriptionSpec {
		return funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"},
			Ordering: &funnelv1.Ordering{Key: funnelv1.OrderByLeaseTransaction},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: url}},
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(50)), BackoffPolicy: funnelv1.BackoffLinear,
				BackoffDelay: funnelv1.NewDuration(100 * time.Millisecond), MaxBackoff: funnelv1.NewDuration(500 * time.Millisecond)}}
	}

	It("delivers the events of one lease transaction one at a time, in the order they occurred, whatever the order received", func() {
		target := newOrderSink(200 * time.Millisecond)
		// The subscription waits for a Secret, so the three events are all there, their
		// deliveries held, when it becomes Ready.
		spec := ordered(target.URL)
		spec.ServiceAccountName = actionsAccount
		spec.Action.HTTP.HeadersFrom = []funnelv1.HTTPHeaderFromSecret{{Name: "Authorization", SecretRef: funnelv1.SecretKeyRef{Name: "pms", Key: "auth"}}}
		serviceAccount(ns, actionsAccount, actionRules...)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms"}, Spec: spec})).To(Succeed())
		Eventually(subscriptionReady(ns, "pms")).Should(HaveField("Reason", funnelv1.ReasonSecretNotFound))

		third, first, second := send(statusUpdate(3, 74824, 30)), send(statusUpdate(1, 74824, 10)), send(statusUpdate(2, 74824, 20))
		for _, name := range []string{first, second, third} {
			Eventually(getEvent(ns, name)).Should(HaveField("Status.Deliveries", ConsistOf(HaveField("Reason", funnelv1.WaitSubscriptionNotReady))))
		}
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms"},
			Data: map[string][]byte{"auth": []byte("Bearer pms-key")}})).To(Succeed())

		for _, name := range []string{first, second, third} {
			Eventually(getEvent(ns, name)).Should(finished(funnelv1.PhaseSucceeded))
		}
		delivered, _, maxInFlight := target.got()
		Expect(delivered).To(Equal([]string{first, second, third}))
		Expect(maxInFlight).To(Equal(1), "one at a time")
	})

	It("holds back the later events of a failing event's lease transaction only, until it succeeds", func() {
		target := newOrderSink(0)
		subscribeReady(ns, "pms", ordered(target.URL))

		head := must(funnel.EventName("funnel", statusUpdate(1, 74824, 10), time.Now()))
		target.fail(head, true)
		send(statusUpdate(1, 74824, 10))
		Eventually(getEvent(ns, head)).Should(HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
			HaveField("Phase", funnelv1.DeliveryPending), HaveField("ResponseCode", int32(503))))))
		later := send(statusUpdate(2, 74824, 20))
		other := send(statusUpdate(3, 74825, 15))

		Eventually(getEvent(ns, other)).Should(finished(funnelv1.PhaseSucceeded), "another lease transaction is not held")
		Eventually(getEvent(ns, later)).Should(HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
			HaveField("Phase", funnelv1.DeliveryPending), HaveField("Attempts", int32(0)),
			HaveField("Reason", funnelv1.WaitOrdering), HaveField("Message", ContainSubstring(head))))))
		_, requested, _ := target.got()
		Expect(requested).NotTo(HaveKey(later))

		target.fail(head, false)
		Eventually(getEvent(ns, later)).Should(finished(funnelv1.PhaseSucceeded))
		Expect(getEvent(ns, head)(Default)).To(finished(funnelv1.PhaseSucceeded))
		delivered, _, _ := target.got()
		Expect(delivered).To(Equal([]string{other, head, later}))
	})
})
