// Package delivery routes processed FunnelEvents to the FunnelSubscriptions that want
// them and carries out their actions (HTTP calls, Jobs) with retries and dead letters.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/ext"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// Filter limits: a filter is user input evaluated for every event, so both its static
// size and its runtime work are bounded.
const (
	// FilterCostLimit bounds the work of one evaluation, in CEL cost units (roughly one
	// per operation and per byte compared).
	FilterCostLimit = 1_000_000
	// FilterTimeout bounds the wall time of one evaluation.
	FilterTimeout = 100 * time.Millisecond
)

// Filter is a compiled subscription filter. It is safe for concurrent use.
type Filter struct {
	expr string
	prg  cel.Program
}

// filterEnv declares `event` and the standard extensions (strings, math, lists). Built
// once per Compile: cheap, and it keeps the package free of global state.
func filterEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("event", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(), ext.Math(), ext.Lists(),
		cel.OptionalTypes(),
	)
}

// CompileFilter compiles a filter expression. The error carries the compiler's message,
// as users see it in the subscription's Ready condition.
func CompileFilter(expr string) (*Filter, error) {
	env, err := filterEnv()
	if err != nil {
		return nil, fmt.Errorf("creating the CEL environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%s", strings.TrimSpace(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("the filter must evaluate to a bool, not %s", t)
	}
	prg, err := env.Program(ast, cel.CostLimit(FilterCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("building the CEL program: %w", err)
	}
	return &Filter{expr: expr, prg: prg}, nil
}

// Match evaluates the filter for an event input (see EventInput). A runtime error (a
// missing field, a type mismatch, the cost limit) is returned, not treated as false, so
// the caller can say why an event did not match.
func (f *Filter) Match(ctx context.Context, input map[string]any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, FilterTimeout)
	defer cancel()
	out, _, err := f.prg.ContextEval(ctx, map[string]any{"event": input})
	if err != nil {
		return false, fmt.Errorf("evaluating filter: %w", err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("evaluating filter: got %s, not a bool", out.Type())
	}
	return b, nil
}

// EventInput is the `event` variable of a filter: the event's identity, times, labels
// and its data decoded with exact integers (int64 where they fit, else uint64, else
// double).
func EventInput(ev *funnelv1.FunnelEvent) (map[string]any, error) {
	data, err := decodeData(ev.Spec.Data.Raw)
	if err != nil {
		return nil, err
	}
	labels := make(map[string]any, len(ev.Labels))
	for k, v := range ev.Labels {
		labels[k] = v
	}
	in := map[string]any{
		"name":       ev.Name,
		"namespace":  ev.Namespace,
		"receiver":   ev.Spec.Receiver,
		"type":       ev.Spec.Type,
		"id":         ev.Spec.EventID,
		"format":     string(ev.Spec.Format),
		"receivedAt": ev.Spec.ReceivedAt.UTC(),
		"labels":     labels,
		"data":       data,
	}
	if ev.Spec.OccurredAt != nil {
		in["occurredAt"] = ev.Spec.OccurredAt.UTC()
	}
	return in, nil
}

// decodeData turns stored data into CEL-friendly values.
func decodeData(raw []byte) (map[string]any, error) {
	if len(raw) == 0 {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("decoding event data: %w", err)
	}
	m, ok := convertNumbers(v).(map[string]any)
	if !ok {
		return nil, errors.New("event data is not an object")
	}
	return m, nil
}

func convertNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		var u uint64
		if _, err := fmt.Sscan(string(t), &u); err == nil && !strings.ContainsAny(string(t), ".eE-") {
			return u
		}
		f, err := t.Float64()
		if err != nil {
			return math.NaN()
		}
		return f
	case map[string]any:
		for k, e := range t {
			t[k] = convertNumbers(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = convertNumbers(e)
		}
		return t
	default:
		return v
	}
}
