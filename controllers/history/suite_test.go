package history_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/controllers/history"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// The history API as users reach it: a real kube-apiserver with the aggregation layer on,
// an APIService pointing at the history server on loopback, and a real PostgreSQL.

var (
	ctx    context.Context
	cancel context.CancelFunc
	cp     *harness.ControlPlane
	admin  client.Client
	store  *archive.Store
)

func TestHistory(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "History")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	DeferCleanup(cancel)

	db, err := harness.StartArchive(ctx)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(db.Stop()).To(Succeed()) })
	store = db.Store

	dir, err := os.MkdirTemp("", "history-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = os.RemoveAll(dir) })
	flags, err := harness.AggregationFlags(filepath.Join(dir, "front-proxy"))
	Expect(err).NotTo(HaveOccurred())
	cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir, APIServerFlags: flags})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	admin = cp.Client

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	var srv *history.Server
	// The API server publishes its front-proxy CA a moment after it is up.
	Eventually(func() error {
		srv, err = history.NewServer(history.Options{Listener: ln, Kubeconfig: cp.Kubeconfig,
			DNSNames: []string{harness.HistoryServiceName}}, store)
		return err
	}).Should(Succeed())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(srv.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() { cancel(); <-done })

	By("registering the history API with the aggregation layer, as config/history does")
	port := int32(ln.Addr().(*net.TCPAddr).Port)
	Expect(harness.RegisterHistoryAPI(ctx, admin, port, srv.ServingCertificate(), 30*time.Second)).To(Succeed())
})
