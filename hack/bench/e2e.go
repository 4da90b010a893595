package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// e2eConcurrency is the client concurrency of the end-to-end throughput run and its
// baseline.
const e2eConcurrency = 32

// e2e measures POST to phase Succeeded with the operator as the leader, without and with
// one HTTP subscription, and without subscription with the archive on.
func (b *bench) e2e(ctx context.Context) error {
	step, err := b.e2eStep(ctx, "no subscription", nsE2E, 3)
	if err != nil {
		return err
	}
	b.res.E2E = append(b.res.E2E, *step)

	sink, err := harness.NewSink()
	if err != nil {
		return err
	}
	defer sink.Close()
	sub := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: nsE2ESub, Name: "bench-sink"},
		Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sink.URL}}}}
	if err := b.c.Create(ctx, sub); err != nil {
		return fmt.Errorf("creating FunnelSubscription %s/%s: %w", sub.Namespace, sub.Name, err)
	}
	if err := b.poll(ctx, 30*time.Second, "the FunnelSubscription to be Ready", func() (bool, error) {
		err := b.c.Get(ctx, client.ObjectKeyFromObject(sub), sub)
		return err == nil && meta.IsStatusConditionTrue(sub.Status.Conditions, funnelv1.ConditionReady), client.IgnoreNotFound(err)
	}); err != nil {
		return err
	}
	if step, err = b.e2eStep(ctx, "one HTTP subscription to a local sink", nsE2ESub, 4); err != nil {
		return err
	}
	events := step.Throughput.Events + step.Paced.Events
	step.SinkRequests, step.SinkDistinctKeys = sink.Len(), len(sink.ByKey())
	if step.SinkDistinctKeys < events {
		b.note("e2e with a subscription: the sink saw %d distinct idempotency keys for %d events: not every Succeeded event was delivered", step.SinkDistinctKeys, events)
	}
	b.res.E2E = append(b.res.E2E, *step)

	if step, err = b.archiveStep(ctx); err != nil {
		return err
	}
	b.res.E2E = append(b.res.E2E, *step)
	if step.Ratio != nil && b.res.E2E[0].Ratio != nil {
		b.res.Archive.E2ERatioVsWithout = ratio(*step.Ratio, *b.res.E2E[0].Ratio)
	}
	return nil
}

// e2eStep runs the throughput run (a closed loop, then until every event finished, with
// the API writes it costs) between two raw baselines, and the paced run (an open loop at
// half that rate: latency without a backlog).
func (b *bench) e2eStep(ctx context.Context, name, ns string, stream uint64) (*e2eStep, error) {
	label := "e2e " + name
	step := &e2eStep{Name: name, BaselineConcurrency: e2eConcurrency}
	// Background writes of earlier phases (the receiver's duplicate counts, a backlog
	// still draining) would slow the baseline down and flatter the ratio.
	if err := b.waitWritesQuiet(ctx, time.Minute); err != nil {
		return nil, err
	}
	rawSrc := newSource(b.o.seed, 100+stream, 0)
	before, err := b.create(ctx, nsRaw, send.Load{Concurrency: e2eConcurrency, Duration: b.o.duration}, rawSrc, false)
	if err != nil {
		return nil, fmt.Errorf("%s, raw baseline before: %w", label, err)
	}
	w, err := b.watch(ctx, ns)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	writesBefore, err := b.eventWrites(ctx)
	if err != nil {
		return nil, err
	}
	src := newSource(b.o.seed, stream, 0)
	if step.Throughput, err = b.e2eRun(ctx, w, ns, label, send.Load{Concurrency: e2eConcurrency, Duration: b.o.duration}, src); err != nil {
		return nil, err
	}
	// The last status writes land after the watch saw the final phase.
	if err := b.waitWritesQuiet(ctx, 15*time.Second); err != nil {
		return nil, err
	}
	writesAfter, err := b.eventWrites(ctx)
	if err != nil {
		return nil, err
	}
	step.WritesByVerb = map[string]float64{}
	total := 0.0
	for k, v := range writesAfter {
		if d := v - writesBefore[k]; d != 0 {
			step.WritesByVerb[k], total = d, total+d
		}
	}
	step.WritesPerEvent = ratio(total, float64(step.Throughput.Events))
	if unexpected := unexpectedWrites(step.WritesByVerb); len(unexpected) > 0 {
		b.note("%s: writes on funnelevents other than the receiver's POST 201 and the controllers' PUT/status or PATCH/status 200: %v", label, unexpected)
	}
	// The baseline again once every event finished: the run lasts tens of seconds, through
	// which the raw rate drifts; the mean of before and after is the baseline of the
	// moments between them.
	after, err := b.create(ctx, nsRaw, send.Load{Concurrency: e2eConcurrency, Duration: b.o.duration}, rawSrc, false)
	if err != nil {
		return nil, fmt.Errorf("%s, raw baseline after: %w", label, err)
	}
	step.RawBeforePerSecond, step.RawAfterPerSecond = before.perSecond(), after.perSecond()
	step.RawCreatesPerSecond = round3((step.RawBeforePerSecond + step.RawAfterPerSecond) / 2)
	step.Ratio = ratio(step.Throughput.EventsPerSecond, step.RawCreatesPerSecond)
	logf("%s: %d events, %.1f events/s to Succeeded (%.2f× raw %.1f · %.1f creates/s), POST→Succeeded p50 %s p99 %s, %.2f writes/event %v; CPU %s",
		label, step.Throughput.Events, step.Throughput.EventsPerSecond, valueOr(step.Ratio), step.RawBeforePerSecond, step.RawAfterPerSecond,
		fmtSeconds(step.Throughput.Latency.P50), fmtSeconds(step.Throughput.Latency.P99), valueOr(step.WritesPerEvent), step.WritesByVerb, fmtCores(step.Throughput.CPUCores))

	rate := step.Throughput.EventsPerSecond / 2
	if step.Paced, err = b.e2eRun(ctx, w, ns, label+", paced", send.Load{Rate: rate, Duration: b.o.duration, Concurrency: 1024}, src); err != nil {
		return nil, err
	}
	step.Paced.OfferedPerSecond = round3(rate)
	step.Missing = step.Throughput.Missing + step.Paced.Missing
	logf("%s, paced at %.1f/s: %d events, POST→Succeeded p50 %s p99 %s", label, rate, step.Paced.Events,
		fmtSeconds(step.Paced.Latency.P50), fmtSeconds(step.Paced.Latency.P99))
	return step, nil
}

// e2eRun posts in the shape of l, then waits until the watch saw every acknowledged event
// finished (a final status.phase: its last write), and measures.
func (b *bench) e2eRun(ctx context.Context, w *watcher, ns, label string, l send.Load, src *source) (*e2eRun, error) {
	cpu := sampleCPU(b.procs())
	p, err := b.post(ctx, ns, l, src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	timeout := pick(&b.o, 120*time.Second, 60*time.Second)
	if err := b.poll(ctx, timeout, "every event to finish", func() (bool, error) { return w.finished(p.acked) }); err != nil && !errors.Is(err, errTimedOut) {
		return nil, err
	}
	run := &e2eRun{Events: len(p.acked), Concurrency: l.Concurrency, CPUCores: coresSince(cpu), succeededAt: map[string]time.Time{}}
	b.checkOther(label, run.CPUCores)
	var first, last time.Time
	var lat []time.Duration
	for name, start := range p.acked {
		if first.IsZero() || start.Before(first) {
			first = start
		}
		phase, at := w.state(name)
		switch {
		case at.IsZero():
			run.Unfinished++
		case phase != funnelv1.PhaseSucceeded:
			run.OtherPhase++
		default:
			run.Succeeded++
			run.succeededAt[name] = at
			lat = append(lat, at.Sub(start))
			if at.After(last) {
				last = at
			}
		}
	}
	if run.Unfinished > 0 {
		b.note("%s: %d of %d events not finished within %s", label, run.Unfinished, run.Events, timeout)
	}
	run.Latency, run.firstPost = latencyOf(lat), first
	if !last.IsZero() {
		run.Seconds = round3(last.Sub(first).Seconds())
		run.EventsPerSecond = round3(float64(run.Succeeded) / last.Sub(first).Seconds())
	}
	run.Missing, err = b.verify(ctx, ns, p.names())
	return run, err
}

// watcher follows the FunnelEvents of a namespace and stamps when each one finished. It
// watches metadata only, one watch per final phase (the field selector says which): the
// API server then sends each event once, when it finishes, as protobuf metadata, which is
// as little as the measurement can add to the work measured.
type watcher struct {
	mu sync.Mutex
	// phase and at: the final phase of each event seen, and when the watch saw it.
	phase  map[string]funnelv1.EventPhase
	at     map[string]time.Time
	err    error
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// watch starts a watcher of ns from now on (events finished before are not reported).
func (b *bench) watch(ctx context.Context, ns string) (*watcher, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
	if err := b.c.List(ctx, list, client.InNamespace(ns), client.Limit(1)); err != nil {
		return nil, fmt.Errorf("listing FunnelEvents in %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{phase: map[string]funnelv1.EventPhase{}, at: map[string]time.Time{}, cancel: cancel}
	for _, phase := range []funnelv1.EventPhase{funnelv1.PhaseSucceeded, funnelv1.PhaseFailed, funnelv1.PhaseIgnored} {
		w.done.Go(func() { w.run(ctx, b.c, ns, list.ResourceVersion, phase) })
	}
	return w, nil
}

// run follows the events of ns that reach phase, opening the watch again from the last
// resource version whenever the server ends it.
func (w *watcher) run(ctx context.Context, c client.WithWatch, ns, rv string, phase funnelv1.EventPhase) {
	for ctx.Err() == nil {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
		wi, err := c.Watch(ctx, list, client.InNamespace(ns), &client.ListOptions{
			FieldSelector: fields.OneTermEqualSelector(funnelv1.FieldPhase, string(phase)),
			Raw:           &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			w.fail(ctx, fmt.Errorf("watching %s FunnelEvents in %s: %w", phase, ns, err))
			return
		}
		for ev := range wi.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				w.fail(ctx, fmt.Errorf("watching %s FunnelEvents in %s: %v", phase, ns, ev.Object))
				wi.Stop()
				return
			}
			m, err := meta.Accessor(ev.Object)
			if err != nil {
				continue
			}
			rv = m.GetResourceVersion()
			if ev.Type != watch.Bookmark {
				w.mu.Lock()
				if _, seen := w.at[m.GetName()]; !seen {
					w.phase[m.GetName()], w.at[m.GetName()] = phase, now
				}
				w.mu.Unlock()
			}
		}
		wi.Stop()
	}
}

func (w *watcher) fail(ctx context.Context, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && ctx.Err() == nil {
		w.err = err
	}
}

// finished reports whether every event of names has been seen finished.
func (w *watcher) finished(names map[string]time.Time) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for n := range names {
		if _, ok := w.at[n]; !ok {
			return false, w.err
		}
	}
	return true, w.err
}

// state is the final phase of an event and when the watch saw it (zero: not yet).
func (w *watcher) state(name string) (funnelv1.EventPhase, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.phase[name], w.at[name]
}

func (w *watcher) stop() {
	w.cancel()
	w.done.Wait()
}

// writeVerbs are the apiserver_request_total verbs that change an object.
var writeVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// eventWrites are the API server's apiserver_request_total counters of writes on
// funnelevents, by "VERB[/subresource] code".
func (b *bench) eventWrites(ctx context.Context) (map[string]float64, error) {
	fams, err := b.apiMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return writesOf(fams)
}

func writesOf(fams map[string]*dto.MetricFamily) (map[string]float64, error) {
	fam, ok := fams["apiserver_request_total"]
	if !ok {
		return nil, fmt.Errorf("the API server's /metrics has no apiserver_request_total")
	}
	out := map[string]float64{}
	for _, m := range fam.GetMetric() {
		l := harness.Labels(m)
		verb := strings.ToUpper(l["verb"])
		if l["group"] != funnelv1.GroupVersion.Group || l["resource"] != "funnelevents" || !writeVerbs[verb] {
			continue
		}
		if l["subresource"] != "" {
			verb += "/" + l["subresource"]
		}
		out[verb+" "+l["code"]] += m.GetCounter().GetValue()
	}
	return out, nil
}

// waitWritesQuiet waits until no write on funnelevents happened for a second, at most
// timeout (then it notes it and goes on).
func (b *bench) waitWritesQuiet(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1.0
	for {
		writes, err := b.eventWrites(ctx)
		if err != nil {
			return err
		}
		total := 0.0
		for _, v := range writes {
			total += v
		}
		if total == last {
			return nil
		}
		if time.Now().After(deadline) {
			b.note("writes on funnelevents were still going on %s after the previous step; the e2e baseline and write count may include some of them", timeout)
			return nil
		}
		last = total
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// expectedWrites are the writes on funnelevents of an event without subscriptions: the
// receiver's create, and the controllers' one status write (an update, or a merge patch).
var expectedWrites = map[string]bool{"POST 201": true, "PUT/status 200": true, "PATCH/status 200": true}

// unexpectedWrites returns the writes of byVerb that are not expectedWrites.
func unexpectedWrites(byVerb map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range byVerb {
		if !expectedWrites[k] {
			out[k] = v
		}
	}
	return out
}
