package controllers_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
)

// received is one request a sink got.
type received struct {
	method string
	header http.Header
	body   []byte
}

// sink is an HTTP target that answers with a scripted sequence of status codes (the last
// one repeats) and records every request.
type sink struct {
	*httptest.Server
	mu       sync.Mutex
	requests []received
	codes    []int
	headers  http.Header
}

func newSink(codes ...int) *sink { return newSinkOn("127.0.0.1:0", codes...) }

// newSinkOn is a sink listening on addr.
func newSinkOn(addr string, codes ...int) *sink {
	GinkgoHelper()
	ln, err := net.Listen("tcp", addr)
	Expect(err).NotTo(HaveOccurred())
	s := &sink{codes: codes, headers: http.Header{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, received{r.Method, r.Header.Clone(), body})
		code := s.codes[min(len(s.requests), len(s.codes))-1]
		for k, v := range s.headers {
			w.Header()[k] = v
		}
		s.mu.Unlock()
		w.WriteHeader(code)
		_, _ = w.Write([]byte(http.StatusText(code)))
	}))
	s.Listener = ln
	s.Start()
	DeferCleanup(s.Close)
	return s
}

func (s *sink) got() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.requests...)
}

var _ = Describe("Subscriptions", func() {
	var ns, path string

	BeforeEach(func() {
		ns, path = openReceiverNamespace("subs")
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms"},
			Data: map[string][]byte{"hmac": []byte("sign-me"), "auth": []byte("Bearer pms-key"),
				"current": []byte(currentKey), "next": []byte(nextKey)},
		})).To(Succeed())
		serviceAccount(ns, actionsAccount, actionRules...)
	})

	// subscribe creates a subscription and waits until its controller found it Ready.
	subscribe := func(name string, spec funnelv1.FunnelSubscriptionSpec) {
		GinkgoHelper()
		subscribeReady(ns, name, spec)
	}
	httpTo := func(url string) funnelv1.Action {
		return funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: url}}
	}
	fast := func(retries int32) funnelv1.DeliveryPolicy {
		return funnelv1.DeliveryPolicy{Retries: &retries, BackoffDelay: funnelv1.NewDuration(100 * time.Millisecond)}
	}
	send := func(file string) {
		GinkgoHelper()
		a := post(webhookURL, path, example(file), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)
	}
	approved := exampleName("classic-lease_transaction.status_updated.json")

	It("delivers a matching event to an HTTP target, signed per Standard Webhooks, with its idempotency key", func() {
		target := newSink(http.StatusOK)
		subscribe("pms-sync", funnelv1.FunnelSubscriptionSpec{
			EventTypes:         []string{"lease_transaction.*"},
			ServiceAccountName: actionsAccount,
			Filter:             "event.data.current_status == 'Approved' && event.data.community_id == 43522",
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL + "/funnel",
				Headers:     []funnelv1.HTTPHeader{{Name: "X-Source", Value: "funnel-operator-test"}},
				HeadersFrom: []funnelv1.HTTPHeaderFromSecret{{Name: "Authorization", SecretRef: funnelv1.SecretKeyRef{Name: "pms", Key: "auth"}}},
				Signing:     &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "pms", Key: "current"}, {Name: "pms", Key: "next"}}}}},
		})
		send("classic-lease_transaction.status_updated.json")

		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseSucceeded))
		ev := getEvent(ns, approved)(Default)
		Expect(ev.Status.Deliveries).To(ConsistOf(SatisfyAll(
			HaveField("Subscription", "pms-sync"), HaveField("Phase", funnelv1.DeliverySucceeded),
			HaveField("Attempts", int32(1)), HaveField("ResponseCode", int32(200)), HaveField("CompletionTime", Not(BeNil())))))
		Expect(ev.Status.Attempts).To(Equal(int32(1)))
		Expect(meta.IsStatusConditionTrue(ev.Status.Conditions, funnelv1.ConditionDelivered)).To(BeTrue())

		reqs := target.got()
		Expect(reqs).To(HaveLen(1))
		r := reqs[0]
		Expect(r.method).To(Equal("POST"))
		Expect(r.header.Get("Idempotency-Key")).To(Equal(ns + "/" + approved + "/pms-sync"))
		Expect(r.header.Get("Authorization")).To(Equal("Bearer pms-key"))
		Expect(r.header.Get("X-Source")).To(Equal("funnel-operator-test"))
		Expect(r.header.Get("Content-Type")).To(Equal("application/json"))
		// While the key is rotated, a target verifying with either key accepts the request.
		for _, key := range []string{currentKey, nextKey} {
			Expect(verifier(key).Verify(r.body, r.header)).To(Succeed())
			Expect(verifier(key).Verify(append(r.body, ' '), r.header)).To(MatchError(standardwebhooks.ErrNoMatchingSignature))
		}
		Expect(verifier(whsec("another key")).Verify(r.body, r.header)).To(MatchError(standardwebhooks.ErrNoMatchingSignature))
		Expect(r.header.Get(delivery.HeaderWebhookID)).To(HavePrefix("msg_"))
		Expect(r.header.Values(funnelv1.SignatureHeader)).To(BeEmpty(), "the former header only comes with the deprecated signingSecretRef")
		var body map[string]any
		Expect(json.Unmarshal(r.body, &body)).To(Succeed())
		Expect(body).To(HaveKeyWithValue("name", approved))
		Expect(body).To(HaveKeyWithValue("summary", "Application 74824: Submitted → Approved"))
		Expect(body).To(HaveKeyWithValue("data", HaveKeyWithValue("current_status", "Approved")))

		Eventually(func(g Gomega) funnelv1.FunnelSubscriptionStatus {
			var sub funnelv1.FunnelSubscription
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pms-sync"}, &sub)).To(Succeed())
			return sub.Status
		}).Should(SatisfyAll(HaveField("Matched", int64(1)), HaveField("Succeeded", int64(1)), HaveField("Failed", int64(0)),
			HaveField("LastDeliveryTime", Not(BeNil()))))
	})

	It("still signs with the deprecated signingSecretRef, in both the former header and Standard Webhooks'", func() {
		target := newSink(http.StatusOK)
		subscribe("legacy", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount,
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL, SigningSecretRef: &funnelv1.SecretKeyRef{Name: "pms", Key: "hmac"}}}})
		send("classic-lease_transaction.status_updated.json")
		Eventually(target.got).Should(HaveLen(1))
		r := target.got()[0]
		mac := hmac.New(sha256.New, []byte("sign-me"))
		mac.Write(r.body)
		Expect(r.header.Get(funnelv1.SignatureHeader)).To(Equal("sha256=" + hex.EncodeToString(mac.Sum(nil))))
		wh, err := standardwebhooks.NewWebhookRaw([]byte("sign-me"))
		Expect(err).NotTo(HaveOccurred())
		Expect(wh.Verify(r.body, r.header)).To(Succeed())
	})

	It("reports a signing key that is not one, and becomes Ready when it is fixed", func() {
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "typo"},
			Data: map[string][]byte{"key": []byte("whsec_not base64")}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad-key"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{
				URL: "http://pms.example", Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "typo", Key: "key"}}}}}}})).To(Succeed())
		Eventually(subscriptionReady(ns, "bad-key")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonInvalidSigningKey),
			HaveField("Message", Equal(`Secret "typo", key "key": invalid signing key: it starts with whsec_ but the rest is not base64`))))
		Expect(k8s.Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "typo"},
			Data: map[string][]byte{"key": []byte(whsec("fixed"))}})).To(Succeed())
		Eventually(subscriptionReady(ns, "bad-key")).Should(HaveField("Reason", funnelv1.ReasonReady))
	})

	It("does not route events its filter, types or receiver exclude", func() {
		target := newSink(http.StatusOK)
		subscribe("denied-only", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Filter: "has(event.data.current_status) && event.data.current_status == 'Denied'", Action: httpTo(target.URL)})
		subscribe("quotes", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"quote.*"}, Action: httpTo(target.URL)})
		subscribe("other-receiver", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Receiver: "other", Action: httpTo(target.URL)})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded), HaveField("Status.Deliveries", BeEmpty())))
		Expect(target.got()).To(BeEmpty())
	})

	It("delivers to the first MaxDeliveries matching subscriptions by name, and says so with a Warning Event", func() {
		target := newSink(http.StatusOK)
		for i := range delivery.MaxDeliveries + 1 {
			Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("crm-%03d", i)},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL)}})).To(Succeed())
		}
		// The last one created in the controllers' cache: all of them are.
		Eventually(subscriptionReady(ns, fmt.Sprintf("crm-%03d", delivery.MaxDeliveries))).Should(HaveField("Reason", funnelv1.ReasonReady))
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseSucceeded))
		ev := getEvent(ns, approved)(Default)
		Expect(ev.Status.Deliveries).To(HaveLen(delivery.MaxDeliveries))
		Expect(ev.Status.Deliveries[delivery.MaxDeliveries-1].Subscription).To(Equal(fmt.Sprintf("crm-%03d", delivery.MaxDeliveries-1)))
		Expect(target.got()).To(HaveLen(delivery.MaxDeliveries))
		Eventually(kubeEvents(ns, approved)).Should(ContainElement(SatisfyAll(
			HaveField("Type", corev1.EventTypeWarning), HaveField("Reason", funnelv1.ReasonTooManySubscriptions),
			HaveField("Note", ContainSubstring(fmt.Sprintf("delivering to the first %d by name", delivery.MaxDeliveries))))))
	})

	It("retries 503s and 429s with one idempotency key, then succeeds", func() {
		target := newSink(http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK)
		subscribe("flaky", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.status_updated"},
			Action: httpTo(target.URL), Delivery: fast(3)})
		send("classic-lease_transaction.status_updated.json")

		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseSucceeded))
		ev := getEvent(ns, approved)(Default)
		Expect(ev.Status.Deliveries[0].Attempts).To(Equal(int32(3)))
		Expect(ev.Status.Deliveries[0].NextAttemptTime).To(BeNil())
		reqs := target.got()
		Expect(reqs).To(HaveLen(3))
		for i := 1; i < len(reqs); i++ {
			Expect(reqs[i].header.Get("Idempotency-Key")).To(Equal(reqs[0].header.Get("Idempotency-Key")))
			Expect(reqs[i].header.Get(delivery.HeaderWebhookID)).To(Equal(reqs[0].header.Get(delivery.HeaderWebhookID)))
			Expect(reqs[i].header.Get("X-Funnel-Delivery-Attempt")).To(Equal(string(rune('1' + i))))
		}
	})

	It("schedules the next attempt at the target's Retry-After, when longer than the backoff", func() {
		target := newSink(http.StatusTooManyRequests)
		target.headers.Set("Retry-After", "120")
		subscribe("throttled", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL), Delivery: fast(3)})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
			HaveField("Phase", funnelv1.DeliveryPending), HaveField("Attempts", int32(1)), HaveField("ResponseCode", int32(429)),
			HaveField("NextAttemptTime", Not(BeNil()))))))
		d := getEvent(ns, approved)(Default).Status.Deliveries[0]
		// Both times are the operator's: what it decided, not how fast this machine is.
		Expect(d.NextAttemptTime.Sub(d.LastAttemptTime.Time)).To(BeNumerically("~", 2*time.Minute, 2*time.Second))
	})

	It("records the next attempt while waiting for a retry", func() {
		target := newSink(http.StatusInternalServerError, http.StatusOK)
		subscribe("slow-retry", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL),
			Delivery: funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(time.Hour), MaxBackoff: funnelv1.NewDuration(2 * time.Hour)}})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(
			HaveField("Status.Phase", funnelv1.PhaseProcessing),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
				HaveField("Phase", funnelv1.DeliveryPending), HaveField("Attempts", int32(1)),
				HaveField("ResponseCode", int32(500)), HaveField("LastError", ContainSubstring("HTTP 500")),
				HaveField("NextAttemptTime", Not(BeNil()))))),
		))
		ev := getEvent(ns, approved)(Default)
		Expect(ev.Status.Deliveries[0].NextAttemptTime.Sub(ev.Status.Deliveries[0].LastAttemptTime.Time)).To(BeNumerically("~", time.Hour, 2*time.Second))
		Expect(mgrCache.Get(ctx, client.ObjectKeyFromObject(&ev), &funnelv1.FunnelEvent{})).To(Succeed(), "an event waiting for a retry stays in the cache")
	})

	It("fails a permanent 4xx at once, without retries", func() {
		target := newSink(http.StatusBadRequest)
		subscribe("strict", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL), Delivery: fast(5)})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseFailed))
		ev := getEvent(ns, approved)(Default)
		Expect(ev.Status.Deliveries).To(ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliveryFailed),
			HaveField("Attempts", int32(1)), HaveField("ResponseCode", int32(400)), HaveField("LastError", ContainSubstring("HTTP 400 Bad Request")))))
		Expect(target.got()).To(HaveLen(1))
		Eventually(kubeEvents(ns, approved)).Should(ContainElement(SatisfyAll(HaveField("Type", "Warning"), HaveField("Reason", funnelv1.ReasonDeliveryFailed))))
	})

	It("dead-letters a delivery whose retries are exhausted, once, with the failure context", func() {
		target := newSink(http.StatusBadGateway)
		dlq := newSink(http.StatusAccepted)
		subscribe("exhausted", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL),
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(2)), BackoffDelay: funnelv1.NewDuration(50 * time.Millisecond),
				DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: dlq.URL,
					Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "pms", Key: "next"}}}}}}, ServiceAccountName: actionsAccount})
		send("classic-lease_transaction.status_updated.json")

		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseFailed))
		ev := getEvent(ns, approved)(Default)
		d := ev.Status.Deliveries[0]
		Expect(d.Phase).To(Equal(funnelv1.DeliveryFailed))
		Expect(d.Attempts).To(Equal(int32(3)))
		Expect(d.DeadLetter).NotTo(BeNil())
		Expect(d.DeadLetter.Phase).To(Equal(funnelv1.DeliverySucceeded))
		Expect(d.DeadLetter.ResponseCode).To(Equal(int32(202)))
		Expect(target.got()).To(HaveLen(3))

		Expect(dlq.got()).To(HaveLen(1))
		var letter struct {
			Event        map[string]any `json:"event"`
			Subscription string         `json:"subscription"`
			Failure      struct {
				Attempts     int32  `json:"attempts"`
				LastError    string `json:"lastError"`
				ResponseCode int32  `json:"responseCode"`
			} `json:"failure"`
		}
		Expect(json.Unmarshal(dlq.got()[0].body, &letter)).To(Succeed())
		Expect(letter.Subscription).To(Equal("exhausted"))
		Expect(letter.Event).To(HaveKeyWithValue("name", approved))
		Expect(letter.Failure.Attempts).To(Equal(int32(3)))
		Expect(letter.Failure.ResponseCode).To(Equal(int32(502)))
		Expect(letter.Failure.LastError).To(ContainSubstring("HTTP 502"))
		Expect(dlq.got()[0].header.Get("X-Funnel-Dead-Letter")).To(Equal("true"))
		Expect(verifier(nextKey).Verify(dlq.got()[0].body, dlq.got()[0].header)).To(Succeed(), "a dead letter is signed with its own keys")
		Expect(dlq.got()[0].header.Get(delivery.HeaderWebhookID)).NotTo(Equal(target.got()[0].header.Get(delivery.HeaderWebhookID)),
			"a dead letter is another message")
		Eventually(kubeEvents(ns, approved)).Should(ContainElement(HaveField("Reason", funnelv1.ReasonDeadLettered)))
		Consistently(dlq.got, "1s").Should(HaveLen(1), "the dead letter runs once")
	})

	It("sends CloudEvents the CloudEvents SDK decodes, and dead-letters them as the same event with the failure", func() {
		broker := newSink(http.StatusAccepted)
		refusing := newSink(http.StatusBadRequest)
		dlq := newSink(http.StatusAccepted)
		subscribe("to-broker", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: broker.URL, Body: funnelv1.BodyCloudEvent}}})
		subscribe("refused", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: refusing.URL, Body: funnelv1.BodyCloudEvent}},
			Delivery: funnelv1.DeliveryPolicy{DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: dlq.URL, Body: funnelv1.BodyCloudEvent}}}})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseFailed))
		Expect(broker.got()).To(HaveLen(1))
		Expect(dlq.got()).To(HaveLen(1))

		decode := func(r received) *cloudevents.Event {
			GinkgoHelper()
			e, err := binding.ToEvent(ctx, cehttp.NewMessage(r.header, io.NopCloser(bytes.NewReader(r.body))))
			Expect(err).NotTo(HaveOccurred())
			Expect(e.Validate()).To(Succeed())
			return e
		}
		var sent struct {
			Data json.RawMessage `json:"event_data"`
		}
		Expect(json.Unmarshal(example("classic-lease_transaction.status_updated.json"), &sent)).To(Succeed())
		for _, e := range []*cloudevents.Event{decode(broker.got()[0]), decode(dlq.got()[0])} {
			Expect(e.SpecVersion()).To(Equal("1.0"))
			Expect(e.ID()).To(Equal(approved))
			Expect(e.Source()).To(Equal("/apis/funnel.leasing.dev/v1alpha1/namespaces/" + ns + "/funnelreceivers/funnel"))
			Expect(e.Type()).To(Equal("lease_transaction.status_updated"))
			Expect(e.Time()).To(BeTemporally("==", time.Unix(1680064028, 0)))
			Expect(e.Subject()).To(Equal("lease-transaction/74824"))
			Expect(e.DataContentType()).To(Equal("application/json"))
			Expect(e.Data()).To(MatchJSON(sent.Data))
			Expect(e.Extensions()).To(SatisfyAll(HaveKeyWithValue("leasetransactionid", "74824"),
				HaveKeyWithValue("communityid", "43522"), HaveKeyWithValue("clientid", "12453")))
		}
		Expect(decode(broker.got()[0]).Extensions()).To(HaveLen(3))
		Expect(decode(dlq.got()[0]).Extensions()).To(SatisfyAll(HaveLen(8), HaveKeyWithValue("funnelsubscription", "refused"),
			HaveKeyWithValue("funnelattempts", "1"), HaveKeyWithValue("funnelresponsecode", "400"),
			HaveKeyWithValue("funnelerror", "HTTP%20400%20Bad%20Request"), HaveKey("funnellastattempt")))

		// A replay is a new delivery: a consumer that de-duplicates on the id processes it.
		replay(ns, approved, "again")
		Eventually(broker.got).Should(HaveLen(2))
		Expect(decode(broker.got()[1]).ID()).To(Equal(approved + "/replay-1"))
	})

	It("delivers again on a replay, as a new delivery with its own idempotency key, a reused replay value too", func() {
		target := newSink(http.StatusOK)
		subscribe("replayed", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL)})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseSucceeded))
		for i, value := range []string{"again", "and-again", "again"} {
			replay(ns, approved, value)
			Eventually(target.got).Should(HaveLen(i + 2))
			Eventually(getEvent(ns, approved)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
				HaveField("Status.ObservedReplay", value), HaveField("Status.Replays", int32(i+1))))
		}
		var keys []string
		for _, r := range target.got() {
			keys = append(keys, r.header.Get("Idempotency-Key"))
		}
		key := ns + "/" + approved + "/replayed"
		Expect(keys).To(Equal([]string{key, key + "/replay-1", key + "/replay-2", key + "/replay-3"}))
		var ids []string
		for _, r := range target.got() {
			ids = append(ids, r.header.Get(delivery.HeaderWebhookID))
		}
		Expect(sets.New(ids...).Len()).To(Equal(4), "each replay is another message: %q", ids)
	})

	It("routes only to subscriptions that existed when the event was processed (replay picks up new ones)", func() {
		first := newSink(http.StatusOK)
		subscribe("early", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(first.URL)})
		send("v3-lease.move_in_canceled.json")
		name := exampleName("v3-lease.move_in_canceled.json")
		Eventually(getEvent(ns, name)).Should(finished(funnelv1.PhaseSucceeded))

		late := newSink(http.StatusOK)
		subscribe("late", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(late.URL)})
		Consistently(late.got, "1s").Should(BeEmpty())

		replay(ns, name, "1")
		Eventually(getEvent(ns, name)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
			HaveField("Status.Deliveries", ConsistOf(HaveField("Subscription", "early"), HaveField("Subscription", "late")))))
		Expect(late.got()).To(HaveLen(1))
	})

	It("skips a suspended subscription", func() {
		target := newSink(http.StatusOK)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "paused"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Suspend: true, Action: httpTo(target.URL)}})).To(Succeed())
		Eventually(subscriptionReady(ns, "paused")).Should(SatisfyAll(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", funnelv1.ReasonSuspended)))
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded), HaveField("Status.Deliveries", BeEmpty())))
		Expect(target.got()).To(BeEmpty())
	})

	It("reports a filter that does not compile, with the compiler's message, and routes nothing to it", func() {
		target := newSink(http.StatusOK)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broken"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Filter: "event.data.status ==", Action: httpTo(target.URL)}})).To(Succeed())
		Eventually(subscriptionReady(ns, "broken")).Should(SatisfyAll(HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", funnelv1.ReasonInvalidFilter), HaveField("Message", ContainSubstring("Syntax error"))))
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded), HaveField("Status.Deliveries", BeEmpty())))
	})

	It("reports missing Secrets and becomes Ready when they appear", func() {
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "needs-secret"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{
				URL: "http://pms.example", SigningSecretRef: &funnelv1.SecretKeyRef{Name: "later", Key: "key"}}}}})).To(Succeed())
		Eventually(subscriptionReady(ns, "needs-secret")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonSecretNotFound),
			HaveField("Message", ContainSubstring(`"later"`))))
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
			Data: map[string][]byte{"key": []byte("k")}})).To(Succeed())
		Eventually(subscriptionReady(ns, "needs-secret")).Should(HaveField("Reason", funnelv1.ReasonReady))
	})

	It("reports an invalid Job template with the API server's message", func() {
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad-job"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount, Action: funnelv1.Action{Job: &funnelv1.JobAction{
				Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "x"}}}}}}}}}})).To(Succeed())
		Eventually(subscriptionReady(ns, "bad-job")).Should(SatisfyAll(HaveField("Reason", funnelv1.ReasonInvalidJobTemplate),
			HaveField("Message", ContainSubstring("image"))))
	})

	It("runs exactly one Job per event and subscription, hands over the event, and follows its outcome", func() {
		subscribe("move-in-job", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: actionsAccount, Action: jobAction()})
		send("v3-lease.move_in.json")
		send("v3-lease.move_in.json") // a duplicate receipt must not make a second Job
		name := exampleName("v3-lease.move_in.json")

		Eventually(getEvent(ns, name)).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseProcessing),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliveryRunning), HaveField("Job", Not(BeEmpty())))))))
		var jobs batchv1.JobList
		Expect(k8s.List(ctx, &jobs, client.InNamespace(ns))).To(Succeed())
		Expect(jobs.Items).To(HaveLen(1))
		job := jobs.Items[0]
		ev := getEvent(ns, name)(Default)
		Expect(job.Name).To(Equal(ev.Status.Deliveries[0].Job))
		Expect(metav1.IsControlledBy(&job, &ev)).To(BeTrue())
		Expect(job.OwnerReferences[0].BlockOwnerDeletion).To(HaveValue(BeFalse()),
			"blocking the owner's deletion would need update on funnelevents/finalizers from the ServiceAccount")
		Expect(job.Labels).To(HaveKeyWithValue(delivery.LabelSubscription, "move-in-job"))
		Expect(job.Spec.TTLSecondsAfterFinished).To(HaveValue(Equal(funnelv1.DefaultJobTTLSecondsAfterFinished)), "finished Jobs do not pile up")
		env := map[string]string{}
		for _, e := range job.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		Expect(env).To(HaveKeyWithValue("FUNNEL_EVENT_NAME", name))
		Expect(env).To(HaveKeyWithValue("FUNNEL_EVENT_ID", "3eb29a92-e480-40ee-9a9f-61fff5e3f3d5"))
		Expect(env).To(HaveKeyWithValue("FUNNEL_EVENT_TYPE", "lease.move_in"))
		Expect(env["FUNNEL_EVENT_DATA"]).To(MatchJSON(dataOf(example("v3-lease.move_in.json"))))

		finishJob(ns, job.Name, "")
		Eventually(getEvent(ns, name)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
			HaveField("Status.Deliveries", ConsistOf(HaveField("Phase", funnelv1.DeliverySucceeded)))))
		Expect(k8s.List(ctx, &jobs, client.InNamespace(ns))).To(Succeed())
		Expect(jobs.Items).To(HaveLen(1))
	})

	It("retries a failed Job with a new Job, then dead-letters the delivery with the Job's reason", func() {
		subscribe("move-in-retried", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: actionsAccount,
			Action: jobAction(), Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(1)), BackoffDelay: funnelv1.NewDuration(100 * time.Millisecond),
				DeadLetter: &funnelv1.Action{Job: jobAction().Job}}})
		send("v3-lease.move_in.json")
		name := exampleName("v3-lease.move_in.json")
		jobs := jobsOf(ns)
		Eventually(jobs).Should(HaveLen(1))
		first := jobs(Default)[0]
		finishJob(ns, first.Name, "BackoffLimitExceeded")

		Eventually(jobs).Should(HaveLen(2), "the retry runs a new Job")
		Eventually(getEvent(ns, name)).Should(HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
			HaveField("Phase", funnelv1.DeliveryRunning), HaveField("Attempts", int32(2)), HaveField("Job", Not(Equal(first.Name)))))))
		second := getEvent(ns, name)(Default).Status.Deliveries[0].Job
		finishJob(ns, second, "BackoffLimitExceeded")

		Eventually(getEvent(ns, name)).Should(HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
			HaveField("Phase", funnelv1.DeliveryFailed), HaveField("Attempts", int32(2)),
			HaveField("LastError", "Job "+second+" failed: BackoffLimitExceeded: the Job failed"),
			HaveField("DeadLetter.Phase", funnelv1.DeliveryRunning)))))
		Expect(jobs(Default)).To(HaveLen(3), "the dead letter runs as a Job")
	})

	It("fails a delivery whose subscription was deleted while it waited", func() {
		target := newSink(http.StatusServiceUnavailable)
		subscribe("going-away", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: httpTo(target.URL),
			Delivery: funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(2 * time.Second)}})
		send("classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(HaveField("Status.Phase", funnelv1.PhaseProcessing))
		Expect(k8s.Delete(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "going-away"}})).To(Succeed())
		Eventually(getEvent(ns, approved), "10s").Should(SatisfyAll(finished(funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(HaveField("LastError", ContainSubstring("no longer exists"))))))
	})
})

// Standard Webhooks keys of the specs' Secret "pms".
var (
	currentKey = whsec("the current key, 32 bytes long..")
	nextKey    = whsec("the next key, also 32 bytes long")
)

func whsec(key string) string {
	return delivery.SigningKeyPrefix + base64.StdEncoding.EncodeToString([]byte(key))
}

// verifier is what a target verifies requests with: the Standard Webhooks reference library.
func verifier(key string) *standardwebhooks.Webhook {
	GinkgoHelper()
	wh, err := standardwebhooks.NewWebhook(key)
	Expect(err).NotTo(HaveOccurred())
	return wh
}

// subscriptionReady returns a subscription's Ready condition for its current generation.
func subscriptionReady(ns, name string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var sub funnelv1.FunnelSubscription
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sub)).To(Succeed())
		c := meta.FindStatusCondition(sub.Status.Conditions, funnelv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.ObservedGeneration).To(Equal(sub.Generation))
		return *c
	}
}
