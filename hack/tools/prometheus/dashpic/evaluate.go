package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/funnel-operator/funnel-operator/hack/tools/prometheus/grafana"
)

// series is one line of a panel: its legend and its samples.
type series struct {
	legend string
	times  []time.Time
	values []float64
}

// panelData is what a panel's queries returned.
type panelData struct {
	series []series
	// value is a stat panel's number; ok is false when its query returned nothing.
	value float64
	ok    bool
}

// evaluate runs each panel's queries against Prometheus over [start, end], as Grafana
// would: $__rate_interval is four scrape intervals, variables are "All".
func evaluate(ctx context.Context, promURL string, d *grafana.Dashboard, start, end time.Time) (map[int]panelData, error) {
	out := map[int]panelData{}
	step := scrapeInterval * 3
	for i, p := range d.AllPanels() {
		var pd panelData
		for _, t := range p.Targets {
			q := grafana.Expand(t.Expr, (4 * scrapeInterval).String())
			if p.Type == "stat" {
				res, err := query(ctx, promURL, "/api/v1/query", url.Values{"query": {q}, "time": {unix(end)}})
				if err != nil {
					return nil, fmt.Errorf("panel %q: %w", p.Title, err)
				}
				if len(res) > 0 && len(res[0].values) > 0 {
					pd.value, pd.ok = res[0].values[0], true
				}
				continue
			}
			res, err := query(ctx, promURL, "/api/v1/query_range", url.Values{"query": {q}, "start": {unix(start)},
				"end": {unix(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}})
			if err != nil {
				return nil, fmt.Errorf("panel %q: %w", p.Title, err)
			}
			for _, s := range res {
				s.legend = legend(t.LegendFormat, s.legend)
				pd.series = append(pd.series, s)
			}
		}
		sort.SliceStable(pd.series, func(a, b int) bool { return pd.series[a].legend < pd.series[b].legend })
		out[i] = pd
	}
	return out, nil
}

func unix(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64) }

// query calls the Prometheus HTTP API; each result's legend is its labels as JSON, for
// legend() to format.
func query(ctx context.Context, base, path string, params url.Values) ([]series, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path+"?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s %s: %s", path, params.Get("query"), body.Error)
	}
	var out []series
	for _, r := range body.Data.Result {
		labels, _ := json.Marshal(r.Metric)
		s := series{legend: string(labels)}
		samples := r.Values
		if r.Value != nil {
			samples = [][]any{r.Value}
		}
		for _, v := range samples {
			ts, _ := v[0].(float64)
			str, _ := v[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				continue
			}
			s.times = append(s.times, time.UnixMilli(int64(ts*1000)))
			s.values = append(s.values, f)
		}
		out = append(out, s)
	}
	return out, nil
}

// legend formats Grafana's legendFormat ("{{receiver}} {{code}}") with a series' labels.
func legend(format, labelsJSON string) string {
	var labels map[string]string
	_ = json.Unmarshal([]byte(labelsJSON), &labels)
	if format == "" {
		return labelsJSON
	}
	out := format
	for k, v := range labels {
		out = strings.ReplaceAll(out, "{{"+k+"}}", v)
	}
	return strings.TrimSpace(out)
}
