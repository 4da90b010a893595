package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics of the receiver, on controller-runtime's registry (served at /metrics).
// The receiver label is "namespace/name" of a known FunnelReceiver, or "" for requests
// that match none, so arbitrary paths cannot blow up the label set.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_webhook_requests_total",
		Help: "Webhook requests answered, by receiver and HTTP status code.",
	}, []string{"receiver", "code"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "funnel_webhook_request_duration_seconds",
		Help:    "Time from the start of handling a webhook request to its answer, by receiver.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 4, 5},
	}, []string{"receiver"})

	eventsCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_events_created_total",
		Help: "FunnelEvents created by the receiver, by event type.",
	}, []string{"type"})

	eventsDuplicate = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_events_duplicate_total",
		Help: "Receipts of an event that was already stored with the same content, by event type.",
	}, []string{"type"})

	eventsConflicting = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_events_conflicting_total",
		Help: "Receipts of an event id already stored with different content (stored as a variant, answered 200), by event type.",
	}, []string{"type"})

	duplicateCountsPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "funnel_webhook_duplicate_counts_pending",
		Help: "Events whose duplicate receipts wait to be added to status.duplicates (written in the background, one event after the other).",
	})

	duplicateCountsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "funnel_webhook_duplicate_counts_dropped_total",
		Help: "Duplicate receipts not added to status.duplicates because the counter's queue was full or the update failed.",
	})

	// Silence: when Funnel stops sending (a changed URL, an expired token, an outage on
	// its side) nothing else changes; these make "no event for N hours" one expression.
	// Until this replica answers a request for a receiver they hold its creation time, a
	// lower bound that never hides a silence across restarts.
	lastRequest = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "funnel_webhook_last_request_timestamp_seconds",
		Help: "Unix time of the last webhook request this replica answered for the receiver, whatever the answer (the receiver's creation time until then).",
	}, []string{"receiver"})

	lastAccepted = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "funnel_webhook_last_accepted_timestamp_seconds",
		Help: "Unix time of the last event this replica acknowledged (200) for the receiver, new or duplicate (the receiver's creation time until then).",
	}, []string{"receiver"})
)

// forgetReceiverMetrics removes the request series of a deleted receiver.
func forgetReceiverMetrics(label string) {
	requestsTotal.DeletePartialMatch(prometheus.Labels{"receiver": label})
	requestDuration.DeleteLabelValues(label)
}

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestDuration, eventsCreated, eventsDuplicate,
		eventsConflicting, duplicateCountsPending, duplicateCountsDropped, lastRequest, lastAccepted)
}
