// Command manager runs the funnel-operator: the FunnelReceiver, FunnelEvent and
// FunnelSubscription controllers, and the webhook receiver Funnel Leasing posts to.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/history"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// archiveURLEnv names the environment variable with the archive's PostgreSQL connection
// string (from a Secret, see config/history): in the environment, not on the command
// line, where every process could read its password.
const archiveURLEnv = "FUNNEL_ARCHIVE_DATABASE_URL"

// config is everything the command line sets.
type config struct {
	metricsAddr             string
	probeAddr               string
	webhookAddr             string
	leaderElect             bool
	leaderElectionNamespace string
	namespaces              string
	sealKeySecret           string
	externalURL             string
	shutdownTimeout         time.Duration
	eventConcurrency        string
	retentionDeletes        float64
	apiQPS                  float64
	apiBurst                int
	pprofAddr               string
	maxInFlight             int
	maxInFlightPerReceiver  int
	allowInsecureReceivers  bool
	defaultServiceAccount   string
	deliveryAllowCIDRs      string
	deliveryConcurrency     int
	deliveryPerNamespace    int
	historyAddr             string
	historyCertDir          string
}

func main() {
	var cfg config
	flag.StringVar(&cfg.metricsAddr, "metrics-bind-address", ":8082", "Address the Prometheus metrics endpoint binds to; \"0\" disables it.")
	flag.StringVar(&cfg.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	flag.StringVar(&cfg.webhookAddr, "webhook-bind-address", ":8080", "Address the webhook receiver (POST /webhooks/{namespace}/{receiver}) binds to.")
	flag.BoolVar(&cfg.leaderElect, "leader-elect", false, "Elect a leader among replicas; reconcilers run on the leader only, the receiver on every replica.")
	flag.StringVar(&cfg.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (defaults to the pod's namespace).")
	flag.StringVar(&cfg.namespaces, "namespaces", "", "Comma-separated namespaces to watch; all namespaces when empty.")
	flag.StringVar(&cfg.externalURL, "external-url", "", "Public base URL of the receiver (e.g. https://funnel.example.com), shown in FunnelReceiver status.url.")
	flag.StringVar(&cfg.eventConcurrency, "event-concurrency", "", "Workers per event family, e.g. \"lease_transaction=8,prospect=4\" (defaults: lease_transaction=16, lease=8, quote=4, prospect=8, unknown=2).")
	flag.Float64Var(&cfg.retentionDeletes, "retention-deletes-per-second", controllers.DefaultRetentionDeletesPerSecond, "How fast retention may delete finished events, across receivers.")
	flag.Float64Var(&cfg.apiQPS, "kube-api-qps", 200, "Client-side QPS limit of the controllers towards the API server (processing an event takes one status write); the webhook receiver is not limited client-side.")
	flag.IntVar(&cfg.apiBurst, "kube-api-burst", 400, "Client-side burst of the controllers towards the API server.")
	flag.StringVar(&cfg.pprofAddr, "pprof-bind-address", "0", "Address of the Go pprof endpoints (/debug/pprof); \"0\" disables them.")
	flag.IntVar(&cfg.maxInFlight, "webhook-max-in-flight", receiver.DefaultMaxInFlight, "Webhook requests handled at once; more are shed at once with 503 rather than queued past Funnel's timeout.")
	flag.IntVar(&cfg.maxInFlightPerReceiver, "webhook-max-in-flight-per-receiver", 0, "Webhook requests of one FunnelReceiver handled at once, so that one receiver cannot take them all (default: half of --webhook-max-in-flight).")
	flag.BoolVar(&cfg.allowInsecureReceivers, "allow-insecure-receivers", false, "Let FunnelReceivers with spec.auth.insecureSkipAuth: true accept unauthenticated requests; without it they are not Ready.")
	flag.StringVar(&cfg.historyAddr, "history-bind-address", "0", "Address the history API (history.funnel.leasing.dev, aggregated: see config/history) binds to; \"0\" disables it. Needs the archive ("+archiveURLEnv+").")
	flag.StringVar(&cfg.historyCertDir, "history-cert-dir", "", "Directory with the history API's serving certificate (tls.crt, tls.key); a self-signed one when empty.")
	flag.StringVar(&cfg.defaultServiceAccount, "default-service-account", "", "ServiceAccount (of the subscription's namespace) that FunnelSubscriptions without spec.serviceAccountName act as; when empty, they may only make HTTP calls without Secrets.")
	flag.StringVar(&cfg.deliveryAllowCIDRs, "delivery-allow-cidrs", "", "Comma-separated CIDR ranges or addresses HTTP deliveries may connect to although they are refused by default (loopback, link-local and cloud metadata, unspecified, multicast, the operator's own addresses, the API server's). E.g. \"127.0.0.1/32\" for a sidecar. Never opened: the API server's address and port, the operator's own listening ports.")
	flag.IntVar(&cfg.deliveryConcurrency, "delivery-concurrency", delivery.DefaultExecutorWorkers, "HTTP delivery attempts in flight at once, across namespaces (each holds a connection for at most its timeout).")
	flag.IntVar(&cfg.deliveryPerNamespace, "delivery-concurrency-per-namespace", delivery.DefaultExecutorWorkersPerNamespace, "HTTP delivery attempts in flight at once for one namespace, so one tenant's slow targets leave the rest to the others.")
	flag.StringVar(&cfg.sealKeySecret, "seal-key-secret", "", "Secret (namespace/name) holding the key the receiver seals events with, so that only events it created are delivered; created with a random key when missing (default: "+receiver.DefaultSealKeySecret+" in $POD_NAMESPACE, else in --leader-election-namespace, else in default).")
	flag.DurationVar(&cfg.shutdownTimeout, "graceful-shutdown-timeout", 30*time.Second, "How long in-flight work may take to finish after SIGTERM.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(cfg); err != nil {
		ctrl.Log.Error(err, "Manager exited with an error")
		os.Exit(1)
	}
}

func run(cfg config) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(funnelv1.AddToScheme(scheme))

	concurrency, err := parseEventConcurrency(cfg.eventConcurrency)
	if err != nil {
		return fmt.Errorf("--event-concurrency: %w", err)
	}
	if sa := cfg.defaultServiceAccount; sa != "" {
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			return fmt.Errorf("--default-service-account %q: %s", sa, strings.Join(errs, "; "))
		}
	}
	if cfg.deliveryConcurrency < 1 || cfg.deliveryPerNamespace < 1 {
		return fmt.Errorf("--delivery-concurrency %d, --delivery-concurrency-per-namespace %d: want at least 1 each",
			cfg.deliveryConcurrency, cfg.deliveryPerNamespace)
	}
	allow, err := parseCIDRs(cfg.deliveryAllowCIDRs)
	if err != nil {
		return fmt.Errorf("--delivery-allow-cidrs: %w", err)
	}
	sealKey, err := sealKeySecret(cfg)
	if err != nil {
		return err
	}
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	restCfg.QPS, restCfg.Burst = float32(cfg.apiQPS), cfg.apiBurst
	// Client-side API latency (request and client rate limiter, by verb): what a slow
	// reconcile or a slow acknowledgement waited for, next to the API server's own figure.
	metrics.RegisterRESTClientMetrics(metrics.MetricRequestLatency, metrics.MetricRateLimiterLatency)
	shutdown := cfg.shutdownTimeout
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: cfg.metricsAddr},
		HealthProbeBindAddress:        cfg.probeAddr,
		PprofBindAddress:              cfg.pprofAddr,
		LeaderElection:                cfg.leaderElect,
		LeaderElectionID:              "funnel-operator.funnel.leasing.dev",
		LeaderElectionNamespace:       cfg.leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &shutdown,
		Cache:                         controllers.CacheOptions(splitList(cfg.namespaces)),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	ctx := ctrl.SetupSignalHandler()
	var store *archive.Store
	if url := os.Getenv(archiveURLEnv); url != "" {
		if store, err = archive.Open(ctx, url); err != nil {
			return fmt.Errorf("%s: %w", archiveURLEnv, err)
		}
		defer store.Close()
	}
	traces, err := tracing.FromEnvironment(ctx, os.Getenv)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer flushTraces(traces)
	if traces != nil {
		// The exporter reports failures here (an unreachable collector): into the log.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { ctrl.Log.WithName("tracing").Error(err, "Exporting spans") }))
	}
	if err := controllers.Setup(ctx, mgr, controllers.Options{
		ExternalURL: strings.TrimSuffix(cfg.externalURL, "/"),
		Webhook: receiver.Options{Addr: cfg.webhookAddr, MaxInFlight: cfg.maxInFlight, MaxInFlightPerReceiver: cfg.maxInFlightPerReceiver,
			Policy: receiver.Policy{AllowInsecure: cfg.allowInsecureReceivers}},
		EventConcurrency:                concurrency,
		RetentionDeletesPerSecond:       cfg.retentionDeletes,
		Namespaces:                      splitList(cfg.namespaces),
		DefaultServiceAccount:           cfg.defaultServiceAccount,
		Archive:                         store,
		DeliveryAllowCIDRs:              allow,
		ListenAddrs:                     []string{cfg.metricsAddr, cfg.probeAddr, cfg.pprofAddr},
		DeliveryConcurrency:             cfg.deliveryConcurrency,
		DeliveryConcurrencyPerNamespace: cfg.deliveryPerNamespace,
		History:                         historyOptions(cfg),
		SealKeySecret:                   sealKey,
		Tracing:                         traces,
	}); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding ready check: %w", err)
	}

	ctrl.Log.Info("Starting manager", "webhookAddress", cfg.webhookAddr, "leaderElection", cfg.leaderElect, "namespaces", cfg.namespaces,
		"defaultServiceAccount", cfg.defaultServiceAccount, "archive", store != nil, "deliveryAllowCIDRs", cfg.deliveryAllowCIDRs,
		"tracing", traces != nil)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// flushTraces exports the spans not exported yet, bounded so that an unreachable
// collector cannot hold up the exit.
func flushTraces(t *tracing.Tracing) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		ctrl.Log.Error(err, "Exporting the last spans")
	}
}

// historyOptions configures the history API, nil when it is off. It checks users'
// permissions with the operator's own kubeconfig (--kubeconfig or $KUBECONFIG; in the
// cluster, the ServiceAccount).
func historyOptions(cfg config) *history.Options {
	if cfg.historyAddr == "" || cfg.historyAddr == "0" {
		return nil
	}
	kubeconfig := ""
	if f := flag.Lookup("kubeconfig"); f != nil {
		kubeconfig = f.Value.String()
	}
	if kubeconfig == "" {
		kubeconfig, _, _ = strings.Cut(os.Getenv("KUBECONFIG"), string(os.PathListSeparator))
	}
	return &history.Options{Addr: cfg.historyAddr, CertDir: cfg.historyCertDir, Kubeconfig: kubeconfig,
		DNSNames: []string{"funnel-history." + os.Getenv("POD_NAMESPACE") + ".svc", "localhost"}}
}

// sealKeySecret is --seal-key-secret, or its default: the operator's own namespace
// (the pod's, as config/manager passes it), where config/rbac lets it create the Secret.
func sealKeySecret(cfg config) (types.NamespacedName, error) {
	if cfg.sealKeySecret == "" {
		ns := cmp.Or(os.Getenv("POD_NAMESPACE"), cfg.leaderElectionNamespace, metav1.NamespaceDefault)
		return types.NamespacedName{Namespace: ns, Name: receiver.DefaultSealKeySecret}, nil
	}
	ns, name, ok := strings.Cut(cfg.sealKeySecret, "/")
	if !ok || validation.IsDNS1123Label(ns) != nil || validation.IsDNS1123Subdomain(name) != nil {
		return types.NamespacedName{}, fmt.Errorf("--seal-key-secret %q: want <namespace>/<name>", cfg.sealKeySecret)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}
