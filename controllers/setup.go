// Package controllers holds the operator's reconcilers and the manager wiring they share.
package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Options configures every controller the manager runs.
type Options struct {
	// ExternalURL is the operator's public base URL, used for status.url hints.
	ExternalURL string
}

// Setup registers every controller with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := (&ReceiverReconciler{Client: mgr.GetClient(), ExternalURL: opts.ExternalURL}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the FunnelReceiver controller: %w", err)
	}
	return nil
}
