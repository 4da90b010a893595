// Package tenancy tries the attacks of a shared cluster the way tenants with narrow Roles
// would, against the operator as installed: a real API server with
// OwnerReferencesPermissionEnforcement and the admission policies of config/policies, the
// operator binary with exactly the RBAC of config/rbac (a token of its ServiceAccount),
// and tenants who act through the API server with their own Roles. Every spec fails if
// the protection it checks is removed. docs/security.md lists the attacks and results.
//
// To add an attack: newTenant gives a namespace and a client acting as a user with the
// Role you pass (subscriber and eventCreator are the usual ones), startOperator runs the
// operator for that namespace, openReceiver gives it a receiver to post events to.
package tenancy_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// operatorUser is the ServiceAccount config/rbac binds and the policies name.
const operatorUser = "system:serviceaccount:funnel-system:funnel-operator"

var (
	ctx context.Context
	cp  *harness.ControlPlane
	// k8s is the cluster admin (the platform team).
	k8s client.Client
	// operatorBin is the manager binary; operatorKubeconfig holds only a token of its
	// ServiceAccount.
	operatorBin, operatorKubeconfig string
	workDir                         string
)

func TestTenancy(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Tenancy")
}

var _ = BeforeSuite(func() {
	ctx = context.Background()
	var err error
	workDir, err = os.MkdirTemp("", "funnel-tenancy-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(os.RemoveAll(workDir)).To(Succeed()) })

	By("building the operator")
	operatorBin, err = harness.BuildOperator(workDir)
	Expect(err).NotTo(HaveOccurred())

	By("starting the control plane, with the admission plugin production clusters run")
	cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{
		Dir:            filepath.Join(workDir, "cluster"),
		AuditPolicy:    harness.AuditPolicyFor(operatorUser),
		APIServerFlags: map[string]string{"enable-admission-plugins": "OwnerReferencesPermissionEnforcement"},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	k8s = cp.Client

	By("installing config/rbac, and a kubeconfig with a token of the operator's ServiceAccount and nothing else")
	token, err := testenv.OperatorToken(ctx, cp.Env())
	Expect(err).NotTo(HaveOccurred())
	operatorKubeconfig = filepath.Join(workDir, "operator.kubeconfig")
	Expect(cp.WriteTokenKubeconfig(operatorKubeconfig, "funnel-operator", token)).To(Succeed())

	By("making the operator's seal key now, while no event is stored: no grace for events without seals")
	_, err = receiver.LoadSealer(ctx, k8s, k8s, types.NamespacedName{Namespace: "funnel-system", Name: receiver.DefaultSealKeySecret}, time.Now())
	Expect(err).NotTo(HaveOccurred())

	By("installing config/policies")
	out, err := testenv.Kubectl(cp.Env(), "apply", "-k", filepath.Join(testenv.Root(), "config", "policies"))
	Expect(err).NotTo(HaveOccurred(), out)

	By("waiting until the policies are in force")
	Eventually(func() error {
		return k8s.Create(ctx, forgedEvent("default", "evt-probe"), client.DryRunAll)
	}).Should(MatchError(ContainSubstring("FunnelEvents are created only by")))
	probe := newTenant("probe", subscriber...)
	Eventually(func() error {
		return probe.client.Create(ctx, subscription(probe.ns, "probe", "default"), client.DryRunAll)
	}).Should(MatchError(ContainSubstring("may not impersonate")))
})
