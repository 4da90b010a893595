package tenancy_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// sinkOn starts an HTTP target listening on addr.
func sinkOn(addr string) *harness.Sink {
	GinkgoHelper()
	s, err := harness.NewSinkOn(addr)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.Close)
	return s
}

// ownAddress is an IPv4 address of this machine other than loopback: the operator's own
// address, since it runs here.
func ownAddress() (netip.Addr, bool) {
	addrs, err := net.InterfaceAddrs()
	Expect(err).NotTo(HaveOccurred())
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.(*net.IPNet).IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// theEvent is the namespace's one FunnelEvent, as the tenant reads it.
func theEvent(t *tenant) func(Gomega) funnelv1.FunnelEvent {
	return func(g Gomega) funnelv1.FunnelEvent {
		var list funnelv1.FunnelEventList
		g.Expect(t.client.List(ctx, &list, client.InNamespace(t.ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(1))
		return list.Items[0]
	}
}

// allowedTargets is the one loopback address the SSRF spec's operator may deliver to, as
// an admin opens what its targets need: not 127.0.0.1, where the API server listens.
const allowedTargets = "127.0.0.3"

var _ = Describe("A tenant's HTTP subscriptions", func() {
	It("reach no address the admin did not allow (checked after DNS), and read nothing of a target's answer back", func() {
		t := newTenant("ssrf", subscriber...)
		token := openReceiver(t.ns)
		op := startOperator(t.ns, "--delivery-allow-cidrs="+allowedTargets)

		type target struct {
			url    string
			sink   *harness.Sink // nil: nothing listens
			reason string
		}
		loopback, everywhere := sinkOn("127.0.0.2:0"), sinkOn("0.0.0.0:0")
		targets := map[string]target{
			"loopback":    {loopback.URL, loopback, "loopback"},
			"unspecified": {everywhere.URL, everywhere, "unspecified"}, // http://0.0.0.0:port reaches this host
			"metadata":    {"http://169.254.169.254/latest/meta-data/iam/security-credentials/", nil, "cloud metadata"},
			// The API server of the operator's kubeconfig: refused as such, not merely as loopback.
			"apiserver": {cp.Config.Host + "/api/v1/secrets", nil, "the Kubernetes API server"},
		}
		if ip, ok := ownAddress(); ok {
			own := sinkOn(netip.AddrPortFrom(ip, 0).String())
			targets["own"] = target{own.URL, own, "the operator's own address"}
		}
		// An allowed internal service that answers with what it should not tell.
		const secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI"
		talker := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "http://internal/"+secret)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(secret))
		}))
		ln, err := net.Listen("tcp", allowedTargets+":0")
		Expect(err).NotTo(HaveOccurred())
		talker.Listener = ln
		talker.Start()
		DeferCleanup(talker.Close)
		deadLetters := sinkOn(allowedTargets + ":0")

		create := func(name string, action funnelv1.HTTPAction, policy funnelv1.DeliveryPolicy) {
			GinkgoHelper()
			action.Timeout = &metav1.Duration{Duration: 2 * time.Second}
			Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: name},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &action}, Delivery: policy}})).To(Succeed())
			Eventually(subscriptionReady(t.ns, name)).Should(HaveField("Reason", funnelv1.ReasonReady))
		}
		for name, tg := range targets {
			create(name, funnelv1.HTTPAction{URL: tg.url}, funnelv1.DeliveryPolicy{})
		}
		create("talker", funnelv1.HTTPAction{URL: talker.URL}, funnelv1.DeliveryPolicy{
			DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: deadLetters.URL}}})
		Expect(post(op, t.ns, token, "classic-lease_transaction.status_updated.json")).To(Equal(http.StatusOK))

		Eventually(theEvent(t)).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseFailed), HaveField("Status.Deliveries", HaveLen(len(targets)+1))))
		ev := theEvent(t)(Default)
		for _, d := range ev.Status.Deliveries {
			if d.Subscription == "talker" {
				Expect(d).To(SatisfyAll(HaveField("ResponseCode", int32(400)), HaveField("LastError", "HTTP 400 Bad Request"),
					HaveField("DeadLetter.Phase", funnelv1.DeliverySucceeded)))
				continue
			}
			tg := targets[d.Subscription]
			Expect(d).To(SatisfyAll(HaveField("Phase", funnelv1.DeliveryFailed), HaveField("Attempts", int32(1)),
				HaveField("ResponseCode", int32(0)), HaveField("LastError", "address not allowed: "+tg.reason)), d.Subscription)
			if tg.sink != nil {
				Expect(tg.sink.Len()).To(BeZero(), "%s was reached", d.Subscription)
			}
		}

		By("nothing of the answer in status, the Events or the dead letter")
		status, err := json.Marshal(ev.Status)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(status)).NotTo(ContainSubstring(secret))
		Eventually(deadLetters.Len).Should(Equal(1))
		Expect(string(deadLetters.Requests()[0].Body)).To(SatisfyAll(ContainSubstring(`"lastError":"HTTP 400 Bad Request"`), Not(ContainSubstring(secret))))
		var events eventsv1.EventList
		Eventually(func(g Gomega) []eventsv1.Event {
			g.Expect(k8s.List(ctx, &events, client.InNamespace(t.ns))).To(Succeed())
			return events.Items
		}).Should(ContainElement(HaveField("Reason", funnelv1.ReasonDeliveryFailed)))
		for _, e := range events.Items {
			Expect(e.Note).NotTo(ContainSubstring(secret))
		}
	})

	It("reach neither the API server nor the operator's own ports, even where the admin opened all of loopback (as make run does)", func() {
		t := newTenant("own-ports", subscriber...)
		token := openReceiver(t.ns)
		op := startOperator(t.ns, "--delivery-allow-cidrs=127.0.0.0/8,::1")
		apiServer, err := url.Parse(cp.Config.Host)
		Expect(err).NotTo(HaveOccurred())
		allowed := sinkOn("127.0.0.1:0")
		targets := map[string]string{
			"apiserver": cp.Config.Host + "/api/v1/namespaces/" + t.ns + "/secrets",
			// The API server's port on another address of the host.
			"apiserver-elsewhere": "https://127.0.0.2:" + apiServer.Port() + "/api",
			"metrics":             "http://" + op.MetricsAddr + "/metrics",
			"probes":              "http://" + op.ProbeAddr + "/healthz",
			"receiver":            op.WebhookURL(t.ns, "funnel"),
			"allowed":             allowed.URL,
		}
		for name, u := range targets {
			Expect(t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: name},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: u}}}})).To(Succeed())
			Eventually(subscriptionReady(t.ns, name)).Should(HaveField("Reason", funnelv1.ReasonReady))
		}
		Expect(post(op, t.ns, token, "v3-lease.move_in.json")).To(Equal(http.StatusOK))

		refused := func(why string) OmegaMatcher {
			return SatisfyAll(HaveField("Phase", funnelv1.DeliveryFailed), HaveField("ResponseCode", int32(0)),
				HaveField("LastError", "address not allowed: "+why))
		}
		Eventually(event(t.ns, moveIn())).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseFailed), HaveField("Status.Deliveries", ConsistOf(
			SatisfyAll(HaveField("Subscription", "apiserver"), refused("the Kubernetes API server")),
			SatisfyAll(HaveField("Subscription", "apiserver-elsewhere"), refused("the Kubernetes API server")),
			SatisfyAll(HaveField("Subscription", "metrics"), refused("the operator's own port")),
			SatisfyAll(HaveField("Subscription", "probes"), refused("the operator's own port")),
			SatisfyAll(HaveField("Subscription", "receiver"), refused("the operator's own port")),
			SatisfyAll(HaveField("Subscription", "allowed"), HaveField("Phase", funnelv1.DeliverySucceeded))))))
		Expect(allowed.Len()).To(Equal(1), "what the admin opened is reachable")
		Expect(theEvent(t)(Default).Name).To(Equal(moveIn()), "the operator did not post to its own receiver")
	})

	DescribeTable("cannot replace the operator's headers, nor set a timeout past the cap",
		func(action funnelv1.HTTPAction, want string) {
			t := newTenant("headers", subscriber...)
			action.URL = "http://pms.example"
			err := t.client.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "override"},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &action}}})
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("the idempotency key, in any case", funnelv1.HTTPAction{Headers: []funnelv1.HTTPHeader{{Name: "idempotency-KEY", Value: "x"}}},
			"header idempotency-KEY is reserved"),
		Entry("the event's identity", funnelv1.HTTPAction{Headers: []funnelv1.HTTPHeader{{Name: "X-Funnel-Event-Id", Value: "1"}}},
			"header X-Funnel-Event-Id is reserved"),
		Entry("the signature, from a Secret", funnelv1.HTTPAction{HeadersFrom: []funnelv1.HTTPHeaderFromSecret{
			{Name: "X-Funnel-Operator-Signature", SecretRef: funnelv1.SecretKeyRef{Name: "s", Key: "k"}}}}, "header X-Funnel-Operator-Signature is reserved"),
		Entry("a timeout past a minute", funnelv1.HTTPAction{Timeout: &metav1.Duration{Duration: 10 * time.Minute}}, "at most 60s"),
	)
})
