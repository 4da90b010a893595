package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Delivery metrics; subscription is "namespace/name".
var (
	deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_deliveries_total",
		Help: "Delivery attempts by subscription and result: succeeded, retry (a retryable failure that will be retried), failed (failed for good), dead_lettered.",
	}, []string{"subscription", "result"})

	deliveryDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "funnel_delivery_duration_seconds",
		Help:    "Duration of one HTTP delivery attempt, by subscription.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
	}, []string{"subscription"})

	executorRunning = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "funnel_delivery_attempts_running",
		Help: "HTTP delivery attempts in flight (at most --delivery-concurrency).",
	})
	executorWaiting = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "funnel_delivery_attempts_waiting",
		Help: "HTTP delivery attempts waiting for a worker: all busy, or their namespace at --delivery-concurrency-per-namespace.",
	})
)

func init() {
	metrics.Registry.MustRegister(deliveriesTotal, deliveryDuration, executorRunning, executorWaiting, circuitOpen, circuitTransitions)
}

// ForgetSubscription removes the series of a deleted subscription: where subscriptions
// come and go, their series would otherwise stay for the life of the process.
func ForgetSubscription(key types.NamespacedName) {
	label := key.Namespace + "/" + key.Name
	deliveriesTotal.DeletePartialMatch(prometheus.Labels{"subscription": label})
	deliveryDuration.DeleteLabelValues(label)
	circuitOpen.DeleteLabelValues(label)
	circuitTransitions.DeletePartialMatch(prometheus.Labels{"subscription": label})
}
