// Package controllers holds the operator's reconcilers and the manager wiring they share.
package controllers

import (
	"context"
	"fmt"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/controllers/receiver"
)

// Options configures every controller the manager runs.
type Options struct {
	// ExternalURL is the operator's public base URL, used for status.url hints.
	ExternalURL string
	// Webhook configures the receiver Funnel posts to.
	Webhook receiver.Options
}

// Setup registers every controller and the webhook receiver with the manager.
func Setup(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := (&ReceiverReconciler{Client: mgr.GetClient(), ExternalURL: opts.ExternalURL}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("setting up the FunnelReceiver controller: %w", err)
	}

	// The receiver writes with its own client, free of client-side rate limits: its
	// throughput is bounded by the per-receiver limit and the API server's priority and
	// fairness, and a 20 QPS client-side limit would make Funnel wait for nothing.
	cfg := rest.CopyConfig(mgr.GetConfig())
	cfg.QPS, cfg.Burst = -1, 0
	writer, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("creating the receiver's client: %w", err)
	}
	srv := receiver.NewServer(opts.Webhook, mgr.GetCache(), writer)
	if err := mgr.Add(srv); err != nil {
		return fmt.Errorf("adding the webhook receiver: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook-receiver", srv.ReadyCheck); err != nil {
		return fmt.Errorf("adding the webhook receiver's ready check: %w", err)
	}
	return nil
}
