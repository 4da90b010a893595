// Package reliability proves the operator's promise under faults, bad input and attack:
// nothing acknowledged to Funnel is ever lost. Every scenario drives real processes (a
// local kube-apiserver and etcd, the operator binary) over loopback, bounded in time and
// in requests. The fast scenarios run in `make test`; RELIABILITY_LONG=1 (make
// test-reliability) adds the long ones and larger loads. See docs/reliability.md.
package reliability_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/test/harness"
)

// operatorUser is the ServiceAccount config/rbac binds; the API server audits its requests.
const operatorUser = "system:serviceaccount:funnel-system:funnel-operator"

var (
	ctx         context.Context
	cp          *harness.ControlPlane
	k8s         client.Client
	operatorBin string
	workDir     string
)

// long reports whether the long scenarios and loads run (RELIABILITY_LONG=1).
func long() bool { return os.Getenv("RELIABILITY_LONG") == "1" }

// size picks the fast or the long figure.
func size(fast, full int) int {
	if long() {
		return full
	}
	return fast
}

// requireLong skips a scenario that only runs with RELIABILITY_LONG=1.
func requireLong() {
	if !long() {
		Skip("long scenario: RELIABILITY_LONG=1 (make test-reliability) runs it")
	}
}

func TestReliability(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Reliability")
}

var _ = SynchronizedBeforeSuite(func() {}, func() {
	ctx = context.Background()
	var err error
	workDir, err = os.MkdirTemp("", "funnel-reliability-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		if os.Getenv("RELIABILITY_KEEP") == "1" {
			GinkgoWriter.Printf("Kept the working directory (logs, audit log): %s\n", workDir)
			return
		}
		Expect(os.RemoveAll(workDir)).To(Succeed())
	})

	By("building the operator")
	operatorBin, err = harness.BuildOperator(workDir)
	Expect(err).NotTo(HaveOccurred())

	By("starting the control plane")
	cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{
		Dir:         filepath.Join(workDir, "cluster"),
		AuditPolicy: harness.AuditPolicyFor(operatorUser),
		// Jobs are created by subscriptions' ServiceAccounts, which have no "update" on
		// funnelevents/finalizers: the plugin must let them (no blockOwnerDeletion).
		APIServerFlags: map[string]string{"enable-admission-plugins": "OwnerReferencesPermissionEnforcement"},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	k8s = cp.Client
})

var _ = ReportAfterSuite("results", func(r Report) {
	printResults(r)
})
