package controllers_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// The manager runs with every controller against a real API server; specs act through a
// direct (uncached) client, as a user would, and wait for the outcome with Eventually.

var (
	env    *envtest.Environment
	cfg    *rest.Config
	k8s    client.Client
	ctx    context.Context
	cancel context.CancelFunc

	// webhookURL is the base URL of the manager's webhook receiver.
	webhookURL string
	// mgrCache is the manager's cache, for specs that run a receiver of their own.
	mgrCache cache.Cache
	// mgrRecorder is the manager's Event recorder, for specs that run a reconciler of their own.
	mgrRecorder recorder.EventRecorder
	// mgrSecrets reads the receivers' Secrets, as the manager's receiver does.
	mgrSecrets *receiver.Secrets
	// sealKeySecret holds the manager's seal key (created by the manager).
	sealKeySecret = types.NamespacedName{Namespace: metav1.NamespaceDefault, Name: receiver.DefaultSealKeySecret}
	// spans records every span the manager ends (tracing is on in this suite).
	spans *tracetest.SpanRecorder
)

// withoutSteppedEvents keeps the events of steppedReceiver out of the manager's cache, so
// its controllers never process them: specs do, pass by pass (a stepper).
func withoutSteppedEvents(opts cache.Options) cache.Options {
	notStepped, err := labels.NewRequirement(funnelv1.LabelReceiver, selection.NotEquals, []string{steppedReceiver})
	Expect(err).NotTo(HaveOccurred())
	for obj, by := range opts.ByObject {
		if _, ok := obj.(*funnelv1.FunnelEvent); ok {
			by.Label = labels.NewSelector().Add(*notStepped)
			opts.ByObject[obj] = by
		}
	}
	return opts
}

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	// CI machines are small and shared: give the API server and controllers time.
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Controllers")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())

	var err error
	env, cfg, k8s, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  testenv.Scheme(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   withoutSteppedEvents(controllers.CacheOptions(nil)),
	})
	Expect(err).NotTo(HaveOccurred())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	webhookURL = "http://" + ln.Addr().String()
	// Secrets are not watched: a short refresh keeps the specs quick.
	mgrSecrets = receiver.NewSecrets(mgr.GetAPIReader(), mgr.GetCache(), 200*time.Millisecond)
	spans = tracetest.NewSpanRecorder()
	traces := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	Expect(controllers.Setup(ctx, mgr, controllers.Options{
		SealKeySecret:   sealKeySecret,
		ReceiverSecrets: mgrSecrets,
		ExternalURL:     "https://funnel.example.com",
		Webhook:         receiver.Options{Listener: ln, Policy: receiver.Policy{AllowInsecure: true}},
		StatsInterval:   200 * time.Millisecond,
		// Secrets and RBAC are not watched: a short recheck keeps the specs quick.
		SubscriptionRecheck: 300 * time.Millisecond,
		// Test targets listen on 127.0.0.1; other loopback addresses stay refused.
		DeliveryAllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		Tracing:            tracing.New(traces),
	})).To(Succeed())
	mgrCache = mgr.GetCache()
	mgrRecorder = mgr.GetEventRecorder("funnel-operator")

	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() {
		cancel()
		<-done
		Expect(traces.Shutdown(context.Background())).To(Succeed())
		Expect(env.Stop()).To(Succeed())
	})
})
