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
	"slices"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/funnel-operator/funnel-operator/hack/tools/prometheus/grafana"
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
		d, err := grafana.Read(path)
		if err != nil {
			return nil, err
		}
		var out []expression
		for _, p := range d.AllPanels() {
			for _, t := range p.Targets {
				out = append(out, expression{p.Title, t.Expr})
			}
		}
		for _, v := range d.Templating.List {
			if q := v.PromQL(); q != "" {
				out = append(out, expression{"variable " + v.Name, q})
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s: no queries found", path)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s: want a .yaml PrometheusRule or a .json dashboard", path)
	}
}

// selected parses a query (Grafana variables replaced by stand-ins) and returns the
// metric names of its selectors.
func selected(query string) ([]string, error) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(grafana.Expand(query, "5m"))
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
