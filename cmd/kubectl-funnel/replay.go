package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// defaultReplayTimeout is how long replay --wait waits, for all the events.
const defaultReplayTimeout = 60 * time.Second

// replayPollInterval is how often replay --wait reads the event it waits
// for. Events are waited for in order and the operator works on all of them
// at once, so most are read once, already finished.
const replayPollInterval = time.Second

// replayOptions are replay's flags and arguments.
type replayOptions struct {
	kube    *kubeOptions
	streams genericiooptions.IOStreams

	names         []string
	selector      string
	fieldSelector string
	allNamespaces bool
	dryRun        bool
	wait          bool
	timeout       time.Duration

	// Set from which flags were given.
	timeoutSet bool
}

func newReplayCommand(kube *kubeOptions, streams genericiooptions.IOStreams) *cobra.Command {
	o := &replayOptions{kube: kube, streams: streams}
	cmd := &cobra.Command{
		Use:   "replay (NAME... | -l SELECTOR | --field-selector SELECTOR)",
		Short: "Ask the operator to process FunnelEvents again",
		Long: `Replay asks funnel-operator to process FunnelEvents again: validate them, match
them against the FunnelSubscriptions as they are now, and deliver them, as if
they had just arrived. Use it once a failing target is fixed, or after adding
a subscription that should have seen past events.

Each event gets two merge patches, in this order: one of its metadata that
sets the annotation ` + funnelv1.AnnotationReplay + ` to a fresh value (the time of
the request), then one of its status subresource that sets status.phase to
Pending. The annotation alone is a replay request (the operator watches
finished events for it); the Pending phase hands a finished event back to the
operator's controllers at once. The operator starts the event's status over,
processes it, and records the value in status.observedReplay. Spec, labels
and other annotations are untouched. A status patch that fails is reported
(the exit code is non-zero) and --wait does not follow that event; the
operator still replays it when its watch sees the annotation.
Replaying needs the RBAC verb patch on funnelevents (and on
funnelevents/status for the faster start).

Name the events (in the namespace of -n or the kubeconfig), or select them
with -l (labels) and/or --field-selector (status.phase, spec.type and
spec.receiver, evaluated by the API server), also across namespaces with -A.
Every event is tried: a name that does not exist is an error for that name
only, and the exit code is non-zero if any event could not be replayed.

--wait then waits, up to --timeout for all of them, until the operator has
finished each replay, and prints its new phase and summary. The exit code is
then also non-zero if a replayed event ended Failed or did not finish in time.`,
		Example: `  # Replay one event and wait for the outcome
  kubectl funnel replay evt-6f1c0a6e-52d4-4b4e-9c55-0c1d3f7e8a90 --wait

  # Replay every failed event of namespace prod
  kubectl funnel replay -n prod --field-selector ` + funnelv1.FieldPhase + `=Failed

  # The failed lease.move_in events of the receiver "funnel", in any namespace: look first
  kubectl funnel replay -A --field-selector ` + funnelv1.FieldPhase + `=Failed,` + funnelv1.FieldType + `=lease.move_in,` + funnelv1.FieldReceiver + `=funnel --dry-run
  kubectl funnel replay -A --field-selector ` + funnelv1.FieldPhase + `=Failed,` + funnelv1.FieldType + `=lease.move_in,` + funnelv1.FieldReceiver + `=funnel

  # Everything that happened to application 74824, in any namespace
  kubectl funnel replay -A -l funnel.leasing.dev/lease-transaction-id=74824 --dry-run
  kubectl funnel replay -A -l funnel.leasing.dev/lease-transaction-id=74824`,
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			o.timeoutSet = cmd.Flags().Changed("timeout")
			return o.run(cmd.Context())
		},
	}

	f := cmd.Flags()
	f.StringVarP(&o.selector, "selector", "l", "", "Replay the events this label selector matches, e.g. funnel.leasing.dev/lease-transaction-id=74824")
	f.StringVar(&o.fieldSelector, "field-selector", "", "Replay the events this field selector matches, e.g. "+funnelv1.FieldPhase+"=Failed; FunnelEvents support "+
		funnelv1.FieldPhase+", "+funnelv1.FieldType+" and "+funnelv1.FieldReceiver)
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "With --selector or --field-selector, replay matching events of every namespace")
	f.BoolVar(&o.dryRun, "dry-run", false, "Print the events that would be replayed, and change nothing")
	f.BoolVar(&o.wait, "wait", false, "Wait until the operator has processed each replay, and print its outcome")
	f.DurationVar(&o.timeout, "timeout", defaultReplayTimeout, "How long --wait waits, for all the events")
	return cmd
}

// run is replay once the command line is parsed.
func (o *replayOptions) run(ctx context.Context) error {
	if err := o.validate(); err != nil {
		return err
	}
	sel, err := parseSelectors(o.selector, o.fieldSelector)
	if err != nil {
		return err
	}
	scope, err := resolveScope(o.kube, o.allNamespaces)
	if err != nil {
		return err
	}
	c, err := o.kube.Client()
	if err != nil {
		return err
	}
	// The operator records this value in status.observedReplay; values over
	// 64 characters would be recorded hashed, and this one never is.
	value := time.Now().UTC().Format(time.RFC3339Nano)
	metaPatch, err := replayPatch(value)
	if err != nil {
		return err
	}
	r := &replayer{c: c, scope: scope, value: value,
		metaPatch:   client.RawPatch(types.MergePatchType, metaPatch),
		statusPatch: client.RawPatch(types.MergePatchType, pendingPatch),
		dryRun:      o.dryRun, out: o.streams.Out, errOut: o.streams.ErrOut}

	if o.selecting() {
		err = r.replaySelected(ctx, sel)
		if err == nil && r.tried == 0 {
			fmt.Fprintf(o.streams.ErrOut, "No FunnelEvents match %s %s.\n", o.describeSelectors(), scope)
		}
	} else {
		err = r.replayNamed(ctx, o.names)
	}
	if err != nil {
		return err
	}

	var problems []string
	if r.failed > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d events could not be replayed", r.failed, r.tried))
	}
	if o.wait && len(r.requested) > 0 {
		endedFailed, err := r.wait(ctx, o.timeout)
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for the replays: %w", interrupted(ctx))
		}
		if endedFailed > 0 {
			problems = append(problems, fmt.Sprintf("%d of %d replayed events ended Failed", endedFailed, len(r.requested)))
		}
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// selecting reports whether the events are selected rather than named.
func (o *replayOptions) selecting() bool {
	return o.selector != "" || o.fieldSelector != ""
}

// describeSelectors quotes the selectors given, for messages.
func (o *replayOptions) describeSelectors() string {
	var quoted []string
	for _, s := range []string{o.selector, o.fieldSelector} {
		if s != "" {
			quoted = append(quoted, strconv.Quote(s))
		}
	}
	return strings.Join(quoted, " and ")
}

func (o *replayOptions) validate() error {
	switch {
	case len(o.names) == 0 && !o.selecting():
		return errors.New("name the events to replay, or select them with -l/--selector or --field-selector")
	case len(o.names) > 0 && o.selecting():
		return errors.New("NAME arguments cannot be combined with --selector or --field-selector")
	case len(o.names) > 0 && o.allNamespaces:
		return errors.New("-A/--all-namespaces needs --selector or --field-selector: names are looked up in one namespace (-n)")
	case o.timeout <= 0:
		return fmt.Errorf("--timeout must be positive, got %s", o.timeout)
	case o.timeoutSet && !o.wait:
		return errors.New("--timeout applies to --wait only")
	case o.wait && o.dryRun:
		return errors.New("--wait and --dry-run cannot be combined")
	}
	return nil
}

// replayPatch is the first merge patch replay sends, of the object: a new
// replay value. Nothing else is touched.
func replayPatch(value string) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{funnelv1.AnnotationReplay: value},
	}})
}

// pendingPatch is the second merge patch replay sends, of the status
// subresource: phase Pending, which brings a finished event back into the
// operator's cache. The rest of the status is the operator's.
var pendingPatch = []byte(`{"status":{"phase":"` + string(funnelv1.PhasePending) + `"}}`)

// replayer replays events one at a time and keeps the score.
type replayer struct {
	c     client.Client
	scope eventScope
	value string
	// metaPatch sets the replay annotation, statusPatch status.phase.
	metaPatch, statusPatch client.Patch
	dryRun                 bool

	out, errOut io.Writer

	// tried counts the events named or selected, failed those that could
	// not be replayed; requested are those the operator was asked to
	// replay, for --wait.
	tried, failed int
	requested     []types.NamespacedName
}

// replayNamed replays the named events of the scope's namespace. It returns
// an error only when nothing can be replayed at all.
func (r *replayer) replayNamed(ctx context.Context, names []string) error {
	done := map[string]bool{}
	for _, name := range names {
		if done[name] {
			continue
		}
		done[name] = true
		if ctx.Err() != nil {
			return fmt.Errorf("replaying: %w", interrupted(ctx))
		}
		var ev funnelv1.FunnelEvent
		err := r.c.Get(ctx, types.NamespacedName{Namespace: r.scope.namespace, Name: name}, &ev)
		switch {
		case meta.IsNoMatchError(err):
			return listError(err, r.scope)
		case apierrors.IsNotFound(err):
			r.tried++
			r.fail(fmt.Sprintf("funnelevent/%s not found %s", name, r.scope))
			continue
		case err != nil:
			r.tried++
			r.fail(fmt.Sprintf("reading funnelevent/%s: %v", name, err))
			continue
		}
		r.replay(ctx, &ev)
	}
	return nil
}

// replaySelected replays the events sel selects, a page at a time.
func (r *replayer) replaySelected(ctx context.Context, sel eventSelector) error {
	_, err := listEvents(ctx, r.c, r.scope, sel, func(page []funnelv1.FunnelEvent) error {
		for i := range page {
			if ctx.Err() != nil {
				return fmt.Errorf("replaying: %w", interrupted(ctx))
			}
			r.replay(ctx, &page[i])
		}
		return nil
	})
	return err
}

// replay patches one event, annotation first and status.phase second, or
// says it would. The annotation is the request; the phase saves the operator
// the wait for its watch of finished events.
func (r *replayer) replay(ctx context.Context, ev *funnelv1.FunnelEvent) {
	r.tried++
	ref, was := eventRef(client.ObjectKeyFromObject(ev), r.scope), eventPhase(ev)
	if r.dryRun {
		fmt.Fprintf(r.out, "%s would be replayed (now %s)\n", ref, was)
		return
	}
	if err := r.c.Patch(ctx, ev, r.metaPatch); err != nil {
		r.fail(fmt.Sprintf("replaying %s: %v", ref, err))
		return
	}
	if err := r.c.Status().Patch(ctx, ev, r.statusPatch); err != nil {
		r.fail(fmt.Sprintf("replaying %s: the replay annotation is set, but setting status.phase to %s failed (the operator replays the event once its watch sees the annotation; --wait does not follow it): %v",
			ref, funnelv1.PhasePending, err))
		return
	}
	fmt.Fprintf(r.out, "%s replay requested (was %s)\n", ref, was)
	r.requested = append(r.requested, client.ObjectKeyFromObject(ev))
}

func (r *replayer) fail(msg string) {
	r.failed++
	fmt.Fprintln(r.errOut, "error:", msg)
}

// wait waits until the operator has finished every requested replay, in
// order, and prints each outcome. It returns how many ended Failed (or
// vanished), and an error when the time ran out first.
func (r *replayer) wait(ctx context.Context, timeout time.Duration) (int, error) {
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	failed := 0
	for i, key := range r.requested {
		var ev funnelv1.FunnelEvent
		var lastErr error
		err := wait.PollUntilContextCancel(waitCtx, replayPollInterval, true, func(ctx context.Context) (bool, error) {
			var cur funnelv1.FunnelEvent // fresh: nothing of the last read may stay
			if err := r.c.Get(ctx, key, &cur); err != nil {
				if apierrors.IsNotFound(err) {
					return false, err
				}
				lastErr = err // perhaps passing: try again until the timeout
				return false, nil
			}
			ev = cur
			return ev.Status.ObservedReplay == r.value && ev.Status.Phase.Finished(), nil
		})
		ref := eventRef(key, r.scope)
		switch {
		case err == nil:
			fmt.Fprintln(r.out, replayOutcome(ref, &ev))
			if ev.Status.Phase == funnelv1.PhaseFailed {
				failed++
			}
		case apierrors.IsNotFound(err):
			failed++
			fmt.Fprintf(r.errOut, "error: %s was deleted before its replay finished\n", ref)
		case ctx.Err() != nil:
			return failed, interrupted(ctx)
		default:
			msg := fmt.Sprintf("timed out after %s waiting for %d of %d replayed events, from %s on (is the operator running? it sets status.observedReplay once it has processed a replay)",
				timeout, len(r.requested)-i, len(r.requested), ref)
			if lastErr != nil {
				msg += fmt.Sprintf("; last error: %v", lastErr)
			}
			return failed, errors.New(msg)
		}
	}
	return failed, nil
}

// replayOutcome is the line --wait prints for a finished replay: the phase,
// the event's summary, and why it failed.
func replayOutcome(ref string, ev *funnelv1.FunnelEvent) string {
	line := ref + " replayed: " + string(ev.Status.Phase)
	if ev.Status.Summary != "" {
		line += " (" + ev.Status.Summary + ")"
	}
	if ev.Status.Phase == funnelv1.PhaseFailed {
		if c := meta.FindStatusCondition(ev.Status.Conditions, funnelv1.ConditionReady); c != nil && c.Message != "" {
			line += ": " + c.Message
		}
	}
	return line
}
