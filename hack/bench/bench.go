package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/funnel-operator/funnel-operator/test/harness"
)

// The namespaces of the phases; each has its own FunnelReceiver, so every phase's events
// can be listed and verified on their own.
const (
	// nsRaw is the one namespace the operator does not watch (--namespaces leaves it
	// out): the raw baseline's events there are never processed.
	nsRaw = "bench-raw"
	// nsRawProcessed holds raw events the controllers process, like ingested ones.
	nsRawProcessed = "bench-raw-processed"
	nsIngest       = "bench-ingest"
	nsE2E          = "bench-e2e"
	nsE2ESub       = "bench-e2e-subscription"
	nsScaling      = "bench-scaling"
	nsMemory       = "bench-memory"
)

// bench is one run.
type bench struct {
	o      options
	cl     *cluster
	op     *operator
	lease  *leaseHolder
	res    *results
	tokens map[string]string
	// disturbed lists the measurements during which other processes used the CPU.
	disturbed []string
}

// run starts everything, runs the phases, and writes the results.
func run(ctx context.Context, o options) error {
	started := time.Now()
	dir, err := os.MkdirTemp("", "funnel-bench-")
	if err != nil {
		return fmt.Errorf("creating a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	tempDir.Store(&dir)
	for _, d := range []string{o.operatorPprof, o.apiserverPprof} {
		if d != "" {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("creating the profile directory: %w", err)
			}
		}
	}

	b := &bench{o: o, res: newResults(o), tokens: map[string]string{}}
	if b.op, err = newOperator(o, filepath.Join(dir, "kubeconfig"), dir, b.watched()); err != nil {
		return err
	}
	cl, err := startCluster(o, dir)
	if err != nil {
		return err
	}
	defer cl.stop()
	b.cl = cl
	b.lease = &leaseHolder{c: cl.c}
	defer b.lease.stop()
	if err := cl.createNamespace(ctx, nsOperator); err != nil {
		return err
	}
	for _, ns := range b.namespaces() {
		if ns == nsRaw {
			// No receiver: nothing is sent there, and the operator does not watch it.
			if err := cl.createNamespace(ctx, ns); err != nil {
				return err
			}
			continue
		}
		if b.tokens[ns], err = cl.setupNamespace(ctx, ns); err != nil {
			return err
		}
	}
	logf("starting the operator: %s (log in %s)", o.manager, b.op.LogPath)
	if err := b.op.Start(); err != nil {
		return err
	}
	defer b.op.stop()
	if o.operatorPprof != "" {
		// Kept next to the profiles: the temporary directory goes at the end.
		defer b.op.keepLog(filepath.Join(o.operatorPprof, "operator.log"))
	}
	if err := b.op.waitReady(ctx); err != nil {
		return err
	}
	for _, ns := range b.watched() {
		if ns == nsOperator {
			continue
		}
		if err := cl.waitReceiverReady(ctx, ns, 60*time.Second); err != nil {
			return errors.Join(err, b.op.Alive())
		}
	}

	steps := []struct {
		phase string
		run   func(context.Context) error
	}{
		{phaseMemory, b.memorySmall},
		{phaseRaw, b.raw},
		{phaseCosts, b.costs},
		{phaseIngest, b.ingest},
		{phaseE2E, b.e2e},
		{phaseScaling, b.scaling},
		{phaseMemory, b.memoryLarge},
	}
	for _, s := range steps {
		if !o.has(s.phase) {
			continue
		}
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s phase: %w", s.phase, errors.Join(err, b.op.Alive()))
		}
		if err := b.op.Alive(); err != nil {
			return fmt.Errorf("after the %s phase: %w", s.phase, err)
		}
	}

	if len(b.disturbed) > 0 {
		b.note("other processes (not this run's) used at least 0.25 of the %d cores during %d measurements, whose figures are disturbed: %s",
			b.res.Machine.NProc, len(b.disturbed), strings.Join(b.disturbed, ", "))
	}
	b.res.DurationSeconds = round3(time.Since(started).Seconds())
	b.res.summarize()
	fmt.Println()
	fmt.Print(renderTables(b.res))
	if o.out == "" {
		logf("results not written (a --quick or --phases run writes only with --out DIR)")
		return nil
	}
	return b.write()
}

// namespaces are the namespaces the selected phases use.
func (b *bench) namespaces() []string {
	var out []string
	add := func(phase string, ns ...string) {
		if b.o.has(phase) {
			out = append(out, ns...)
		}
	}
	if b.o.has(phaseRaw) || b.o.has(phaseCosts) || (b.o.adjacentRaw && (b.o.has(phaseIngest) || b.o.has(phaseE2E))) {
		out = append(out, nsRaw)
	}
	if b.o.rawProcessed {
		add(phaseRaw, nsRawProcessed)
	}
	add(phaseIngest, nsIngest)
	add(phaseE2E, nsE2E, nsE2ESub)
	add(phaseScaling, nsScaling)
	add(phaseMemory, nsMemory)
	return out
}

// watched are the namespaces the operator watches (--namespaces): every namespace of
// the run but nsRaw, and nsOperator (so the list is never empty).
func (b *bench) watched() []string {
	out := []string{nsOperator}
	for _, ns := range b.namespaces() {
		if ns != nsRaw {
			out = append(out, ns)
		}
	}
	return out
}

func (b *bench) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.res.Notes = append(b.res.Notes, msg)
	logf("note: %s", msg)
}

// checkOther notes when processes outside the run used a noticeable share of the CPU
// during a measurement: on a shared machine its figures are disturbed.
func (b *bench) checkOther(what string, cores map[string]float64) {
	if what == "" || cores[otherKey] < 0.25 {
		return
	}
	b.disturbed = append(b.disturbed, fmt.Sprintf("%s (%.2f)", what, cores[otherKey]))
}

// webhookURL is the receiver URL of ns.
func (b *bench) webhookURL(ns string) string {
	return "http://" + b.op.WebhookAddr + "/webhooks/" + ns + "/" + receiverName
}

// profiles starts CPU profiles of the operator and the API server (as requested by the
// flags) covering the next seconds, named after name; the returned function waits for
// them.
func (b *bench) profiles(ctx context.Context, name string, d time.Duration) func() {
	secs := max(int(d.Seconds()), 1)
	var done []chan struct{}
	start := func(fetch func() error, what string) {
		ch := make(chan struct{})
		done = append(done, ch)
		go func() {
			defer close(ch)
			if err := fetch(); err != nil && ctx.Err() == nil {
				logf("profile %s of the %s: %v", name, what, err)
			}
		}()
	}
	if b.o.operatorPprof != "" {
		file := filepath.Join(b.o.operatorPprof, "operator-"+name+".pprof")
		start(func() error { return b.op.Profile(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), file) }, "operator")
	}
	if b.o.apiserverPprof != "" {
		file := filepath.Join(b.o.apiserverPprof, "apiserver-"+name+".pprof")
		url := strings.TrimSuffix(b.cl.cfg.Host, "/") + fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)
		start(func() error { return harness.FetchTo(ctx, b.cl.http, url, file) }, "API server")
	}
	return func() {
		for _, ch := range done {
			<-ch
		}
	}
}

// verify lists the events of ns and returns how many of names do not exist.
func (b *bench) verify(ctx context.Context, ns string, names []string) (int, error) {
	have, err := b.cl.eventNames(ctx, ns)
	if err != nil {
		return 0, err
	}
	missing := 0
	var examples []string
	for _, n := range names {
		if _, ok := have[n]; !ok {
			missing++
			if len(examples) < 5 {
				examples = append(examples, n)
			}
		}
	}
	if missing > 0 {
		b.note("%d acknowledged events missing in %s, e.g. %v", missing, ns, examples)
	}
	return missing, nil
}

// drain waits for the controllers to finish what the namespaces hold; a timeout is
// noted, not fatal.
func (b *bench) drain(ctx context.Context, after string, namespaces ...string) (float64, error) {
	d, ok, err := b.cl.waitDrained(ctx, namespaces, b.o.drainTimeout)
	if err != nil {
		return 0, err
	}
	if !ok {
		b.note("after %s the controllers had not finished the backlog in %s within --drain-timeout %s; the next step starts with it", after, strings.Join(namespaces, ", "), b.o.drainTimeout)
	}
	return round3(d.Seconds()), nil
}

// leadAndDrain ends a follower measurement: the bench releases the Lease, the operator
// takes it and its controllers work off the backlog the follower left in ns. The time
// counts from the release, so it includes the take-over (the operator retries every
// 2 s), which is returned too.
func (b *bench) leadAndDrain(ctx context.Context, ns, after string) (drain, takeover float64, err error) {
	start := time.Now()
	if err := b.lead(ctx); err != nil {
		return 0, 0, err
	}
	takeover = round3(time.Since(start).Seconds())
	if _, err := b.drain(ctx, after, ns); err != nil {
		return 0, 0, err
	}
	return round3(time.Since(start).Seconds()), takeover, nil
}

// reconciles is how many reconciles the event controllers have done so far (the
// operator's controller_runtime_reconcile_total): a follower does none.
func (b *bench) reconciles(ctx context.Context) (float64, error) {
	fams, err := b.op.metrics(ctx)
	if err != nil {
		return 0, err
	}
	return harness.Sum(fams, "controller_runtime_reconcile_total", func(l map[string]string) bool { return families[l["controller"]] }), nil
}

// apiCode is the HTTP status of an API error (0 when it has none).
func apiCode(err error) int {
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		return int(s.Status().Code)
	}
	return 0
}
