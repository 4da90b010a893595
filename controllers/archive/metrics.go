package archive

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Database operations, the op label of funnel_archive_errors_total.
const (
	opMigrate = "migrate"
	opRead    = "read"
	opWrite   = "write"
)

var (
	archived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "funnel_archive_events_total",
		Help: "Finished FunnelEvents written to the archive (a new row, or a new version of one).",
	})
	errorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "funnel_archive_errors_total",
		Help: "Failed archive database operations, by op (migrate, read, write); archiving catches up after each.",
	}, []string{"op"})
	up = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "funnel_archive_up",
		Help: "1 when the archive's last database operation succeeded, 0 while it fails (archiving and retention wait).",
	})
	lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "funnel_archive_lag_seconds",
		Help:    "Time from an event's processedTime to its row in the archive.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 12),
	})
	queued = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "funnel_archive_queued_events",
		Help: "Finished events seen by the archiver's watch and not yet written (one batch at most).",
	})
	batchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "funnel_archive_batch_duration_seconds",
		Help:    "Time to write one batch of events to the archive.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
	})
)

func init() {
	metrics.Registry.MustRegister(archived, errorsTotal, up, lag, queued, batchDuration)
}
