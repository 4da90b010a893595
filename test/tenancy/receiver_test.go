package tenancy_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// hmacReceiver has the tenant create its FunnelReceiver "funnel", authenticated by HMAC
// only, with a key in a Secret the platform team made; it returns the key.
func hmacReceiver(t *tenant, rl *funnelv1.RateLimit) []byte {
	GinkgoHelper()
	key := harness.RandomSecret()
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "funnel-hmac"},
		StringData: map[string]string{"key": key}})).To(Succeed())
	Expect(t.client.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: t.ns, Name: "funnel"},
		Spec: funnelv1.FunnelReceiverSpec{RateLimit: rl, Auth: funnelv1.ReceiverAuth{HMAC: &funnelv1.HMACAuth{
			SecretRef: funnelv1.SecretKeyRef{Name: "funnel-hmac", Key: "key"}}}}})).To(Succeed())
	return []byte(key)
}

// receiverReady waits until the operator reports the namespace's receiver Ready.
func receiverReady(ns string) {
	GinkgoHelper()
	Expect(harness.WaitReceiverReady(ctx, k8s, client.ObjectKey{Namespace: ns, Name: "funnel"}, 30*time.Second)).To(Succeed())
}

// forger signs with a key that is not the receiver's.
var forger = send.Auth{HMACKey: []byte("not-the-receiver's-key")}

var _ = Describe("Whoever can reach a tenant's receiver URL", func() {
	It("cannot lock Funnel out with bad signatures: the genuine signed request after them is stored", func() {
		t := newTenant("locked-out", subscriber...)
		key := hmacReceiver(t, &funnelv1.RateLimit{RequestsPerSecond: 1, Burst: 1})
		op := startOperator(t.ns)
		receiverReady(t.ns)

		body := exampleBody("v3-lease.move_in.json")
		for range 5 {
			Expect(postBody(op, t.ns, forger, body)).To(Equal(http.StatusUnauthorized))
		}
		Expect(postBody(op, t.ns, send.Auth{HMACKey: key}, body)).To(Equal(http.StatusOK), "Funnel's request, right after 5 bad ones")
		Eventually(event(t.ns, moveIn())).Should(HaveField("Spec.Type", "lease.move_in"))
	})

	It("holds a slot for at most a second with a slow unauthenticated body, and cannot take another tenant's receiver's slots", func() {
		flooded, neighbour := newTenant("flooded", subscriber...), newTenant("neighbour", subscriber...)
		hmacReceiver(flooded, nil)
		token := openReceiver(neighbour.ns)
		// 4 requests in flight, 2 per receiver: a flood of 4 is a flood of hundreds.
		op := startOperatorFor([]string{flooded.ns, neighbour.ns}, "--webhook-max-in-flight=4", "--webhook-max-in-flight-per-receiver=2")
		receiverReady(flooded.ns)
		receiverReady(neighbour.ns)

		// Each round floods the flooded tenant's receiver with as many slow bodies as the
		// whole server takes, then the neighbour's Funnel posts. A round counts when the
		// neighbour's request arrived while the slow bodies were held (they are answered
		// after a second); under load a round may miss that, and another is tried.
		Eventually(func(g Gomega) {
			start := time.Now()
			var slow []*harness.SlowBody
			for range 4 {
				b, err := harness.StartSlowBody(op.WebhookURL(flooded.ns, "funnel"))
				g.Expect(err).NotTo(HaveOccurred())
				defer b.Close()
				slow = append(slow, b)
			}
			sent := time.Since(start)
			code := postBody(op, neighbour.ns, send.Auth{Token: token}, moveInNumber(int(start.UnixNano()%1e9)))
			var codes []int
			var held []time.Duration
			for _, b := range slow {
				c, took := b.Answer()
				codes = append(codes, c)
				if c != http.StatusServiceUnavailable {
					held = append(held, took)
				}
			}
			g.Expect(sent).To(BeNumerically("<", 500*time.Millisecond), "the neighbour's request came while the slow bodies were held")
			g.Expect(code).To(Equal(http.StatusOK), "the neighbour's Funnel is answered")
			g.Expect(codes).To(ConsistOf(http.StatusRequestTimeout, http.StatusRequestTimeout, http.StatusServiceUnavailable, http.StatusServiceUnavailable),
				"2 slow bodies held until the short deadline, the rest shed")
			g.Expect(held).To(HaveEach(BeNumerically("<", 2*time.Second)), "answered by the short deadline for unauthenticated bodies, not the 3 s answer deadline")
		}).Should(Succeed())
	})
})
