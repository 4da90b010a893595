package backfill

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "funnel_backfill_deliveries_total",
	Help: "Archived events a FunnelBackfill (namespace/name) delivered, by result: Succeeded or Failed (after the subscription's retries).",
}, []string{"backfill", "result"})

func init() { metrics.Registry.MustRegister(deliveriesTotal) }
