package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// leader is 1 on the replica that runs the controllers: with every replica at 0 for a
// while, events are received but nobody processes them.
var leader = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "funnel_leader",
	Help: "1 on the replica that runs the controllers (the elected leader, or the only replica without leader election), 0 on the others.",
})

func init() { metrics.Registry.MustRegister(leader) }

// The state metrics: computed from the leader's cache at each scrape, like
// kube-state-metrics does, so they cost nothing between scrapes and never go stale.
var (
	unfinishedDesc = prometheus.NewDesc("funnel_events_unfinished",
		"FunnelEvents not in a final phase, by event family and phase (Pending: not processed yet; Processing: deliveries under way or waiting for a retry).",
		[]string{"family", "phase"}, nil)
	oldestUnfinishedDesc = prometheus.NewDesc("funnel_events_oldest_unfinished_timestamp_seconds",
		"Unix time the oldest FunnelEvent not in a final phase was received, by event family and phase; absent when there is none.",
		[]string{"family", "phase"}, nil)
	receiverReadyDesc = prometheus.NewDesc("funnel_receiver_ready",
		"1 when the FunnelReceiver's Ready condition is True, else 0; reason is the condition's reason.",
		[]string{"receiver", "reason"}, nil)
	subscriptionReadyDesc = prometheus.NewDesc("funnel_subscription_ready",
		"1 when the FunnelSubscription's Ready condition is True, else 0; reason is the condition's reason.",
		[]string{"subscription", "reason"}, nil)
)

// collectTimeout bounds the cache reads of one scrape.
const collectTimeout = 5 * time.Second

// unfinishedPhases are the phases an event waits in; an event the controllers have not
// written yet has no phase and counts as Pending.
var unfinishedPhases = []funnelv1.EventPhase{funnelv1.PhasePending, funnelv1.PhaseProcessing}

// StateMetrics exports the backlog and the Ready state of receivers and subscriptions.
// It runs on the leader only: its cache is the one the controllers fill (unfinished
// events, subscriptions), which followers do not keep. The collector is registered while
// it runs, so followers export none of these series.
type StateMetrics struct {
	// Reader is the manager's cache.
	Reader client.Reader
}

// NeedLeaderElection is true: the events and subscriptions are cached on the leader only.
func (m *StateMetrics) NeedLeaderElection() bool { return true }

// Start registers the collector and marks this replica the leader until ctx ends.
func (m *StateMetrics) Start(ctx context.Context) error {
	if err := metrics.Registry.Register(m); err != nil {
		return fmt.Errorf("registering the state metrics: %w", err)
	}
	leader.Set(1)
	<-ctx.Done()
	leader.Set(0)
	metrics.Registry.Unregister(m)
	return nil
}

// Describe implements prometheus.Collector.
func (m *StateMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{unfinishedDesc, oldestUnfinishedDesc, receiverReadyDesc, subscriptionReadyDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reads the cache without copying objects:
// nothing here keeps or changes them.
func (m *StateMetrics) Collect(ch chan<- prometheus.Metric) {
	// A scrape must not hang on a cache that cannot sync.
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	log := ctrl.Log.WithName("state-metrics")
	noCopy := client.UnsafeDisableDeepCopy

	var events funnelv1.FunnelEventList
	if err := m.Reader.List(ctx, &events, noCopy); err != nil {
		log.Error(err, "Listing FunnelEvents for the backlog metrics")
	} else {
		collectBacklog(ch, events.Items)
	}

	var receivers funnelv1.FunnelReceiverList
	if err := m.Reader.List(ctx, &receivers, noCopy); err != nil {
		log.Error(err, "Listing FunnelReceivers for the Ready metric")
	} else {
		for i := range receivers.Items {
			r := &receivers.Items[i]
			ch <- readyMetric(receiverReadyDesc, r.Namespace, r.Name, r.Status.Conditions)
		}
	}

	var subs funnelv1.FunnelSubscriptionList
	if err := m.Reader.List(ctx, &subs, noCopy); err != nil {
		log.Error(err, "Listing FunnelSubscriptions for the Ready metric")
	} else {
		for i := range subs.Items {
			s := &subs.Items[i]
			ch <- readyMetric(subscriptionReadyDesc, s.Namespace, s.Name, s.Status.Conditions)
		}
	}
}

// backlogKey is one series of the backlog metrics.
type backlogKey struct {
	family funnel.Family
	phase  funnelv1.EventPhase
}

// collectBacklog counts unfinished events by family and phase, with the oldest receipt of
// each. Every family and phase gets a count, zero included, so graphs show an empty
// backlog rather than no data.
func collectBacklog(ch chan<- prometheus.Metric, events []funnelv1.FunnelEvent) {
	counts := map[backlogKey]int{}
	oldest := map[backlogKey]metav1.MicroTime{}
	for i := range events {
		ev := &events[i]
		phase := ev.Status.Phase
		if phase == "" {
			phase = funnelv1.PhasePending
		}
		if phase.Finished() {
			continue // finished since the watch delivered it; about to leave the cache
		}
		k := backlogKey{funnel.Lookup(ev.Spec.Type).Family, phase}
		counts[k]++
		if o, ok := oldest[k]; !ok || ev.Spec.ReceivedAt.Before(&o) {
			oldest[k] = ev.Spec.ReceivedAt
		}
	}
	for _, f := range Families {
		for _, p := range unfinishedPhases {
			k := backlogKey{f, p}
			ch <- prometheus.MustNewConstMetric(unfinishedDesc, prometheus.GaugeValue, float64(counts[k]), string(f), string(p))
			if o, ok := oldest[k]; ok {
				ch <- prometheus.MustNewConstMetric(oldestUnfinishedDesc, prometheus.GaugeValue,
					float64(o.UnixNano())/1e9, string(f), string(p))
			}
		}
	}
}

// readyMetric is 1 for a True Ready condition, else 0; an object without the condition
// yet (just created) reports reason "Unknown".
func readyMetric(desc *prometheus.Desc, namespace, name string, conds []metav1.Condition) prometheus.Metric {
	value, reason := 0.0, "Unknown"
	if c := meta.FindStatusCondition(conds, funnelv1.ConditionReady); c != nil {
		reason = c.Reason
		if c.Status == metav1.ConditionTrue {
			value = 1
		}
	}
	label := types.NamespacedName{Namespace: namespace, Name: name}.String()
	return prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, value, label, reason)
}
