package controllers_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// The samples are what a new user applies first: they must be accepted by the API
// server, and become Ready once the Secrets their comments ask for exist.
var _ = Describe("config/samples", func() {
	It("are valid, and Ready once their Secrets exist", func() {
		ns, err := testenv.NewNamespace(ctx, k8s, "samples")
		Expect(err).NotTo(HaveOccurred())
		files, err := filepath.Glob(filepath.Join(testenv.Root(), "config", "samples", "funnel_*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(7))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for doc := range strings.SplitSeq(string(raw), "\n---\n") {
				obj := &unstructured.Unstructured{}
				Expect(yaml.Unmarshal([]byte(doc), &obj.Object)).To(Succeed(), f)
				obj.SetNamespace(ns)
				Expect(k8s.Create(ctx, obj)).To(Succeed(), f)
			}
		}

		Eventually(subscriptionReady(ns, "pms-sync-approved")).Should(SatisfyAll(
			HaveField("Reason", funnelv1.ReasonSecretNotFound), HaveField("Message", ContainSubstring(`"pms-sync"`))))
		Eventually(subscriptionReady(ns, "move-in-charges")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Eventually(subscriptionReady(ns, "crm-prospects")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Eventually(subscriptionReady(ns, "leasing-broker")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Eventually(subscriptionReady(ns, "crm-application-timeline")).Should(HaveField("Reason", funnelv1.ReasonReady))

		for name, data := range map[string]map[string]string{
			"pms-sync":              {"signing-key": whsec("old key"), "signing-key-next": whsec("new key"), "api-key": "Bearer k"},
			"funnel-receiver-token": {"token": strings.Repeat("t", 32)},
		} {
			Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data})).To(Succeed())
		}
		Eventually(subscriptionReady(ns, "pms-sync-approved")).Should(HaveField("Reason", funnelv1.ReasonReady))
		awaitReceiver(ns, funnelv1.ReasonAccepting)
	})
})
