package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
)

// historyPage is how many archived events one request asks for.
const historyPage = 500

// historyOptions is what kubectl funnel history is asked for.
type historyOptions struct {
	kube    *kubeOptions
	streams genericiooptions.IOStreams

	subjects              map[string]*string // label key → --lease-transaction etc.
	eventType, phase, rcv string
	selector              string
	since                 time.Duration
	after, before         string
	allNamespaces         bool
	now                   func() time.Time
}

func newHistoryCommand(kube *kubeOptions, streams genericiooptions.IOStreams) *cobra.Command {
	return (&historyOptions{kube: kube, streams: streams, now: time.Now, subjects: map[string]*string{}}).command()
}

// command is the cobra command whose flags fill o.
func (o *historyOptions) command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List archived events: the history the PostgreSQL archive keeps",
		Long: `History lists the events of the history archive, oldest first, through the
history API the operator serves (kubectl get archivedevents): the cluster's RBAC
decides which namespaces you may read. The flags become the API's label and field
selectors, which run as SQL on the archive's indexes.`,
		Example: `  # Everything that happened to application 74824
  kubectl funnel history --lease-transaction 74824

  # Failed move-ins of March 2025
  kubectl funnel history --type lease.move_in --phase Failed --after 2025-03-01T00:00:00Z --before 2025-04-01T00:00:00Z

  # The last week of one renter, in every namespace you may read
  kubectl funnel history -A --renter 456678 --since 168h

  # The same with kubectl
  kubectl get archivedevents -l funnel.leasing.dev/lease-transaction-id=74824`,
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	for flag, key := range map[string]string{"lease-transaction": funnel.LabelLeaseTransactionID, "community": funnel.LabelCommunityID,
		"unit": funnel.LabelUnitID, "client": funnel.LabelClientID, "renter": funnel.LabelRenterID} {
		o.subjects[key] = f.String(flag, "", "Only events whose data has this "+strings.ReplaceAll(flag, "-", " ")+" id (the "+key+" label)")
	}
	f.StringVar(&o.eventType, "type", "", "Only events of this type, e.g. lease.move_in")
	f.StringVar(&o.phase, "phase", "", "Only events that ended in this phase: Succeeded, Failed or Ignored")
	f.StringVar(&o.rcv, "receiver", "", "Only events of this FunnelReceiver")
	f.StringVarP(&o.selector, "selector", "l", "", "A label selector, as with kubectl get")
	f.DurationVar(&o.since, "since", 0, "Only events received this long ago or later (0: no bound)")
	f.StringVar(&o.after, "after", "", "Only events received at or after this RFC 3339 time")
	f.StringVar(&o.before, "before", "", "Only events received before this RFC 3339 time")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Events of every namespace (needs the right to list them all)")
	return cmd
}

// listOptions turns the flags into the history API's selectors.
func (o *historyOptions) listOptions() (metav1.ListOptions, error) {
	sel, err := labels.Parse(o.selector)
	if err != nil {
		return metav1.ListOptions{}, fmt.Errorf("--selector: %w", err)
	}
	set := labels.Set{}
	for key, value := range o.subjects {
		if *value != "" {
			set[key] = *value
		}
	}
	if len(set) > 0 {
		reqs, _ := labels.SelectorFromValidatedSet(set).Requirements()
		sel = sel.Add(reqs...)
	}
	if o.since != 0 && o.after != "" {
		return metav1.ListOptions{}, fmt.Errorf("--since and --after both set a lower bound: use one")
	}
	after := o.after
	if o.since > 0 {
		after = o.now().Add(-o.since).UTC().Format(time.RFC3339)
	}
	var fields []string
	for _, f := range []struct{ name, value string }{{historyv1.FieldType, o.eventType}, {historyv1.FieldPhase, o.phase},
		{historyv1.FieldReceiver, o.rcv}, {historyv1.FieldReceivedAfter, after}, {historyv1.FieldReceivedBefore, o.before}} {
		if f.value == "" {
			continue
		}
		if f.name == historyv1.FieldReceivedAfter || f.name == historyv1.FieldReceivedBefore {
			if _, err := time.Parse(time.RFC3339Nano, f.value); err != nil {
				return metav1.ListOptions{}, fmt.Errorf("%q is not an RFC 3339 time such as 2025-03-01T00:00:00Z", f.value)
			}
		}
		fields = append(fields, f.name+"="+f.value)
	}
	return metav1.ListOptions{LabelSelector: sel.String(), FieldSelector: strings.Join(fields, ","), Limit: historyPage}, nil
}

// run lists the archived events, a page at a time, and prints them as they come.
func (o *historyOptions) run(ctx context.Context) error {
	opts, err := o.listOptions()
	if err != nil {
		return err
	}
	c, err := o.kube.Client()
	if err != nil {
		return err
	}
	ns := ""
	if !o.allNamespaces {
		if ns, err = o.kube.Namespace(); err != nil {
			return err
		}
	}
	w := tabwriter.NewWriter(o.streams.Out, 2, 4, 2, ' ', 0)
	header := "RECEIVED\tNAME\tTYPE\tPHASE\tSUMMARY"
	if o.allNamespaces {
		header = "RECEIVED\tNAMESPACE\tNAME\tTYPE\tPHASE\tSUMMARY"
	}
	count := 0
	for {
		var list historyv1.ArchivedEventList
		// Raw carries the selectors; the client sets limit and continue from its own options.
		if err := c.List(ctx, &list, client.InNamespace(ns), &client.ListOptions{Raw: &opts},
			client.Limit(opts.Limit), client.Continue(opts.Continue)); err != nil {
			if apierrors.IsNotFound(err) || strings.Contains(err.Error(), "no matches for kind") {
				return fmt.Errorf("the history API is not installed (kubectl apply -k config/history, with the archive on): %w", err)
			}
			return fmt.Errorf("listing archived events: %w", err)
		}
		for i := range list.Items {
			if count == 0 {
				fmt.Fprintln(w, header)
			}
			count++
			writeHistoryRow(w, &list.Items[i], o.allNamespaces)
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "%d archived events\n", count)
	return nil
}

func writeHistoryRow(w io.Writer, ev *historyv1.ArchivedEvent, withNamespace bool) {
	cells := []string{ev.Spec.ReceivedAt.UTC().Format(time.DateTime), ev.Name, ev.Spec.Type, string(ev.Status.Phase), ev.Status.Summary}
	if withNamespace {
		cells = append(cells[:1], append([]string{ev.Namespace}, cells[1:]...)...)
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}
