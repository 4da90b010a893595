package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// defaultTailSince is how far back tail starts.
const defaultTailSince = 10 * time.Minute

// tailRetryPause is how long tail waits before it watches again after the
// API server ended a watch at once or reported an error in it.
const tailRetryPause = time.Second

// tailOptions are tail's flags.
type tailOptions struct {
	kube    *kubeOptions
	streams genericiooptions.IOStreams

	receiver      string
	eventType     string
	allNamespaces bool
	since         time.Duration
	timeout       time.Duration
}

func newTailCommand(kube *kubeOptions, streams genericiooptions.IOStreams) *cobra.Command {
	o := &tailOptions{kube: kube, streams: streams}
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Follow FunnelEvents as they arrive and are processed",
		Long: `Tail prints the FunnelEvents created in the last --since, oldest first, then
follows: one line for each new event and one for each phase change, until
Ctrl-C or --timeout.

  TIME  NAMESPACE/NAME  TYPE  PHASE  SUMMARY

A new event shows its phase (Pending, usually); a change shows both, as in
"Processing → Succeeded". TIME is the creation time of the events listed at
the start, and the time tail saw the others. Deleted events are not printed.
An older event that changes (one being replayed) first prints its phase at
the time, then its changes.

An event's phase is its status.phase (Pending until a reconciler writes it).
--receiver and --type are field selectors (` + funnelv1.FieldReceiver + `, ` + funnelv1.FieldType + `)
that the API server evaluates, exactly, for the list and the watch.`,
		Example: `  # Follow the events of the current namespace
  kubectl funnel tail

  # The lease transactions the receiver "funnel" of namespace prod gets, from
  # the last hour on
  kubectl funnel tail -n prod --receiver funnel --type lease_transaction.status_updated --since 1h

  # Every namespace, new events only, for five minutes
  kubectl funnel tail -A --since 0 --timeout 5m`,
		Args:              cobra.NoArgs,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}

	f := cmd.Flags()
	f.StringVar(&o.receiver, "receiver", "", "Only the events of this FunnelReceiver")
	f.StringVar(&o.eventType, "type", "", "Only the events of this type, e.g. lease_transaction.status_updated")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Follow the events of every namespace")
	f.DurationVar(&o.since, "since", defaultTailSince, "First print the events created this long ago or later; 0 prints only new ones")
	f.DurationVar(&o.timeout, "timeout", 0, "Stop after this long; 0 follows until Ctrl-C")
	return cmd
}

// run is tail once the command line is parsed.
func (o *tailOptions) run(ctx context.Context) error {
	switch {
	case o.since < 0:
		return fmt.Errorf("--since must not be negative, got %s", o.since)
	case o.timeout < 0:
		return fmt.Errorf("--timeout must not be negative, got %s", o.timeout)
	}
	scope, err := resolveScope(o.kube, o.allNamespaces)
	if err != nil {
		return err
	}
	c, err := o.kube.Client()
	if err != nil {
		return err
	}
	followCtx := ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		followCtx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	t := newTailer(o.streams.Out, eventFilter{receiver: o.receiver, eventType: o.eventType}, time.Now().Add(-o.since))
	t.printHeader()
	err = t.follow(followCtx, c, scope)
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("following FunnelEvents: %w", interrupted(ctx))
	case followCtx.Err() != nil:
		return nil // --timeout: the end the user asked for
	}
	return err
}

// tailer turns lists and watch events of FunnelEvents into tail's lines.
// Its memory is the last phase of each event seen during the session that
// still exists: an entry is dropped when its event is deleted, and events
// older than the window are not remembered until they change.
type tailer struct {
	out    io.Writer
	filter eventFilter
	// from is the start of the window: a listed event created since is new.
	from time.Time
	// now and loc give the time of the lines; tests fix them.
	now func() time.Time
	loc *time.Location

	seen map[types.NamespacedName]seenEvent
	// gen counts the lists; entries a list did not refresh were deleted.
	gen uint64
}

// seenEvent is what tail remembers of an event.
type seenEvent struct {
	phase funnelv1.EventPhase
	gen   uint64
}

// tailLine is one line of output.
type tailLine struct {
	at      time.Time
	key     types.NamespacedName
	typ     string
	phase   string
	summary string
}

func newTailer(out io.Writer, filter eventFilter, from time.Time) *tailer {
	return &tailer{out: out, filter: filter, from: from, now: time.Now, loc: time.Local, seen: map[types.NamespacedName]seenEvent{}}
}

// tailFormat aligns the columns for the usual names: evt-<UUID> in a short
// namespace, lease_transaction.status_updated, "Processing → Succeeded".
const tailFormat = "%-19s  %-48s  %-32s  %-22s  %s"

func (t *tailer) printHeader() {
	fmt.Fprintln(t.out, strings.TrimRight(fmt.Sprintf(tailFormat, "TIME", "NAMESPACE/NAME", "TYPE", "PHASE", "SUMMARY"), " "))
}

func (t *tailer) print(l tailLine) {
	s := fmt.Sprintf(tailFormat, l.at.In(t.loc).Format(time.DateTime), l.key.Namespace+"/"+l.key.Name, l.typ, l.phase, l.summary)
	fmt.Fprintln(t.out, strings.TrimRight(s, " "))
}

// observe records ev's phase and returns the line it deserves, if any: a
// new event gets one at `at`, a changed phase one at now.
func (t *tailer) observe(ev *funnelv1.FunnelEvent, at time.Time) (tailLine, bool) {
	key := client.ObjectKeyFromObject(ev)
	cur := eventPhase(ev)
	prev, known := t.seen[key]
	t.seen[key] = seenEvent{phase: cur, gen: t.gen}
	line := tailLine{at: at, key: key, typ: ev.Spec.Type, phase: string(cur), summary: ev.Status.Summary}
	switch {
	case !known:
		return line, true
	case prev.phase != cur:
		line.at, line.phase = t.now(), string(prev.phase)+" → "+string(cur)
		return line, true
	}
	return tailLine{}, false
}

// list lists the events and prints, oldest first, those created in the
// window that are new to the session and the phase changes of the others.
// Events gone from the list are forgotten. It returns the list's resource
// version, for the watch.
func (t *tailer) list(ctx context.Context, c client.Reader, scope eventScope) (string, error) {
	t.gen++
	var lines []tailLine
	rv, err := listEvents(ctx, c, scope, eventSelector{fields: t.filter.selector()}, func(page []funnelv1.FunnelEvent) error {
		for i := range page {
			ev := &page[i]
			_, known := t.seen[client.ObjectKeyFromObject(ev)]
			if !known && ev.CreationTimestamp.Time.Before(t.from) {
				continue
			}
			if l, ok := t.observe(ev, ev.CreationTimestamp.Time); ok {
				lines = append(lines, l)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for key, s := range t.seen {
		if s.gen != t.gen {
			delete(t.seen, key)
		}
	}
	slices.SortFunc(lines, func(a, b tailLine) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.key.Namespace, b.key.Namespace), cmp.Compare(a.key.Name, b.key.Name))
	})
	for _, l := range lines {
		t.print(l)
	}
	return rv, nil
}

// handle prints what one watch event deserves. It returns the resource
// version to resume from ("" if the event has none), and the error an
// ERROR event carries.
func (t *tailer) handle(e watch.Event) (string, error) {
	switch e.Type {
	case watch.Error:
		return "", watchError(e.Object)
	case watch.Bookmark:
		if obj, err := meta.Accessor(e.Object); err == nil {
			return obj.GetResourceVersion(), nil
		}
		return "", nil
	}
	ev, ok := e.Object.(*funnelv1.FunnelEvent)
	if !ok {
		return "", nil
	}
	if e.Type == watch.Deleted {
		delete(t.seen, client.ObjectKeyFromObject(ev))
		return ev.ResourceVersion, nil
	}
	if l, ok := t.observe(ev, t.now()); ok {
		t.print(l)
	}
	return ev.ResourceVersion, nil
}

// watchError is the error of a watch ERROR event, a Status as a rule.
func watchError(obj runtime.Object) error {
	if status, ok := obj.(*metav1.Status); ok {
		return apierrors.FromObject(status)
	}
	return fmt.Errorf("unexpected watch error %v", obj)
}

// consume handles the events of one watch until it ends (nil), reports an
// error, or ctx is done. It returns the resource version reached.
func (t *tailer) consume(ctx context.Context, events <-chan watch.Event, rv string) (string, error) {
	for {
		select {
		case <-ctx.Done():
			return rv, ctx.Err()
		case e, ok := <-events:
			if !ok {
				return rv, nil
			}
			next, err := t.handle(e)
			if err != nil {
				return rv, err
			}
			rv = cmp.Or(next, rv)
		}
	}
}

// follow lists, then watches from the list's resource version, resuming
// when the API server ends the watch (it does every few minutes), and
// listing again when the watch is too far behind (410 Gone) or failed. It
// returns when ctx is done, or on an error a retry cannot fix.
func (t *tailer) follow(ctx context.Context, c client.WithWatch, scope eventScope) error {
	rv, err := t.list(ctx, c, scope)
	for err == nil {
		started := time.Now()
		var w watch.Interface
		opts := eventSelector{fields: t.filter.selector()}.listOptions(scope)
		opts.Raw = &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}
		w, err = c.Watch(ctx, &funnelv1.FunnelEventList{}, opts)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case isExpired(err):
				rv, err = t.list(ctx, c, scope)
				continue
			}
			return fmt.Errorf("watching FunnelEvents %s: %w", scope, err)
		}
		rv, err = t.consume(ctx, w.ResultChan(), rv)
		w.Stop()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil: // the server ended the watch: resume where it was
			if time.Since(started) < tailRetryPause {
				err = pause(ctx, tailRetryPause)
			}
		case isExpired(err): // too far behind: what was missed is in a new list
			rv, err = t.list(ctx, c, scope)
		default: // an error in the stream: start over from a list, gently
			if err = pause(ctx, tailRetryPause); err == nil {
				rv, err = t.list(ctx, c, scope)
			}
		}
	}
	return err
}

func isExpired(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// pause waits d, or less if ctx is done first.
func pause(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
