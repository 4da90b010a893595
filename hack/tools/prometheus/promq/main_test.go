package main

import (
	"slices"
	"strings"
	"testing"
)

func TestSelected(t *testing.T) {
	tests := []struct {
		query   string
		want    []string
		wantErr string
	}{
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket{receiver=~"$receiver"}[$__rate_interval])))`, []string{"a_bucket"}, ""},
		{`time() - max by (r) (max_over_time(b[12h])) > 12 * 3600`, []string{"b"}, ""},
		{`x == 0 and sum without (op) (increase(y[10m])) > 0 or vector(0)`, []string{"x", "y"}, ""},
		{`absent(up{job="j"} == 1)`, []string{"up"}, ""},
		{`{__name__=~"funnel_.*"}`, nil, "without a metric name"},
		{`sum(rate(x[5m])`, nil, "unclosed"},
	}
	for _, tt := range tests {
		got, err := selected(tt.query)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("selected(%q) error %v, want one containing %q", tt.query, err, tt.wantErr)
			}
			continue
		}
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("selected(%q) = %v, %v; want %v", tt.query, got, err, tt.want)
		}
	}
}
