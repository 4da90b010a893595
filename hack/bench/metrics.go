package main

import (
	"fmt"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/funnel-operator/funnel-operator/test/harness"
)

// writeVerbs are the apiserver_request_total verbs that change an object. The API server
// reports HTTP-ish verbs (POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION); the
// request-info names are accepted too.
var writeVerbs = map[string]bool{
	"POST": true, "CREATE": true,
	"PUT": true, "UPDATE": true,
	"PATCH": true, "APPLY": true,
	"DELETE": true, "DELETECOLLECTION": true,
}

// writesFromMetrics returns the apiserver_request_total counters of writes: on
// funnel.leasing.dev funnelevents keyed "VERB[/subresource] code", and on every other
// resource keyed "resource.group VERB[/subresource] code".
func writesFromMetrics(fams map[string]*dto.MetricFamily) (events, others map[string]float64, err error) {
	fam, ok := fams["apiserver_request_total"]
	if !ok {
		return nil, nil, fmt.Errorf("the API server's /metrics has no apiserver_request_total")
	}
	events, others = map[string]float64{}, map[string]float64{}
	for _, m := range fam.GetMetric() {
		l := harness.Labels(m)
		if key := eventWriteKey(l); key != "" {
			events[key+" "+l["code"]] += m.GetCounter().GetValue()
		} else if key := writeKey(l); key != "" {
			resource := l["resource"]
			if l["group"] != "" {
				resource += "." + l["group"]
			}
			others[resource+" "+key+" "+l["code"]] += m.GetCounter().GetValue()
		}
	}
	return events, others, nil
}

// writeKey is "VERB[/subresource]" for a series about writes, else "".
func writeKey(l map[string]string) string {
	if !writeVerbs[strings.ToUpper(l["verb"])] {
		return ""
	}
	key := strings.ToUpper(l["verb"])
	if sub := l["subresource"]; sub != "" {
		key += "/" + sub
	}
	return key
}

// eventWriteKey is "VERB[/subresource]" for a series about writes on funnelevents, else "".
func eventWriteKey(l map[string]string) string {
	if l["group"] != "funnel.leasing.dev" || l["resource"] != "funnelevents" {
		return ""
	}
	return writeKey(l)
}

// diffCounts returns after - before per key, dropping zero differences, and the total.
func diffCounts(before, after map[string]float64) (map[string]float64, float64) {
	out := map[string]float64{}
	total := 0.0
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
			total += d
		}
	}
	return out, total
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// gaugeValue returns the single value of an unlabelled gauge, counter or untyped metric.
func gaugeValue(fams map[string]*dto.MetricFamily, name string) (float64, bool) {
	fam, ok := fams[name]
	if !ok || len(fam.GetMetric()) == 0 {
		return 0, false
	}
	m := fam.GetMetric()[0]
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	case m.Untyped != nil:
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// histSums are the sums and counts of histograms, by key.
type histSums map[string][2]float64

// histogramSums adds up the histogram name's series by the key keyOf gives them (series
// for which it returns "" are skipped).
func histogramSums(fams map[string]*dto.MetricFamily, name string, keyOf func(map[string]string) string) histSums {
	out := histSums{}
	fam, ok := fams[name]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		key := keyOf(harness.Labels(m))
		if key == "" || m.GetHistogram() == nil {
			continue
		}
		v := out[key]
		v[0] += m.GetHistogram().GetSampleSum()
		v[1] += float64(m.GetHistogram().GetSampleCount())
		out[key] = v
	}
	return out
}

// meansSince returns, per key, the mean of the observations made between before and
// after, rounded to the millisecond (keys without new observations are left out).
func meansSince(before, after histSums) map[string]float64 {
	out := map[string]float64{}
	for k, a := range after {
		b := before[k]
		if n := a[1] - b[1]; n > 0 {
			out[k] = round3((a[0] - b[0]) / n)
		}
	}
	return out
}
