package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var _ = Describe("FunnelReceiver readiness", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "rcv")
		Expect(err).NotTo(HaveOccurred())
	})

	// readyCondition returns the receiver's current Ready condition, as kubectl shows it.
	readyCondition := func(name string) func(Gomega) metav1.Condition {
		return func(g Gomega) metav1.Condition {
			var rcv funnelv1.FunnelReceiver
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rcv)).To(Succeed())
			c := meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionReady)
			g.Expect(c).NotTo(BeNil(), "no Ready condition yet")
			g.Expect(c.ObservedGeneration).To(Equal(rcv.Generation), "Ready condition is stale")
			return *c
		}
	}
	haveReady := func(status metav1.ConditionStatus, reason string) OmegaMatcher {
		return SatisfyAll(HaveField("Status", status), HaveField("Reason", reason))
	}
	tokenReceiver := func(name string) *funnelv1.FunnelReceiver {
		return &funnelv1.FunnelReceiver{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
				SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "token"},
			}}},
		}
	}

	It("is not Ready without authentication, and says how to fix it", func() {
		Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "open"}})).To(Succeed())
		Eventually(readyCondition("open")).Should(SatisfyAll(
			haveReady(metav1.ConditionFalse, funnelv1.ReasonNoAuth),
			HaveField("Message", ContainSubstring("insecureSkipAuth"))))
	})

	It("is Ready with insecureSkipAuth, with its webhook path and URL", func() {
		Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "open"},
			Spec:       funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true}},
		})).To(Succeed())
		Eventually(readyCondition("open")).Should(haveReady(metav1.ConditionTrue, funnelv1.ReasonAccepting))
		var rcv funnelv1.FunnelReceiver
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "open"}, &rcv)).To(Succeed())
		Expect(rcv.Status.WebhookPath).To(Equal("/webhooks/" + ns + "/open"))
		Expect(rcv.Status.URL).To(Equal("https://funnel.example.com/webhooks/" + ns + "/open"))
		Expect(rcv.Status.ObservedGeneration).To(Equal(rcv.Generation))
	})

	It("follows its token Secret: missing, key missing, present, deleted", func() {
		Expect(k8s.Create(ctx, tokenReceiver("funnel"))).To(Succeed())
		Eventually(readyCondition("funnel")).Should(SatisfyAll(
			haveReady(metav1.ConditionFalse, funnelv1.ReasonSecretNotFound),
			HaveField("Message", ContainSubstring(`"funnel-token"`))))

		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-token"},
			Data:       map[string][]byte{"other": []byte("x")},
		}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		Eventually(readyCondition("funnel")).Should(SatisfyAll(
			haveReady(metav1.ConditionFalse, funnelv1.ReasonSecretKeyMissing),
			HaveField("Message", ContainSubstring(`"token"`))))

		secret.Data["token"] = []byte("s3cret")
		Expect(k8s.Update(ctx, secret)).To(Succeed())
		Eventually(readyCondition("funnel")).Should(haveReady(metav1.ConditionTrue, funnelv1.ReasonAccepting))

		Expect(k8s.Delete(ctx, secret)).To(Succeed())
		Eventually(readyCondition("funnel")).Should(haveReady(metav1.ConditionFalse, funnelv1.ReasonSecretNotFound))
	})

	It("checks the HMAC Secret as well as the token Secret", func() {
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-token"},
			Data:       map[string][]byte{"token": []byte("s3cret")},
		})).To(Succeed())
		rcv := tokenReceiver("signed")
		rcv.Spec.Auth.HMAC = &funnelv1.HMACAuth{SecretRef: funnelv1.SecretKeyRef{Name: "funnel-hmac", Key: "key"}}
		Expect(k8s.Create(ctx, rcv)).To(Succeed())
		Eventually(readyCondition("signed")).Should(SatisfyAll(
			haveReady(metav1.ConditionFalse, funnelv1.ReasonSecretNotFound),
			HaveField("Message", ContainSubstring("spec.auth.hmac.secretRef"))))

		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-hmac"},
			Data:       map[string][]byte{"key": []byte("k3y")},
		})).To(Succeed())
		Eventually(readyCondition("signed")).Should(haveReady(metav1.ConditionTrue, funnelv1.ReasonAccepting))
	})

	It("is not Ready while suspended, and Ready again when resumed", func() {
		rcv := &funnelv1.FunnelReceiver{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "open"},
			Spec:       funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true}},
		}
		Expect(k8s.Create(ctx, rcv)).To(Succeed())
		Eventually(readyCondition("open")).Should(haveReady(metav1.ConditionTrue, funnelv1.ReasonAccepting))

		patch := client.MergeFrom(rcv.DeepCopy())
		rcv.Spec.Suspend = true
		Expect(k8s.Patch(ctx, rcv, patch)).To(Succeed())
		Eventually(readyCondition("open")).Should(haveReady(metav1.ConditionFalse, funnelv1.ReasonSuspended))

		patch = client.MergeFrom(rcv.DeepCopy())
		rcv.Spec.Suspend = false
		Expect(k8s.Patch(ctx, rcv, patch)).To(Succeed())
		Eventually(readyCondition("open")).Should(haveReady(metav1.ConditionTrue, funnelv1.ReasonAccepting))
	})
})
