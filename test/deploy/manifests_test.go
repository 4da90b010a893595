package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var _ = Describe("config/default", func() {
	BeforeEach(func() {
		// A dry run persists nothing, so the namespace the manifests go to must exist.
		err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "funnel-system"}})
		if !apierrors.IsAlreadyExists(err) {
			Expect(err).NotTo(HaveOccurred())
		}
	})

	It("is accepted by the API server, every object of it", func() {
		out, err := testenv.Kubectl(env, "apply", "--dry-run=server", "-k", filepath.Join(testenv.Root(), "config", "default"))
		Expect(err).NotTo(HaveOccurred(), out)
		for _, obj := range []string{
			"namespace/funnel-system",
			"customresourcedefinition.apiextensions.k8s.io/funnelevents.funnel.leasing.dev",
			"customresourcedefinition.apiextensions.k8s.io/funnelreceivers.funnel.leasing.dev",
			"customresourcedefinition.apiextensions.k8s.io/funnelsubscriptions.funnel.leasing.dev",
			"serviceaccount/funnel-operator",
			"role.rbac.authorization.k8s.io/funnel-operator-leader-election",
			"clusterrole.rbac.authorization.k8s.io/funnel-operator",
			"rolebinding.rbac.authorization.k8s.io/funnel-operator-leader-election",
			"clusterrolebinding.rbac.authorization.k8s.io/funnel-operator",
			"service/funnel-webhook",
			"service/funnel-operator-metrics",
			"deployment.apps/funnel-operator",
			"poddisruptionbudget.policy/funnel-operator",
			"networkpolicy.networking.k8s.io/funnel-operator",
			"validatingadmissionpolicy.admissionregistration.k8s.io/funnel-subscription-service-account",
			"validatingadmissionpolicybinding.admissionregistration.k8s.io/funnel-subscription-service-account",
			"validatingadmissionpolicy.admissionregistration.k8s.io/funnel-events-from-the-receiver",
			"validatingadmissionpolicybinding.admissionregistration.k8s.io/funnel-events-from-the-receiver",
		} {
			// Created, or configured/unchanged where the test control plane already has it
			// (the CRDs; the RBAC when the RBAC spec ran first).
			Expect(out).To(MatchRegexp(`(?m)^%s (created|configured|unchanged) \(server dry run\)$`, regexp.QuoteMeta(obj)), "%s missing from:\n%s", obj, out)
		}
	})

	It("runs a Deployment the restricted Pod Security level admits, with two replicas and probes", func() {
		out, err := testenv.Kubectl(env, "kustomize", filepath.Join(testenv.Root(), "config", "default"))
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("replicas: 2"))
		Expect(out).To(ContainSubstring("--leader-elect"))
		Expect(out).To(ContainSubstring("readOnlyRootFilesystem: true"))
		Expect(out).To(ContainSubstring("minAvailable: 1"))
		Expect(out).To(ContainSubstring("pod-security.kubernetes.io/enforce: restricted"))
		// The namespace enforces "restricted": a server-side dry run of the Deployment's
		// Pod template in such a namespace is what the admission plugin would say.
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restricted-check",
			Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}})).To(Succeed())
		pod := podOf(out)
		pod = strings.ReplaceAll(pod, "namespace: funnel-system", "namespace: restricted-check")
		path := filepath.Join(GinkgoT().TempDir(), "pod.yaml")
		Expect(os.WriteFile(path, []byte(pod), 0o600)).To(Succeed())
		out, err = testenv.Kubectl(env, "apply", "--dry-run=server", "-f", path)
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).NotTo(ContainSubstring("Warning"))
	})

	It("makes the samples acceptable too", func() {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "samples"}})).To(Succeed())
		out, err := testenv.Kubectl(env, "apply", "--dry-run=server", "-n", "samples", "-k", filepath.Join(testenv.Root(), "config", "samples"))
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(strings.Count(out, "(server dry run)")).To(Equal(9), "the ServiceAccount, Role and RoleBinding of the subscriptions, and six samples")
	})

	It("installs as a kubectl plugin: kubectl finds kubectl-funnel on PATH", func() {
		bin := GinkgoT().TempDir()
		build := exec.Command("go", "build", "-o", filepath.Join(bin, "kubectl-funnel"), "./cmd/kubectl-funnel")
		build.Dir = testenv.Root()
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		GinkgoT().Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		got, err := testenv.Kubectl(env, "plugin", "list")
		Expect(err).NotTo(HaveOccurred(), got)
		Expect(got).To(ContainSubstring(filepath.Join(bin, "kubectl-funnel")))
		got, err = testenv.Kubectl(env, "funnel", "--help")
		Expect(err).NotTo(HaveOccurred(), got)
		for _, cmd := range []string{"send", "replay", "stats", "tail"} {
			Expect(got).To(ContainSubstring(cmd))
		}
	})
})

// podOf turns the Deployment of a rendered kustomization into a bare Pod manifest.
func podOf(rendered string) string {
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if !strings.Contains(doc, "kind: Deployment") {
			continue
		}
		i := strings.Index(doc, "  template:\n")
		Expect(i).To(BeNumerically(">", 0))
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: Pod\n")
		for _, line := range strings.Split(doc[i+len("  template:\n"):], "\n") {
			if strings.HasPrefix(line, "    ") {
				b.WriteString(strings.TrimPrefix(line, "    ") + "\n")
			}
		}
		pod := b.String()
		return strings.Replace(pod, "metadata:\n", "metadata:\n  name: check\n  namespace: funnel-system\n", 1)
	}
	Fail("no Deployment in the rendered manifests")
	return ""
}
