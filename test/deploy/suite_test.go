// Package deploy checks the installation manifests against a real API server: every
// manifest of config/default is accepted (server-side dry run), and the operator works
// with exactly the RBAC of config/rbac.
package deploy_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var (
	env *envtest.Environment
	cfg *rest.Config
	k8s client.Client
	ctx context.Context
)

func TestDeploy(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "Deployment manifests")
}

var _ = BeforeSuite(func() {
	ctx = context.Background()
	var err error
	env, cfg, k8s, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
})
