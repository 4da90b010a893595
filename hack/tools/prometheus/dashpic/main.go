// Command dashpic draws a picture of a Grafana dashboard without Grafana (which cannot be
// installed here): it runs the operator as `make run` does, scrapes it with a real
// Prometheus, sends Funnel-like traffic with kubectl funnel send for a while, then
// evaluates every panel's own queries over that run and draws them on the dashboard's
// grid. `make dashboard-picture` runs it and writes docs/dashboard.png.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/funnel-operator/funnel-operator/hack/tools/prometheus/grafana"
)

type options struct {
	repo, bin, prometheus, kubectl string
	dashboard, out                 string
	duration                       time.Duration
	keep                           bool
}

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", ".", "Repository root.")
	flag.StringVar(&o.bin, "bin", "bin", "Directory with manager, kubectl-funnel and devenv (make build).")
	flag.StringVar(&o.prometheus, "prometheus", "", "The prometheus binary (make tools).")
	flag.StringVar(&o.kubectl, "kubectl", "", "kubectl (the control plane's, make envtest-assets).")
	flag.StringVar(&o.dashboard, "dashboard", "config/grafana/funnel-operator.json", "Dashboard to draw.")
	flag.StringVar(&o.out, "out", "docs/dashboard.png", "Picture to write.")
	flag.DurationVar(&o.duration, "duration", 10*time.Minute, "How long to send traffic.")
	flag.BoolVar(&o.keep, "keep", false, "Keep the working directory (logs, Prometheus data).")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "dashpic:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.prometheus == "" || o.kubectl == "" {
		return errors.New("--prometheus and --kubectl are required")
	}
	dash, err := grafana.Read(inRepo(o.repo, o.dashboard))
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "dashpic-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Println("dashpic: working directory", work)
	} else {
		defer os.RemoveAll(work)
	}
	env, err := startEnvironment(ctx, o, work)
	if err != nil {
		return err
	}
	defer env.stop()

	start := time.Now()
	if err := env.traffic(ctx, o.duration); err != nil {
		return err
	}
	// Two more scrapes, so the last traffic is in the data.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * scrapeInterval):
	}
	end := time.Now()

	fmt.Printf("dashpic: evaluating %d panels over %s\n", len(dash.AllPanels()), end.Sub(start).Round(time.Second))
	data, err := evaluate(ctx, env.prometheusURL, dash, start, end)
	if err != nil {
		return err
	}
	caption := fmt.Sprintf("%s: each panel's own queries, evaluated by Prometheus (module %s) over %s of make run with kubectl funnel send traffic, %s UTC. Drawn by hack/tools/prometheus/dashpic, not by Grafana.",
		o.dashboard, env.prometheusVersion, o.duration, start.UTC().Format("2006-01-02 15:04"))
	if err := drawDashboard(dash, data, caption, start, end, inRepo(o.repo, o.out)); err != nil {
		return err
	}
	fmt.Println("dashpic: wrote", o.out)
	return nil
}

// inRepo resolves a path relative to the repository root.
func inRepo(repo, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(repo, path)
}
