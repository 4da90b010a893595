// Package grafana reads the parts of a Grafana dashboard that hold PromQL: panels (nested
// in collapsed rows too), their targets, and the templating variables' queries.
package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

// Dashboard is a Grafana dashboard, as far as this package reads it.
type Dashboard struct {
	Title      string  `json:"title"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is one panel, or a row holding panels when collapsed.
type Panel struct {
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	GridPos     GridPos  `json:"gridPos"`
	Targets     []Target `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit       string   `json:"unit"`
			Min        *float64 `json:"min"`
			Max        *float64 `json:"max"`
			Thresholds struct {
				Steps []Threshold `json:"steps"`
			} `json:"thresholds"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	// Panels of a collapsed row.
	Panels []Panel `json:"panels"`
}

// GridPos places a panel on the dashboard's 24-column grid.
type GridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Target is one query of a panel.
type Target struct {
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	Instant      bool   `json:"instant"`
}

// Threshold is one step of a panel's thresholds; Value nil is the base.
type Threshold struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"`
}

// Variable is a templating variable.
type Variable struct {
	Name  string          `json:"name"`
	Type  string          `json:"type"`
	Query json.RawMessage `json:"query"`
}

// Read parses a dashboard file.
func Read(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &d, nil
}

// AllPanels lists every panel in order, the panels of collapsed rows after their row.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$`)

// PromQL is the variable's query as PromQL ("" for variables that are not Prometheus
// queries): label_values(sel, label) selects sel.
func (v Variable) PromQL() string {
	if v.Type != "query" {
		return ""
	}
	var q any
	if err := json.Unmarshal(v.Query, &q); err != nil {
		return ""
	}
	if m, ok := q.(map[string]any); ok {
		q = m["query"]
	}
	s, _ := q.(string)
	if m := labelValues.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return s
}

var (
	// Grafana's interval variables ($__rate_interval, ${__interval}) stand for a duration.
	intervalVar = regexp.MustCompile(`\$__\w+|\$\{__\w+\}`)
	// Other variables ($receiver, ${receiver}, ${receiver:regex}) stand in label matchers.
	valueVar = regexp.MustCompile(`\$\{\w+(:\w+)?\}|\$\w+`)
)

// Expand replaces Grafana's variables in a query: interval variables by interval, the
// others by ".*" (every value, as "All" selects).
func Expand(query, interval string) string {
	return valueVar.ReplaceAllString(intervalVar.ReplaceAllString(query, interval), ".*")
}
