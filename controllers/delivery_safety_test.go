package controllers_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// tenantClient is a user who may manage FunnelSubscriptions and read FunnelEvents and
// Events in ns, and nothing else: no Secrets, Jobs, Pods or Services.
func tenantClient(ns, user string) client.Client {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{funnelv1.GroupVersion.Group}, Resources: []string{"funnelsubscriptions"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{funnelv1.GroupVersion.Group}, Resources: []string{"funnelevents"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		}})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(as, client.Options{Scheme: testenv.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// listenOn starts a target on addr that counts the requests it gets.
func listenOn(addr string) (url string, hits func() int) {
	GinkgoHelper()
	t := newSinkOn(addr, http.StatusInternalServerError)
	return t.URL, func() int { return len(t.got()) }
}

// nonLoopbackAddress is an address of this machine other than loopback: the operator's
// own address as far as the test manager is concerned.
func nonLoopbackAddress() (netip.Addr, bool) {
	addrs, err := net.InterfaceAddrs()
	Expect(err).NotTo(HaveOccurred())
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.(*net.IPNet).IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// The attacks of a tenant who may create FunnelSubscriptions in its namespace: make the
// operator connect where the tenant itself cannot, and read the answer back through the
// event's status, its Events or a dead letter. The test manager allows 127.0.0.1 only
// (its targets live there), as an admin would open a range with --delivery-allow-cidrs.
var _ = Describe("Delivery safety against a tenant", func() {
	var ns, path string
	var tenant client.Client
	const approved = "evt-8932127"

	BeforeEach(func() {
		ns, path = openReceiverNamespace("tenant")
		tenant = tenantClient(ns, "tenant-"+ns)
	})

	// subscribeAs creates the tenant's subscription and waits until it is Ready.
	subscribeAs := func(name string, spec funnelv1.FunnelSubscriptionSpec) {
		GinkgoHelper()
		Expect(tenant.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
		Eventually(subscriptionReady(ns, name)).Should(HaveField("Reason", funnelv1.ReasonReady))
	}
	// tenantSees is the event as the tenant reads it.
	tenantSees := func(g Gomega) funnelv1.FunnelEvent {
		var ev funnelv1.FunnelEvent
		g.Expect(tenant.Get(ctx, client.ObjectKey{Namespace: ns, Name: approved}, &ev)).To(Succeed())
		return ev
	}
	funnelSends := func() {
		GinkgoHelper()
		a := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)
	}

	DescribeTable("refuses at connect time the addresses an admin did not allow, and says why",
		func(target func() (url string, hits func() int), reason string) {
			url, hits := target()
			subscribeAs("ssrf", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: url, Timeout: &metav1.Duration{Duration: 2 * time.Second}}}})
			funnelSends()

			Eventually(tenantSees).Should(SatisfyAll(finished(funnelv1.PhaseFailed),
				HaveField("Status.Deliveries", ConsistOf(SatisfyAll(
					HaveField("Phase", funnelv1.DeliveryFailed), HaveField("Attempts", int32(1)),
					HaveField("ResponseCode", int32(0)), HaveField("LastError", "address not allowed: "+reason))))))
			Expect(hits()).To(BeZero(), "the target must not have been reached")
		},
		Entry("another loopback address", func() (string, func() int) { return listenOn("127.0.0.2:0") }, "loopback"),
		Entry("the operator's own address, on any port", func() (string, func() int) {
			ip, ok := nonLoopbackAddress()
			if !ok {
				Skip("this machine has no address but loopback")
			}
			return listenOn(netip.AddrPortFrom(ip, 0).String())
		}, "the operator's own address"),
		Entry("the cloud metadata endpoint", func() (string, func() int) {
			return "http://169.254.169.254/latest/meta-data/iam/security-credentials/", func() int { return 0 }
		}, "cloud metadata"),
		// A listener on every interface: its URL is http://0.0.0.0:port.
		Entry("unspecified, which Linux connects to the local host", func() (string, func() int) { return listenOn("0.0.0.0:0") }, "unspecified"),
	)

	It("never copies a target's answer into status, Events or the dead letter", func() {
		const secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI"
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", "http://internal/"+secret)
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(secret))
		}))
		DeferCleanup(target.Close)
		dlq := newSink(http.StatusOK)
		subscribeAs("read-back", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: dlq.URL}}}})
		funnelSends()

		Eventually(tenantSees).Should(SatisfyAll(finished(funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("ResponseCode", int32(400)),
				HaveField("LastError", "HTTP 400 Bad Request"), HaveField("DeadLetter.Phase", funnelv1.DeliverySucceeded))))))
		ev := tenantSees(Default)
		status, err := json.Marshal(ev.Status)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(status)).NotTo(ContainSubstring(secret))

		Eventually(kubeEvents(ns, approved)).Should(ContainElement(HaveField("Reason", "DeliveryFailed")))
		for _, e := range kubeEvents(ns, approved)(Default) {
			Expect(e.Note).NotTo(ContainSubstring(secret))
		}
		Expect(dlq.got()).To(HaveLen(1))
		Expect(string(dlq.got()[0].body)).To(ContainSubstring(`"lastError":"HTTP 400 Bad Request"`))
		Expect(string(dlq.got()[0].body)).NotTo(ContainSubstring(secret))
	})

	// Fairness: deliveries run in their own executor, at most a share of it per namespace,
	// so one tenant's slow targets hold neither the event controllers' workers nor
	// everybody's delivery slots. 20 events of one family to a hanging endpoint are more
	// than that family's workers (16): without the executor, they would keep the other
	// namespace's event of the same family Pending until they time out.
	It("keeps one namespace's hanging endpoints from holding another namespace's events", func() {
		var inFlight atomic.Int32
		release := make(chan struct{})
		hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inFlight.Add(1)
			defer inFlight.Add(-1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		DeferCleanup(hanging.Close)
		DeferCleanup(func() { close(release) })
		subscribeAs("slow", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: hanging.URL, Timeout: &metav1.Duration{Duration: time.Minute}}},
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(0))}})
		body := string(example("classic-lease_transaction.status_updated.json"))
		for i := range 20 {
			a := post(webhookURL, path, []byte(strings.Replace(body, "8932127", fmt.Sprint(7000000+i), 1)), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
		}
		Eventually(inFlight.Load).Should(BeNumerically(">=", 16), "the greedy namespace's attempts hang")

		other, otherPath := openReceiverNamespace("other")
		target := newSink(http.StatusOK)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "fast"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}}})).To(Succeed())
		Eventually(subscriptionReady(other, "fast")).Should(HaveField("Reason", funnelv1.ReasonReady))
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
		Expect(inFlight.Load()).To(BeNumerically(">=", 16), "the other namespace was served while the greedy one still hung")
	})

	DescribeTable("refuses at admission headers that would override the operator's, and unbounded timeouts",
		func(action funnelv1.HTTPAction, want string) {
			action.URL = "http://pms.example"
			err := tenant.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "override"},
				Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &action}}})
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("the idempotency key, in any case", funnelv1.HTTPAction{Headers: []funnelv1.HTTPHeader{{Name: "idempotency-KEY", Value: "x"}}},
			"header idempotency-KEY is reserved"),
		Entry("the signature, from a Secret", funnelv1.HTTPAction{HeadersFrom: []funnelv1.HTTPHeaderFromSecret{
			{Name: "X-Funnel-Operator-Signature", SecretRef: funnelv1.SecretKeyRef{Name: "s", Key: "k"}}}}, "header X-Funnel-Operator-Signature is reserved"),
		Entry("a timeout past the cap", funnelv1.HTTPAction{Timeout: &metav1.Duration{Duration: 10 * time.Minute}}, "at most 60s"),
	)
})
