package backfill_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/controllers/backfill"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// A real API server and PostgreSQL; each spec runs the backfill controller itself
// (startBackfills), so that it can stop and start it as an operator restart would.

var (
	env   *envtest.Environment
	cfg   *rest.Config
	k8s   client.Client
	ctx   context.Context
	store *archive.Store
)

func TestBackfill(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Backfill")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var cancel context.CancelFunc
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)
	db, err := harness.StartArchive(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(db.Stop()).To(Succeed()) })
	store = db.Store
	env, cfg, k8s, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(env.Stop()).To(Succeed()) })
})

// startBackfills runs the backfill controller as the operator's leader does, with the
// deliveries' own router (loopback allowed: the sinks are there), until stop.
func startBackfills() (stop func()) {
	GinkgoHelper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	actAs, err := identity.New(mgr.GetConfig(), mgr.GetScheme(), mgr.GetRESTMapper(), "")
	Expect(err).NotTo(HaveOccurred())
	router := &delivery.Router{Client: mgr.GetClient(), Identity: actAs, Scheme: mgr.GetScheme(),
		HTTP:  delivery.NewHTTPClient(delivery.NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)),
		Clock: clock.RealClock{}}
	Expect((&backfill.Reconciler{Client: mgr.GetClient(), Archive: store, Deliverer: router,
		ProgressInterval: 100 * time.Millisecond}).SetupWithManager(mgr)).To(Succeed())
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	DeferCleanup(stop)
	return stop
}
