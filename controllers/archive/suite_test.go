package archive_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// A real API server and a real PostgreSQL; each spec gets its own namespace and database,
// runs its own archivers, and finishes its events itself with the status patch the event
// controllers would write (the archive does not care who wrote it).

var (
	env    *envtest.Environment
	cfg    *rest.Config
	k8s    client.WithWatch
	ctx    context.Context
	cancel context.CancelFunc
	pg     *harness.Postgres

	databases atomic.Int32
)

func TestArchive(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Archive")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())

	var err error
	pg, err = harness.StartPostgres(ctx, harness.PostgresOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(pg.Stop()).To(Succeed()) })

	env, cfg, _, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	Expect(err).NotTo(HaveOccurred())

	DeferCleanup(func() {
		cancel()
		Expect(env.Stop()).To(Succeed())
	})
})

// newDatabase creates an empty database for one spec and returns its URL.
func newDatabase() string {
	GinkgoHelper()
	url, err := pg.CreateDatabase(ctx, fmt.Sprintf("spec_%d", databases.Add(1)))
	Expect(err).NotTo(HaveOccurred())
	return url
}
