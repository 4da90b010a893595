package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// defaultStatsSince is stats' window: the last day.
const defaultStatsSince = 24 * time.Hour

// statsOptions are stats' flags.
type statsOptions struct {
	kube    *kubeOptions
	streams genericiooptions.IOStreams

	receiver      string
	fieldSelector string
	since         time.Duration
	allNamespaces bool
	output        string
}

func newStatsCommand(kube *kubeOptions, streams genericiooptions.IOStreams) *cobra.Command {
	o := &statsOptions{kube: kube, streams: streams}
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count FunnelEvents by receiver, type and phase",
		Long: `Stats counts the FunnelEvents created in a window (--since, by creation time)
by receiver, event type and phase, with the totals and the number of
duplicate receipts (the same event sent again by Funnel, stored once).

An event's phase is its status.phase; an event no reconciler has looked at
yet is Pending.

--receiver and --field-selector are evaluated by the API server, on the
fields the FunnelEvent CRD declares selectable: ` + funnelv1.FieldPhase + `, ` + funnelv1.FieldType + `
and ` + funnelv1.FieldReceiver + ` (--receiver NAME is ` + funnelv1.FieldReceiver + `=NAME).

Events are read a page at a time and only the counts are kept, so stats
works on namespaces of any size; it reads every event of the namespace (or
of the selection) to find those of the window.`,
		Example: `  # The last 24 hours in the current namespace
  kubectl funnel stats

  # The receiver "funnel" of namespace prod, over the last hour
  kubectl funnel stats -n prod --receiver funnel --since 1h

  # The failed events of every namespace, over the last week
  kubectl funnel stats -A --since 168h --field-selector ` + funnelv1.FieldPhase + `=Failed

  # The lease.move_in events of the receiver "funnel" still stored
  kubectl funnel stats --since 0 --receiver funnel --field-selector ` + funnelv1.FieldType + `=lease.move_in

  # Every namespace, every event still stored, as JSON
  kubectl funnel stats -A --since 0 -o json | jq .totals`,
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.receiver, "receiver", "", "Count only the events of this FunnelReceiver")
	f.StringVar(&o.fieldSelector, "field-selector", "", "Count only the events this field selector matches, e.g. "+funnelv1.FieldPhase+"=Failed; FunnelEvents support "+
		funnelv1.FieldPhase+", "+funnelv1.FieldType+" and "+funnelv1.FieldReceiver)
	f.DurationVar(&o.since, "since", defaultStatsSince, "Count the events created this long ago or later; 0 counts every event")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Count the events of every namespace")
	f.StringVarP(&o.output, "output", "o", "", "Output format: empty for a table, or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// run is stats once the command line is parsed.
func (o *statsOptions) run(ctx context.Context) error {
	switch {
	case o.since < 0:
		return fmt.Errorf("--since must not be negative, got %s", o.since)
	case o.output != "" && o.output != "json":
		return fmt.Errorf("--output %q: want json, or nothing for a table", o.output)
	}
	sel, err := parseSelectors("", o.fieldSelector)
	if err != nil {
		return err
	}
	sel.fields = andFields(eventFilter{receiver: o.receiver}.selector(), sel.fields)
	scope, err := resolveScope(o.kube, o.allNamespaces)
	if err != nil {
		return err
	}
	c, err := o.kube.Client()
	if err != nil {
		return err
	}
	agg := newStatsAggregator(time.Now(), o.since)
	_, err = listEvents(ctx, c, scope, sel, func(page []funnelv1.FunnelEvent) error {
		for i := range page {
			agg.add(&page[i])
		}
		return nil
	})
	if err != nil {
		return err
	}
	rep := agg.report(scope, o.receiver, o.fieldSelector)

	if o.output == "json" {
		enc := json.NewEncoder(o.streams.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("writing the JSON: %w", err)
		}
		return nil
	}
	if rep.Totals.Total == 0 {
		fmt.Fprintf(o.streams.ErrOut, "No FunnelEvents %s %s%s.\n", rep.window(), scope, rep.matching())
		return nil
	}
	if err := rep.writeTable(o.streams.Out, scope.all); err != nil {
		return fmt.Errorf("writing the table: %w", err)
	}
	fmt.Fprintf(o.streams.Out, "\n%d events %s %s%s; %d duplicate receipts.\n", rep.Totals.Total, rep.window(), scope, rep.matching(), rep.Totals.Duplicates)
	return nil
}

// phaseCounts counts events by phase. Every phase is always in the JSON,
// so scripts need not handle absent keys.
type phaseCounts struct {
	Pending    int64 `json:"Pending"`
	Processing int64 `json:"Processing"`
	Succeeded  int64 `json:"Succeeded"`
	Failed     int64 `json:"Failed"`
	Ignored    int64 `json:"Ignored"`
}

// statsPhases are the columns of the table, in lifecycle order.
var statsPhases = []funnelv1.EventPhase{
	funnelv1.PhasePending, funnelv1.PhaseProcessing, funnelv1.PhaseSucceeded, funnelv1.PhaseFailed, funnelv1.PhaseIgnored,
}

// count points at the counter of p. A phase the API does not know (the
// CRD's enum makes that impossible today) counts as Pending: nothing has
// finished it.
func (c *phaseCounts) count(p funnelv1.EventPhase) *int64 {
	switch p {
	case funnelv1.PhaseProcessing:
		return &c.Processing
	case funnelv1.PhaseSucceeded:
		return &c.Succeeded
	case funnelv1.PhaseFailed:
		return &c.Failed
	case funnelv1.PhaseIgnored:
		return &c.Ignored
	}
	return &c.Pending
}

// statsCounts is one row's numbers, or the totals.
type statsCounts struct {
	Phases phaseCounts `json:"phases"`
	// Total is the number of events, the sum of Phases.
	Total int64 `json:"total"`
	// Duplicates sums status.duplicates: receipts of the events after the first.
	Duplicates int64 `json:"duplicates"`
}

func (s *statsCounts) add(ev *funnelv1.FunnelEvent) {
	*s.Phases.count(eventPhase(ev))++
	s.Total++
	s.Duplicates += ev.Status.Duplicates
}

// statsKey identifies a row.
type statsKey struct {
	Namespace string `json:"namespace"`
	Receiver  string `json:"receiver"`
	Type      string `json:"type"`
}

// statsRow is one line of the table: the events of one type that one
// receiver accepted.
type statsRow struct {
	statsKey
	statsCounts
}

// statsReport is what stats prints; its JSON is the -o json output.
type statsReport struct {
	// Namespace is the namespace counted, "" with -A.
	Namespace string `json:"namespace,omitempty"`
	// Receiver is --receiver, if given.
	Receiver string `json:"receiver,omitempty"`
	// FieldSelector is --field-selector, if given.
	FieldSelector string `json:"fieldSelector,omitempty"`
	// Since is --since ("0s": every event); From is the start of the window it
	// gives, absent with --since 0.
	Since string     `json:"since"`
	From  *time.Time `json:"from,omitempty"`
	// Rows are sorted by namespace, receiver and type.
	Rows   []statsRow  `json:"rows"`
	Totals statsCounts `json:"totals"`
}

// statsAggregator counts events into rows. It holds one small row per
// namespace, receiver and type, never the events.
type statsAggregator struct {
	since time.Duration
	from  time.Time // zero: no window
	rows  map[statsKey]*statsCounts
}

func newStatsAggregator(now time.Time, since time.Duration) *statsAggregator {
	a := &statsAggregator{since: since, rows: map[statsKey]*statsCounts{}}
	if since > 0 {
		a.from = now.Add(-since)
	}
	return a
}

// add counts ev if it was created in the window.
func (a *statsAggregator) add(ev *funnelv1.FunnelEvent) {
	if !a.from.IsZero() && ev.CreationTimestamp.Time.Before(a.from) {
		return
	}
	key := statsKey{Namespace: ev.Namespace, Receiver: cmp.Or(ev.Spec.Receiver, ev.Labels[funnelv1.LabelReceiver]), Type: ev.Spec.Type}
	row := a.rows[key]
	if row == nil {
		row = &statsCounts{}
		a.rows[key] = row
	}
	row.add(ev)
}

func (a *statsAggregator) report(scope eventScope, receiver, fieldSelector string) statsReport {
	rep := statsReport{Namespace: scope.namespace, Receiver: receiver, FieldSelector: fieldSelector, Since: shortDuration(a.since), Rows: []statsRow{}}
	if !a.from.IsZero() {
		from := a.from.UTC().Truncate(time.Second)
		rep.From = &from
	}
	for key, counts := range a.rows {
		rep.Rows = append(rep.Rows, statsRow{key, *counts})
		for _, p := range statsPhases {
			*rep.Totals.Phases.count(p) += *counts.Phases.count(p)
		}
		rep.Totals.Total += counts.Total
		rep.Totals.Duplicates += counts.Duplicates
	}
	slices.SortFunc(rep.Rows, func(x, y statsRow) int {
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Receiver, y.Receiver), cmp.Compare(x.Type, y.Type))
	})
	return rep
}

// window reads as the middle of a sentence: "created in the last 24h".
func (rep statsReport) window() string {
	if rep.From == nil {
		return "stored"
	}
	return "created in the last " + rep.Since
}

// matching reads as the end of a sentence, after the scope: ` matching
// "status.phase=Failed"`, or nothing without --field-selector.
func (rep statsReport) matching() string {
	if rep.FieldSelector == "" {
		return ""
	}
	return " matching " + strconv.Quote(rep.FieldSelector)
}

// writeTable writes the rows and a TOTAL line, with a NAMESPACE column when
// they span namespaces, as kubectl get -A does.
func (rep statsReport) writeTable(out io.Writer, withNamespace bool) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	row := func(key statsKey, c statsCounts) {
		cells := []string{key.Receiver, key.Type}
		if withNamespace {
			cells = append([]string{key.Namespace}, cells...)
		}
		for _, p := range statsPhases {
			cells = append(cells, strconv.FormatInt(*c.Phases.count(p), 10))
		}
		cells = append(cells, strconv.FormatInt(c.Total, 10))
		writeCells(tw, cells)
	}
	header := []string{"RECEIVER", "TYPE"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	for _, p := range statsPhases {
		header = append(header, string(p))
	}
	writeCells(tw, append(header, "TOTAL"))
	for _, r := range rep.Rows {
		row(r.statsKey, r.statsCounts)
	}
	total := statsKey{Receiver: "TOTAL"}
	if withNamespace {
		total = statsKey{Namespace: "TOTAL"}
	}
	row(total, rep.Totals)
	return tw.Flush()
}

func writeCells(w io.Writer, cells []string) {
	_, _ = fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// shortDuration is d without the zero units Duration.String adds: 24h, not
// 24h0m0s. ParseDuration reads it back.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
