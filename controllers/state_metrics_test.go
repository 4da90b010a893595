package controllers

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// collectFunc adapts a collect function to a prometheus.Collector.
type collectFunc func(chan<- prometheus.Metric)

func (f collectFunc) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(f, ch) }
func (f collectFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

// series gathers what a collect function sends, as "name{label=value,...}" → value.
func series(t *testing.T, collect func(chan<- prometheus.Metric)) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collectFunc(collect))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			out[fmt.Sprintf("%s{%s}", f.GetName(), strings.Join(labels, ","))] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestCollectBacklog(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	event := func(typ string, phase funnelv1.EventPhase, receivedAfter time.Duration) funnelv1.FunnelEvent {
		return funnelv1.FunnelEvent{
			Spec:   funnelv1.FunnelEventSpec{Type: typ, ReceivedAt: metav1.NewMicroTime(t0.Add(receivedAfter))},
			Status: funnelv1.FunnelEventStatus{Phase: phase},
		}
	}
	zero := map[string]float64{}
	for _, f := range Families {
		for _, p := range unfinishedPhases {
			zero[fmt.Sprintf("funnel_events_unfinished{family=%s,phase=%s}", f, p)] = 0
		}
	}
	with := func(extra map[string]float64) map[string]float64 {
		out := maps.Clone(zero)
		maps.Copy(out, extra)
		return out
	}
	tests := []struct {
		name   string
		events []funnelv1.FunnelEvent
		want   map[string]float64
	}{
		{"no events: every family and phase at zero, no oldest", nil, zero},
		{"an event without a phase yet is Pending; the oldest receipt counts", []funnelv1.FunnelEvent{
			event("lease_transaction.status_updated", "", 2*time.Second),
			event("lease_transaction.unit_reserved", funnelv1.PhasePending, time.Second),
			event("lease.move_in", funnelv1.PhaseProcessing, 5*time.Second),
		}, with(map[string]float64{
			"funnel_events_unfinished{family=lease_transaction,phase=Pending}":                          2,
			"funnel_events_oldest_unfinished_timestamp_seconds{family=lease_transaction,phase=Pending}": 1_800_000_001,
			"funnel_events_unfinished{family=lease,phase=Processing}":                                   1,
			"funnel_events_oldest_unfinished_timestamp_seconds{family=lease,phase=Processing}":          1_800_000_005,
		})},
		{"unknown types go to the unknown family; finished events still in the cache do not count", []funnelv1.FunnelEvent{
			event("something.new", funnelv1.PhaseProcessing, 0),
			event("quote.created", funnelv1.PhaseSucceeded, 0),
			event("quote.created", funnelv1.PhaseFailed, 0),
			event("renter.created", funnelv1.PhaseIgnored, 0),
		}, with(map[string]float64{
			"funnel_events_unfinished{family=unknown,phase=Processing}":                          1,
			"funnel_events_oldest_unfinished_timestamp_seconds{family=unknown,phase=Processing}": 1_800_000_000,
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := series(t, func(ch chan<- prometheus.Metric) { collectBacklog(ch, tt.events) })
			if !maps.Equal(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", lines(got), lines(tt.want))
			}
		})
	}
}

func TestReadyMetric(t *testing.T) {
	tests := []struct {
		name  string
		conds []metav1.Condition
		want  string
	}{
		{"Ready True", []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionTrue, Reason: funnelv1.ReasonAccepting}},
			"funnel_receiver_ready{reason=Accepting,receiver=team/funnel} 1"},
		{"Ready False with its reason", []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionFalse, Reason: funnelv1.ReasonSecretNotFound}},
			"funnel_receiver_ready{reason=SecretNotFound,receiver=team/funnel} 0"},
		{"no condition yet", nil, "funnel_receiver_ready{reason=Unknown,receiver=team/funnel} 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lines(series(t, func(ch chan<- prometheus.Metric) {
				ch <- readyMetric(receiverReadyDesc, "team", "funnel", tt.conds)
			}))
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func lines(m map[string]float64) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%s %v", k, m[k]))
	}
	return strings.Join(out, "\n")
}
