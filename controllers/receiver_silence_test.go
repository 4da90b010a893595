package controllers_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var _ = Describe("Silence metrics", func() {
	It("say per receiver when this replica last answered a request and last accepted an event, until the receiver is deleted", func() {
		ns, err := testenv.NewNamespace(ctx, k8s, "silence")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-token"},
			Data:       map[string][]byte{"token": []byte(token)},
		})).To(Succeed())
		rcv := &funnelv1.FunnelReceiver{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
			Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
				SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "token"},
			}}},
		}
		Expect(k8s.Create(ctx, rcv)).To(Succeed())
		awaitReceiver(ns, funnelv1.ReasonAccepting)
		path := "/webhooks/" + ns + "/funnel"
		series := map[string]string{"receiver": ns + "/funnel"}
		lastRequest := func() float64 { return metricValue("funnel_webhook_last_request_timestamp_seconds", series) }
		lastAccepted := func() float64 { return metricValue("funnel_webhook_last_accepted_timestamp_seconds", series) }
		created := float64(rcv.CreationTimestamp.Unix())

		By("starting at the receiver's creation time")
		Eventually(lastRequest).Should(Equal(created))
		Expect(lastAccepted()).To(Equal(created))

		By("counting a refused request as a request only")
		// creationTimestamp has whole seconds: any moment after the create is later than it.
		before := float64(time.Now().UnixNano()) / 1e9
		Expect(post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), map[string]string{"Authorization": "Bearer wrong"}).code).
			To(Equal(http.StatusUnauthorized))
		Expect(lastRequest()).To(BeNumerically(">=", before))
		Expect(lastAccepted()).To(Equal(created))

		By("moving both with an acknowledged event")
		before = float64(time.Now().UnixNano()) / 1e9
		Expect(post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil).code).To(Equal(http.StatusOK))
		Expect(lastAccepted()).To(BeNumerically(">=", before))
		Expect(lastRequest()).To(Equal(lastAccepted()))

		By("dropping both series when the receiver is deleted")
		Expect(k8s.Delete(ctx, rcv)).To(Succeed())
		Eventually(lastRequest).Should(BeZero())
		Expect(lastAccepted()).To(BeZero())
		Expect(post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil).code).To(Equal(http.StatusNotFound))
		Expect(lastRequest()).To(BeZero(), "a request for a deleted receiver does not bring its series back")
	})
})
