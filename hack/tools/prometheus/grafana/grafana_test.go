package grafana

import (
	"encoding/json"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct{ query, want string }{
		{`rate(x[$__rate_interval])`, `rate(x[5m])`},
		{`rate(x[${__interval}])`, `rate(x[5m])`},
		{`x{receiver=~"$receiver"}`, `x{receiver=~".*"}`},
		{`x{receiver=~"${receiver}",s=~"${subscription:regex}"}`, `x{receiver=~".*",s=~".*"}`},
		{`sum by (le) (x)`, `sum by (le) (x)`},
	}
	for _, tt := range tests {
		if got := Expand(tt.query, "5m"); got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.query, got, tt.want)
		}
	}
}

func TestVariablePromQL(t *testing.T) {
	tests := []struct {
		typ, query, want string
	}{
		{"query", `"label_values(funnel_receiver_ready, receiver)"`, "funnel_receiver_ready"},
		{"query", `{"query": "label_values(up{job=\"x\"}, instance)", "refId": "v"}`, `up{job="x"}`},
		{"query", `{"query": "sum(up)"}`, "sum(up)"},
		{"datasource", `"prometheus"`, ""},
	}
	for _, tt := range tests {
		v := Variable{Name: "v", Type: tt.typ, Query: json.RawMessage(tt.query)}
		if got := v.PromQL(); got != tt.want {
			t.Errorf("PromQL(%s %s) = %q, want %q", tt.typ, tt.query, got, tt.want)
		}
	}
}

func TestAllPanelsIncludesCollapsedRows(t *testing.T) {
	var d Dashboard
	if err := json.Unmarshal([]byte(`{"panels": [
		{"type": "timeseries", "title": "a"},
		{"type": "row", "title": "r", "collapsed": true, "panels": [{"type": "stat", "title": "b"}]},
		{"type": "timeseries", "title": "c"}]}`), &d); err != nil {
		t.Fatal(err)
	}
	var titles []string
	for _, p := range d.AllPanels() {
		titles = append(titles, p.Title)
	}
	if got := titles; len(got) != 4 || got[0] != "a" || got[1] != "r" || got[2] != "b" || got[3] != "c" {
		t.Errorf("panels %v, want [a r b c]", got)
	}
}
