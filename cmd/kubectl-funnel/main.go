// Command kubectl-funnel is the kubectl plugin of funnel-operator: installed
// on PATH it runs as "kubectl funnel". Its send command stands in for
// Funnel's undocumented testing API by posting realistic, correctly
// authenticated events to a FunnelReceiver.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func main() {
	// Ctrl-C cancels the context, and with it every request in flight.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, newKubeOptions(), os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	stop()
	os.Exit(code)
}
