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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/controllers/history"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
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

	pg, err := harness.StartPostgres(ctx, harness.PostgresOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(pg.Stop()).To(Succeed()) })
	store, err = archive.Open(ctx, pg.URL)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(store.Close)
	_, err = store.Migrate(ctx)
	Expect(err).NotTo(HaveOccurred())

	dir, err := os.MkdirTemp("", "history-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { _ = os.RemoveAll(dir) })
	flags, err := harness.AggregationFlags(filepath.Join(dir, "front-proxy"))
	Expect(err).NotTo(HaveOccurred())
	cp, err = harness.StartControlPlane(harness.ControlPlaneOptions{Dir: dir, APIServerFlags: flags})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { Expect(cp.Stop()).To(Succeed()) })
	scheme := testenv.Scheme()
	Expect(apiregistrationv1.AddToScheme(scheme)).To(Succeed())
	admin, err = client.New(cp.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	var srv *history.Server
	// The API server publishes its front-proxy CA a moment after it is up.
	Eventually(func() error {
		srv, err = history.NewServer(history.Options{Listener: ln, Kubeconfig: cp.Kubeconfig,
			DNSNames: []string{"funnel-history.funnel-system.svc"}}, store)
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
	Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "funnel-system"}})).To(Succeed())
	// No kube-proxy here: an ExternalName Service sends the API server to loopback.
	Expect(admin.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "funnel-system", Name: "funnel-history"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: port}}}})).To(Succeed())
	Expect(admin.Create(ctx, &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: historyv1.SchemeGroupVersion.Version + "." + historyv1.GroupName},
		Spec: apiregistrationv1.APIServiceSpec{Group: historyv1.GroupName, Version: historyv1.SchemeGroupVersion.Version,
			Service:  &apiregistrationv1.ServiceReference{Namespace: "funnel-system", Name: "funnel-history", Port: ptr.To(port)},
			CABundle: srv.ServingCertificate(), GroupPriorityMinimum: 1000, VersionPriority: 100},
	})).To(Succeed())
	Eventually(func(g Gomega) {
		var svc apiregistrationv1.APIService
		g.Expect(admin.Get(ctx, client.ObjectKey{Name: "v1alpha1." + historyv1.GroupName}, &svc)).To(Succeed())
		g.Expect(svc.Status.Conditions).To(ContainElement(And(HaveField("Type", apiregistrationv1.Available),
			HaveField("Status", apiregistrationv1.ConditionTrue))), "%v", svc.Status.Conditions)
	}).Should(Succeed())
})
