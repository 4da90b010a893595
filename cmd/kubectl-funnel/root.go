package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Exit codes. 130 is the shell's code for a command ended by Ctrl-C.
const (
	exitOK          = 0
	exitFailure     = 1
	exitInterrupted = 130
)

// run executes the command line args and returns the process exit code.
// It is main without the process, so tests can drive the whole CLI with a
// fake cluster in kube.
func run(ctx context.Context, kube *kubeOptions, args []string, streams genericiooptions.IOStreams) int {
	root := newRootCommand(kube, streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(streams.ErrOut, "interrupted:", err)
		return exitInterrupted
	default:
		fmt.Fprintln(streams.ErrOut, "error:", err)
		return exitFailure
	}
}

// newRootCommand builds "kubectl funnel". Every subcommand is constructed
// in a file of its own from the shared kubeOptions and streams, so adding
// one is one file and one AddCommand line.
func newRootCommand(kube *kubeOptions, streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-funnel",
		Short: "Work with funnel-operator: send test events, replay, count and follow FunnelEvents",
		Long: `kubectl funnel works with funnel-operator, which stores the webhook events
Funnel Leasing posts as FunnelEvents (kubectl get fev) and routes them to
FunnelSubscriptions.

The standard kubeconfig flags (--kubeconfig, --context, -n/--namespace, ...)
select the cluster and namespace, as with kubectl.`,
		Example: `  # Send one realistic lease_transaction.status_updated event to the FunnelReceiver "funnel"
  kubectl funnel send --url http://127.0.0.1:8080

  # Load-test a receiver: 1000 events, 20 at a time, each delivered twice
  kubectl funnel send renter.created --count 1000 --concurrency 20 --duplicate 2`,
		Annotations: map[string]string{
			// Usage lines read "kubectl funnel ..." as the user types them.
			cobra.CommandDisplayNameAnnotation: "kubectl funnel",
		},
		SilenceUsage:  true,
		SilenceErrors: true, // run prints the error once, without usage.
	}
	kube.flags.AddFlags(root.PersistentFlags())
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)

	root.AddCommand(newSendCommand(kube, streams))
	root.AddCommand(newReplayCommand(kube, streams))
	root.AddCommand(newStatsCommand(kube, streams))
	root.AddCommand(newTailCommand(kube, streams))
	root.AddCommand(newHistoryCommand(kube, streams))
	return root
}
