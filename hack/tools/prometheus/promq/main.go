// Command promq reads the PromQL the project ships: the PrometheusRule in config/prometheus
// and the Grafana dashboards in config/grafana.
//
//	promq rules RULE.yaml            print the PrometheusRule's spec as a plain rule file (for promtool)
//	promq metrics FILE...            print every metric name the rules and dashboards query, one a line
//
// metrics parses every expression with Prometheus' own parser, so a query that does not
// parse is an error, and no name is missed the way a pattern match could miss it.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "promq:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: promq rules RULE.yaml | promq metrics FILE...")
	}
	switch args[0] {
	case "rules":
		spec, err := ruleSpec(args[1])
		if err != nil {
			return err
		}
		out, err := yaml.Marshal(spec)
		if err != nil {
			return fmt.Errorf("%s: %w", args[1], err)
		}
		_, err = os.Stdout.Write(out)
		return err
	case "metrics":
		names, err := metricNames(args[1:])
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Println(n)
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// ruleFile is a Prometheus rule file, the spec of a PrometheusRule.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string `json:"alert,omitempty"`
			Record string `json:"record,omitempty"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleSpec reads a PrometheusRule and returns its spec untouched.
func ruleSpec(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var obj struct {
		Kind string         `json:"kind"`
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if obj.Kind != "PrometheusRule" {
		return nil, fmt.Errorf("%s: kind %q, want PrometheusRule", path, obj.Kind)
	}
	return obj.Spec, nil
}

// metricNames returns the sorted metric names the expressions of the given rule and
// dashboard files select.
func metricNames(paths []string) ([]string, error) {
	seen := map[string]bool{}
	for _, path := range paths {
		exprs, err := expressions(path)
		if err != nil {
			return nil, err
		}
		for _, e := range exprs {
			names, err := selected(e.query)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, e.where, err)
			}
			for _, n := range names {
				seen[n] = true
			}
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// expression is one PromQL query and where it was found.
type expression struct{ where, query string }

// expressions reads the queries of a PrometheusRule (.yaml) or a Grafana dashboard (.json).
func expressions(path string) ([]expression, error) {
	switch filepath.Ext(path) {
	case ".yaml", ".yml":
		spec, err := ruleSpec(path)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		var rf ruleFile
		if err := json.Unmarshal(b, &rf); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var out []expression
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				out = append(out, expression{g.Name + "/" + r.Alert + r.Record, r.Expr})
			}
		}
		return out, nil
	case ".json":
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var dash any
		if err := json.Unmarshal(b, &dash); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var out []expression
		walkDashboard(dash, "", &out)
		if len(out) == 0 {
			return nil, fmt.Errorf("%s: no queries found", path)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s: want a .yaml PrometheusRule or a .json dashboard", path)
	}
}

// walkDashboard collects the "expr" of every target and the query of every templating
// variable, wherever they are nested (rows, panels, library panels).
func walkDashboard(v any, where string, out *[]expression) {
	switch v := v.(type) {
	case map[string]any:
		if title, ok := v["title"].(string); ok {
			where = title
		}
		if e, ok := v["expr"].(string); ok && e != "" {
			*out = append(*out, expression{where, e})
		}
		if name, ok := v["name"].(string); ok && v["type"] == "query" {
			q := v["query"]
			if m, ok := q.(map[string]any); ok {
				q = m["query"]
			}
			if s, ok := q.(string); ok {
				*out = append(*out, expression{"variable " + name, variableQuery(s)})
			}
		}
		for k, child := range v {
			if k != "expr" {
				walkDashboard(child, where, out)
			}
		}
	case []any:
		for _, child := range v {
			walkDashboard(child, where, out)
		}
	}
}

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*$`)

// variableQuery turns a variable's query into PromQL: label_values(sel, l) selects sel.
func variableQuery(q string) string {
	if m := labelValues.FindStringSubmatch(q); m != nil {
		return m[1]
	}
	return q
}

var (
	// Grafana's interval variables, e.g. $__rate_interval, stand for a duration.
	intervalVar = regexp.MustCompile(`\$__\w+|\$\{__\w+\}`)
	// Other variables ($receiver, ${receiver}, ${receiver:regex}) stand in label values.
	valueVar = regexp.MustCompile(`\$\{\w+(:\w+)?\}|\$\w+`)
)

// selected parses a query (Grafana variables replaced by stand-ins) and returns the
// metric names of its selectors.
func selected(query string) ([]string, error) {
	q := intervalVar.ReplaceAllString(query, "5m")
	q = valueVar.ReplaceAllString(q, ".*")
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", query, err)
	}
	var names []string
	var noName error
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name == "" {
			noName = fmt.Errorf("%q: a selector without a metric name (%s) cannot be checked", query, vs)
			return nil
		}
		names = append(names, vs.Name)
		return nil
	})
	if noName != nil {
		return nil, noName
	}
	return names, nil
}
