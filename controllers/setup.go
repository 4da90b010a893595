// Package controllers holds the operator's reconcilers and the manager wiring they share.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/time/rate"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/controllers/backfill"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/history"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
	"github.com/funnel-operator/funnel-operator/controllers/metawrite"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// DefaultEventConcurrency is how many events of each family are processed at once.
// Each pass mostly waits on one API write, so workers are cheap; the numbers follow the
// families' share of Funnel's traffic (lease transactions dominate).
var DefaultEventConcurrency = map[funnel.Family]int{
	funnel.FamilyLeaseTransaction: 16,
	funnel.FamilyLease:            8,
	funnel.FamilyQuote:            4,
	funnel.FamilyProspect:         8,
	funnel.FamilyUnknown:          2,
}

// Options configures every controller the manager runs.
type Options struct {
	// ExternalURL is the operator's public base URL, used for status.url hints.
	ExternalURL string
	// Webhook configures the receiver Funnel posts to.
	Webhook receiver.Options
	// EventConcurrency overrides DefaultEventConcurrency per family.
	EventConcurrency map[funnel.Family]int
	// Dispatcher routes validated events to deliveries; a delivery.Router when nil.
	Dispatcher Dispatcher
	// DeliveryAllowCIDRs are ranges HTTP deliveries may connect to although the address
	// policy refuses them (--delivery-allow-cidrs); see delivery.AddressPolicy.
	DeliveryAllowCIDRs []netip.Prefix
	// ListenAddrs are the bind addresses of the manager's own listeners (metrics, health
	// probes, pprof): deliveries never reach their ports on the operator's host, allowed
	// or not. The webhook receiver's and the history API's are added here.
	ListenAddrs []string
	// DeliveryConcurrency bounds the HTTP delivery attempts in flight, and
	// DeliveryConcurrencyPerNamespace one namespace's share of them; the delivery
	// package's defaults when 0.
	DeliveryConcurrency, DeliveryConcurrencyPerNamespace int
	// StatsInterval is how often subscription counts are written; 10s when 0.
	StatsInterval time.Duration
	// Clock is the time source of the controllers; the real clock when nil.
	Clock clock.Clock
	// RetentionDeletesPerSecond paces retention deletes; DefaultRetentionDeletesPerSecond when 0.
	RetentionDeletesPerSecond float64
	// RetentionRecheck is the longest wait between retention passes; DefaultRetentionRecheck when 0.
	RetentionRecheck time.Duration
	// Namespaces are the watched namespaces (--namespaces); all when empty.
	Namespaces []string
	// DefaultServiceAccount is the ServiceAccount subscriptions that name none act as
	// (--default-service-account); without one they may only make HTTP calls without Secrets.
	DefaultServiceAccount string
	// SubscriptionRecheck is DefaultSubscriptionRecheck when 0.
	SubscriptionRecheck time.Duration
	// Archive, when set, is the PostgreSQL history archive: the leader writes every
	// finished event there, and retention deletes only what it holds.
	Archive *archive.Store
	// ReceiverSecrets reads the receivers' Secrets; one refreshed every
	// receiver.DefaultSecretRefresh when nil.
	ReceiverSecrets *receiver.Secrets
	// History, when set, serves the archive as the aggregated history API on every
	// replica; it needs Archive.
	History *history.Options
	// SealKeySecret is the Secret holding the key the receiver seals events with and
	// the event controllers check them with (created with a new key when missing).
	// Required.
	SealKeySecret types.NamespacedName
	// Tracing follows each event from the webhook request through its passes and
	// delivery attempts (tracing.FromEnvironment); nil is tracing off.
	Tracing *tracing.Tracing
}

// CacheOptions are the manager's cache settings: FunnelEvents are cached only while
// unfinished (a field selector on status.phase), so memory follows in-flight work, not
// history; Jobs only when our deliveries created them. managedFields are dropped from
// every cached object: nothing here reads them, and they are about half of an event.
func CacheOptions(namespaces []string) cache.Options {
	ours, err := labels.NewRequirement(delivery.LabelSubscription, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant, valid label key
	}
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&funnelv1.FunnelEvent{}: {Field: funnelv1.UnfinishedEvents()},
			&batchv1.Job{}:          {Label: labels.NewSelector().Add(*ours)},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	for _, ns := range namespaces {
		if opts.DefaultNamespaces == nil {
			opts.DefaultNamespaces = map[string]cache.Config{}
		}
		opts.DefaultNamespaces[ns] = cache.Config{}
	}
	return opts
}

// Setup registers every controller and the webhook receiver with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	rec := mgr.GetEventRecorder("funnel-operator")
	if opts.SealKeySecret.Name == "" || opts.SealKeySecret.Namespace == "" {
		return errors.New("no seal key Secret: the event controllers would deliver no event")
	}
	loadCtx, cancelLoad := context.WithTimeout(ctx, 30*time.Second)
	sealer, err := receiver.LoadSealer(loadCtx, mgr.GetClient(), mgr.GetAPIReader(), opts.SealKeySecret, opts.Clock.Now())
	cancelLoad()
	if err != nil {
		return err
	}
	opts.Webhook.Sealer = sealer
	actAs, err := identity.New(mgr.GetConfig(), mgr.GetScheme(), mgr.GetRESTMapper(), opts.DefaultServiceAccount)
	if err != nil {
		return err
	}
	// Registered on the first lookup, which only the leader makes: a follower does not
	// watch the events.
	events := delivery.NewEventIndex(mgr.GetCache())
	var router *delivery.Router
	if opts.Dispatcher == nil {
		listen := append(slices.Clone(opts.ListenAddrs), opts.Webhook.Addr)
		if opts.Webhook.Listener != nil {
			listen = append(listen, opts.Webhook.Listener.Addr().String())
		}
		if opts.History != nil {
			listen = append(listen, opts.History.Addr)
		}
		own, err := delivery.OperatorEndpoints(ctx, mgr.GetConfig().Host, listen)
		if err != nil {
			return fmt.Errorf("collecting the addresses deliveries may not reach: %w", err)
		}
		httpClient := delivery.NewHTTPClient(delivery.NewAddressPolicy(opts.DeliveryAllowCIDRs, own))
		executor := delivery.NewExecutor(opts.DeliveryConcurrency, opts.DeliveryConcurrencyPerNamespace, opts.Clock)
		if err := mgr.Add(executor); err != nil {
			return fmt.Errorf("adding the delivery executor: %w", err)
		}
		stats := delivery.NewStats(mgr.GetClient(), mgr.GetAPIReader(), opts.StatsInterval)
		if err := mgr.Add(stats); err != nil {
			return fmt.Errorf("adding the subscription counters: %w", err)
		}
		router = &delivery.Router{Client: mgr.GetClient(), Events: events, APIReader: mgr.GetAPIReader(), Identity: actAs, Scheme: mgr.GetScheme(), HTTP: httpClient, Executor: executor,
			Clock: opts.Clock, Recorder: rec, Stats: stats, Tracing: opts.Tracing}
		opts.Dispatcher = router
	}
	if router != nil {
		// Backfills deliver through the same router: the same requests, identity and limits.
		if err := (&backfill.Reconciler{Client: mgr.GetClient(), Archive: opts.Archive, Deliverer: router,
			Clock: opts.Clock}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the FunnelBackfill controller: %w", err)
		}
	}
	if err := (&SubscriptionReconciler{Client: mgr.GetClient(), Identity: actAs, Recorder: rec,
		Recheck: opts.SubscriptionRecheck}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the FunnelSubscription controller: %w", err)
	}
	// The receivers' Secrets, read by name for the receiver controller and the webhook
	// server alike: the operator neither lists nor watches Secrets.
	if opts.ReceiverSecrets == nil {
		opts.ReceiverSecrets = receiver.NewSecrets(mgr.GetAPIReader(), mgr.GetCache(), 0)
	}
	if err := mgr.Add(opts.ReceiverSecrets); err != nil {
		return fmt.Errorf("adding the receivers' Secrets: %w", err)
	}
	opts.Webhook.Secrets = opts.ReceiverSecrets
	opts.Webhook.Tracing = opts.Tracing
	if err := (&ReceiverReconciler{Client: mgr.GetClient(), ExternalURL: opts.ExternalURL, Policy: opts.Webhook.Policy,
		Secrets: opts.ReceiverSecrets}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the FunnelReceiver controller: %w", err)
	}

	// Status patches answered with metadata only: the controllers need the new
	// resourceVersion, not the whole object back.
	eventWriter, err := metawrite.New(mgr.GetConfig(), mgr.GetClient())
	if err != nil {
		return fmt.Errorf("creating the event controllers' client: %w", err)
	}
	for _, f := range Families {
		concurrency := DefaultEventConcurrency[f]
		if n, ok := opts.EventConcurrency[f]; ok {
			concurrency = n
		}
		r := &EventReconciler{Client: eventWriter, Family: f, Dispatcher: opts.Dispatcher, Recorder: rec, Clock: opts.Clock, Sealer: sealer,
			Tracing: opts.Tracing, Events: events}
		if err := r.SetupWithManager(mgr, concurrency); err != nil {
			return fmt.Errorf("setting up the %s event controller: %w", f, err)
		}
	}

	meta, err := metadata.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("creating the metadata client: %w", err)
	}
	if err := mgr.Add(&ReplayWatcher{Metadata: meta, Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Namespaces: opts.Namespaces}); err != nil {
		return fmt.Errorf("adding the replay watcher: %w", err)
	}

	if err := mgr.Add(&StateMetrics{Reader: mgr.GetCache()}); err != nil {
		return fmt.Errorf("adding the state metrics: %w", err)
	}

	retention := &RetentionReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: opts.Clock, Recorder: rec}
	if opts.Archive != nil {
		watcher, err := client.NewWithWatch(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return fmt.Errorf("creating the archiver's client: %w", err)
		}
		if err := mgr.Add(&archive.Archiver{Store: opts.Archive, Client: watcher, Finished: funnelv1.FinishedEvents(),
			Namespaces: opts.Namespaces, Clock: opts.Clock}); err != nil {
			return fmt.Errorf("adding the archiver: %w", err)
		}
		retention.Archive = opts.Archive
	}
	if opts.History != nil {
		if opts.Archive == nil {
			return errors.New("the history API serves the archive: turn the archive on too")
		}
		srv, err := history.NewServer(*opts.History, opts.Archive)
		if err != nil {
			return err
		}
		if err := mgr.Add(srv); err != nil {
			return fmt.Errorf("adding the history API: %w", err)
		}
	}
	deletes := opts.RetentionDeletesPerSecond
	if deletes <= 0 {
		deletes = DefaultRetentionDeletesPerSecond
	}
	recheck := opts.RetentionRecheck
	if recheck <= 0 {
		recheck = DefaultRetentionRecheck
	}
	retention.Limiter, retention.Recheck = rate.NewLimiter(rate.Limit(deletes), 1), recheck
	if err := retention.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the retention controller: %w", err)
	}

	// The receiver writes with its own client, free of client-side rate limits: its
	// throughput is bounded by the per-receiver limit and the API server's priority and
	// fairness, and a 20 QPS client-side limit would make Funnel wait for nothing.
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.QPS, cfg.Burst = -1, 0
	// Creates are answered with metadata only: the receiver needs to know the event is
	// stored, not to read it back.
	direct, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("creating the receiver's client: %w", err)
	}
	writer, err := metawrite.New(cfg, direct)
	if err != nil {
		return fmt.Errorf("creating the receiver's client: %w", err)
	}
	srv := receiver.NewServer(opts.Webhook, mgr.GetCache(), writer)
	if err := mgr.Add(srv); err != nil {
		return fmt.Errorf("adding the webhook receiver: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook-receiver", srv.ReadyCheck); err != nil {
		return fmt.Errorf("adding the webhook receiver's ready check: %w", err)
	}
	return nil
}
