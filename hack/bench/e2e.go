package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

const subscriptionResource = "funnelsubscriptions"

// e2e measures POST to phase Succeeded, without and with one HTTP subscription.
func (b *bench) e2e(ctx context.Context) error {
	step, err := b.e2eStep(ctx, "no subscription", nsE2E, 3)
	if err != nil {
		return err
	}
	b.res.E2E = append(b.res.E2E, *step)

	const name = "one HTTP subscription to a local sink"
	ok, err := b.cl.hasResource(subscriptionResource)
	if err != nil {
		return err
	}
	if !ok {
		b.res.E2E = append(b.res.E2E, e2eStep{Name: name, Skipped: "FunnelSubscription not available"})
		logf("e2e with a subscription: skipped: FunnelSubscription not available (no %s in %s)", subscriptionResource, funnelv1.GroupVersion)
		return nil
	}
	sink := newSink()
	defer sink.Close()
	sub := newSubscription(nsE2ESub, sink.URL)
	if err := b.cl.c.Create(ctx, sub); err != nil {
		return fmt.Errorf("creating FunnelSubscription %s/%s: %w", sub.GetNamespace(), sub.GetName(), err)
	}
	defer func() { _ = b.cl.c.Delete(context.WithoutCancel(ctx), sub) }()
	if reason := b.waitSubscriptionReady(ctx, sub); reason != "" {
		b.res.E2E = append(b.res.E2E, e2eStep{Name: name, Skipped: reason})
		logf("e2e with a subscription: skipped: %s", reason)
		return nil
	}
	step, err = b.e2eStep(ctx, name, nsE2ESub, 4)
	if err != nil {
		return err
	}
	step.SinkRequests = ptrTo(int(sink.requests.Load()))
	step.SinkDistinctKeys = ptrTo(sink.distinct())
	events := step.Throughput.Events
	if step.Paced != nil {
		events += step.Paced.Events
	}
	logf("e2e with a subscription: the sink received %d requests, %d distinct idempotency keys, for %d events", *step.SinkRequests, *step.SinkDistinctKeys, events)
	if *step.SinkDistinctKeys < events {
		b.note("e2e with a subscription: the sink saw %d distinct idempotency keys for %d events: not every Succeeded event was delivered", *step.SinkDistinctKeys, events)
	}
	b.res.E2E = append(b.res.E2E, *step)
	return nil
}

// newSubscription is the FunnelSubscription of the subscription step: every event type,
// delivered by HTTP to url. The kind is being built elsewhere; adjust this when its API
// lands (it is the only place that knows its shape).
func newSubscription(ns, url string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{
			"eventTypes": []any{"*"},
			"action":     map[string]any{"http": map[string]any{"url": url}},
		},
	}}
	u.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelSubscription"))
	u.SetNamespace(ns)
	u.SetName("bench-sink")
	return u
}

// waitSubscriptionReady waits up to 30 s for the subscription's Ready condition and
// returns why the step cannot run ("" when it can: Ready, or no conditions at all).
func (b *bench) waitSubscriptionReady(ctx context.Context, sub *unstructured.Unstructured) string {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(sub.GroupVersionKind())
		if err := b.cl.c.Get(ctx, client.ObjectKeyFromObject(sub), got); err != nil {
			last = err.Error()
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == funnelv1.ConditionReady {
				last = fmt.Sprintf("Ready=%v (%v: %v)", m["status"], m["reason"], m["message"])
				return m["status"] == string(metav1.ConditionTrue), nil
			}
		}
		last = "no Ready condition"
		return false, nil
	})
	if err == nil || last == "no Ready condition" {
		return ""
	}
	return fmt.Sprintf("FunnelSubscription %s/%s not Ready after 30s: %s", sub.GetNamespace(), sub.GetName(), last)
}

// sink is the local HTTP target of the subscription step.
type sink struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	keys     map[string]struct{}
}

func newSink() *sink {
	s := &sink{keys: map[string]struct{}{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		s.keys[r.Header.Get("Idempotency-Key")] = struct{}{}
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	return s
}

func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// e2eStep runs the throughput run (with the API writes it costs) and the paced run in ns.
func (b *bench) e2eStep(ctx context.Context, name, ns string, stream uint64) (*e2eStep, error) {
	step := &e2eStep{Name: name, BaselineConcurrency: b.o.e2eConcurrency, RawCreatesPerSecond: b.rawBaseline(b.o.e2eConcurrency)}
	// Background writes of earlier phases (the receiver's duplicate counts, written one
	// after the other, still draining after an ingest level with processing) would slow
	// the baseline down and flatter the ratio: it starts when they are over.
	if err := b.waitWritesQuiet(ctx, time.Minute); err != nil {
		return nil, err
	}
	rawSrc := newSource(b.o.seed, 100+stream, 0)
	before, err := b.adjacentBaseline(ctx, rawSrc, b.o.e2eConcurrency, "e2e "+name, "before")
	if err != nil {
		return nil, err
	}
	w, err := b.watch(ctx, ns)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	src := newSource(b.o.seed, stream, 0)
	p := newPoster(b.webhookURL(ns), b.tokens[ns], b.o.e2eConcurrency)
	defer p.close()

	// Nor counted as this run's.
	if err := b.waitWritesQuiet(ctx, 15*time.Second); err != nil {
		return nil, err
	}
	snapBefore, err := b.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	wait := b.profiles(ctx, profileName("e2e "+name), b.o.e2eDuration)
	run, t, err := b.e2eRun(ctx, w, "e2e "+name, func(ctx context.Context, items <-chan item, t *tally) error {
		return runClosed(ctx, b.o.e2eConcurrency, b.o.e2eDuration, items, p.post, t)
	}, src)
	wait()
	if err != nil {
		return nil, err
	}
	run.Concurrency = b.o.e2eConcurrency
	step.Throughput = run
	// The final status write is the last write of an event; a second lets the metrics of
	// any straggler (a conflict's fallback patch) land.
	time.Sleep(time.Second)
	snapAfter, err := b.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	byVerb, total := diffCounts(snapBefore.writes, snapAfter.writes)
	step.OtherWrites, _ = diffCounts(snapBefore.otherWrites, snapAfter.otherWrites)
	step.Diagnostics = snapAfter.since(snapBefore)
	step.WritesByVerb, step.WritesTotal = byVerb, ptrTo(total)
	step.WritesPerEvent = ratio(total, float64(run.Events))
	step.UnexpectedWrites = unexpectedWrites(byVerb)
	if len(step.UnexpectedWrites) > 0 {
		b.note("e2e %s: writes on funnelevents other than the receiver's POST 201 and the controllers' PUT/status or PATCH/status 200: %s", name, verbs(step.UnexpectedWrites))
	}
	if step.Missing, err = b.verify(ctx, ns, t.ackedNames); err != nil {
		return nil, err
	}
	// The baseline again once every event finished: the throughput run lasts tens of
	// seconds, through which the raw rate drifts; the mean of before and after is the
	// baseline of the moments between them.
	after, err := b.adjacentBaseline(ctx, rawSrc, b.o.e2eConcurrency, "e2e "+name, "after")
	if err != nil {
		return nil, err
	}
	if before != nil && after != nil {
		step.RawPhasePerSecond, step.BaselineAdjacent = step.RawCreatesPerSecond, true
		step.RawBeforePerSecond, step.RawAfterPerSecond = before, after
		step.RawCreatesPerSecond = ptrTo(round3((*before + *after) / 2))
	}
	if step.RawCreatesPerSecond != nil {
		step.Ratio = ratio(run.EventsPerSecond, *step.RawCreatesPerSecond)
	}
	logf("e2e %s: %d events, %.1f events/s to Succeeded (POST→Succeeded p50 %s p99 %s), %.2f writes/event %v  CPU: %s",
		name, run.Events, run.EventsPerSecond, fmtSeconds(run.Latency.P50), fmtSeconds(run.Latency.P99), valueOr(step.WritesPerEvent), byVerb, fmtCores(run.CPUCores))
	logf("e2e %s: mean times (s): %v; writes on other resources: %v", name, step.Diagnostics, step.OtherWrites)
	if tl := run.Tail; tl != nil {
		logf("e2e %s: after the sending stopped, the controllers finished %d events in %.1fs (%.1f/s)  CPU: %s", name, tl.Events, tl.Seconds, tl.EventsPerSecond, fmtCores(tl.CPUCores))
	}

	if b.o.e2ePacedDuration > 0 && run.EventsPerSecond > 0 {
		rate := run.EventsPerSecond * b.o.e2ePacedFraction
		paced, t2, err := b.e2eRun(ctx, w, "e2e "+name+", paced", func(ctx context.Context, items <-chan item, t *tally) error {
			_, err := runOpen(ctx, rate, b.o.e2ePacedDuration, 1024, items, p.post, t)
			return err
		}, src)
		if err != nil {
			return nil, err
		}
		paced.OfferedPerSecond = round3(rate)
		step.Paced = paced
		missing, err := b.verify(ctx, ns, t2.ackedNames)
		if err != nil {
			return nil, err
		}
		step.Missing += missing
		logf("e2e %s, paced at %.1f/s: %d events, POST→Succeeded p50 %s p99 %s", name, rate, paced.Events,
			fmtSeconds(paced.Latency.P50), fmtSeconds(paced.Latency.P99))
	}
	return step, nil
}

// e2eRun sends with send, then waits until the watch saw every acknowledged event
// finished (a final status.phase: its last write), and measures.
func (b *bench) e2eRun(ctx context.Context, w *watcher, label string, send func(context.Context, <-chan item, *tally) error, src *source) (*e2eRun, *tally, error) {
	feedCtx, stop := context.WithCancel(ctx)
	defer stop()
	items, feedErr := feed(feedCtx, src.item)
	t := newTally()
	posted := map[string]time.Time{}
	t.onAck = func(o outcome) { posted[o.it.name] = o.start }
	cpu := sampleCPU()
	if err := send(ctx, items, t); err != nil {
		return nil, nil, err
	}
	stop()
	if err := feedErr(); err != nil {
		return nil, nil, err
	}
	if t.acked == 0 {
		return nil, nil, fmt.Errorf("no request was acknowledged: %v", topReasons(t.reasons, 3))
	}
	tailStart, tailCPU := time.Now(), sampleCPU()
	// The controllers alone (5 s, or less if they finish sooner).
	waitProfiles := b.profiles(ctx, profileName(label)+"-tail", 5*time.Second)
	unfinished, err := w.waitFinished(ctx, posted, b.o.drainTimeout)
	waitProfiles()
	if err != nil {
		return nil, nil, err
	}
	tailCores, cores := coresSince(tailCPU), coresSince(cpu)
	b.checkOther(label, cores)
	if unfinished > 0 {
		b.note("%s: %d of %d events not finished within --drain-timeout %s", label, unfinished, len(posted), b.o.drainTimeout)
	}

	run := &e2eRun{Events: len(posted), Unfinished: unfinished, SendSeconds: round3(t.elapsed.Seconds()),
		AckedPerSecond: round3(float64(t.acked) / t.elapsed.Seconds()), AckLatency: statsOf(t.latencies), CPUCores: cores}
	var first, last time.Time
	tailDone := 0
	var lat []time.Duration
	for name, start := range posted {
		if first.IsZero() || start.Before(first) {
			first = start
		}
		st, ok := w.state(name)
		if !ok || st.finishedAt.IsZero() {
			continue
		}
		if st.phase != funnelv1.PhaseSucceeded {
			run.OtherPhase++
			continue
		}
		run.Succeeded++
		if st.finishedAt.After(tailStart) {
			tailDone++
		}
		lat = append(lat, st.finishedAt.Sub(start))
		if st.finishedAt.After(last) {
			last = st.finishedAt
		}
	}
	run.Latency = statsOf(lat)
	if tail := last.Sub(tailStart).Seconds(); tailDone > 0 && tail > 0 {
		run.Tail = &e2eTail{Events: tailDone, Seconds: round3(tail), EventsPerSecond: round3(float64(tailDone) / tail), CPUCores: tailCores}
	}
	if !last.IsZero() {
		run.Seconds = round3(last.Sub(first).Seconds())
		run.EventsPerSecond = round3(float64(run.Succeeded) / last.Sub(first).Seconds())
	}
	return run, t, nil
}

// eventState is what the watch saw of one FunnelEvent.
type eventState struct {
	phase funnelv1.EventPhase
	// finishedAt is when the watch first saw a final phase (Succeeded, Failed, Ignored).
	finishedAt time.Time
}

// watcher follows the FunnelEvents of a namespace and stamps when each one finished.
// It watches metadata only, one watch per final phase (the field selector says which):
// the API server then sends each event once, when it finishes, as protobuf metadata,
// which is as little as the measurement can add to the work measured.
type watcher struct {
	mu     sync.Mutex
	states map[string]*eventState
	cancel context.CancelFunc
	done   sync.WaitGroup
	err    error
}

// watch starts a watcher of ns from now on (events existing before are not reported).
func (b *bench) watch(ctx context.Context, ns string) (*watcher, error) {
	list := &funnelv1.FunnelEventList{}
	if err := b.cl.c.List(ctx, list, client.InNamespace(ns), client.Limit(1)); err != nil {
		return nil, fmt.Errorf("listing FunnelEvents in %s: %w", ns, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{states: map[string]*eventState{}, cancel: cancel}
	for _, phase := range []funnelv1.EventPhase{funnelv1.PhaseSucceeded, funnelv1.PhaseFailed, funnelv1.PhaseIgnored} {
		w.done.Go(func() { w.run(ctx, b.cl.c, ns, list.ResourceVersion, phase) })
	}
	return w, nil
}

// run follows the events of ns that reach phase, re-opening the watch from the last
// resource version whenever the server ends it.
func (w *watcher) run(ctx context.Context, c client.WithWatch, ns, rv string, phase funnelv1.EventPhase) {
	for ctx.Err() == nil {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
		wi, err := c.Watch(ctx, list, client.InNamespace(ns), &client.ListOptions{
			FieldSelector: fields.OneTermEqualSelector(funnelv1.FieldPhase, string(phase)),
			Raw:           &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() == nil {
				w.setErr(fmt.Errorf("watching %s FunnelEvents in %s: %w", phase, ns, err))
			}
			return
		}
		for ev := range wi.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				w.setErr(fmt.Errorf("watching %s FunnelEvents in %s: %v", phase, ns, ev.Object))
				wi.Stop()
				return
			}
			m, err := meta.Accessor(ev.Object)
			if err != nil {
				continue
			}
			rv = m.GetResourceVersion()
			if ev.Type != watch.Bookmark {
				w.observe(m.GetName(), phase, now)
			}
		}
		wi.Stop()
	}
}

func (w *watcher) observe(name string, phase funnelv1.EventPhase, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.states[name]
	if st == nil {
		st = &eventState{}
		w.states[name] = st
	}
	if st.finishedAt.IsZero() {
		st.finishedAt, st.phase = now, phase
	}
}

func (w *watcher) setErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *watcher) state(name string) (eventState, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, ok := w.states[name]
	if !ok {
		return eventState{}, false
	}
	return *st, true
}

// waitFinished waits until every name has a final phase (so its last write happened),
// and returns how many had not after timeout.
func (w *watcher) waitFinished(ctx context.Context, names map[string]time.Time, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		pending, err := 0, w.err
		for n := range names {
			if st := w.states[n]; st == nil || st.finishedAt.IsZero() {
				pending++
			}
		}
		w.mu.Unlock()
		if err != nil {
			return pending, err
		}
		if pending == 0 || time.Now().After(deadline) {
			return pending, nil
		}
		select {
		case <-ctx.Done():
			return pending, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (w *watcher) stop() {
	w.cancel()
	w.done.Wait()
}

func valueOr(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// snapshot is what the e2e step reads from the API server's and the operator's metrics
// before and after its throughput run.
type snapshot struct {
	writes, otherWrites map[string]float64
	hists               map[string]histSums
}

// families are the event controllers' names (and their work queues').
var families = map[string]bool{
	string(funnel.FamilyLeaseTransaction): true, string(funnel.FamilyLease): true, string(funnel.FamilyQuote): true,
	string(funnel.FamilyProspect): true, string(funnel.FamilyUnknown): true,
}

func (b *bench) snapshot(ctx context.Context) (*snapshot, error) {
	api, err := b.cl.metrics(ctx)
	if err != nil {
		return nil, err
	}
	writes, others, err := writesFromMetrics(api)
	if err != nil {
		return nil, err
	}
	op, err := b.op.metrics(ctx)
	if err != nil {
		return nil, err
	}
	byLabel := func(label, prefix string) func(map[string]string) string {
		return func(l map[string]string) string {
			if families[l[label]] {
				return prefix + l[label]
			}
			return ""
		}
	}
	return &snapshot{writes: writes, otherWrites: others, hists: map[string]histSums{
		"apiserver": histogramSums(api, "apiserver_request_duration_seconds", func(l map[string]string) string {
			if k := eventWriteKey(l); k != "" {
				return "apiserver " + k
			}
			return ""
		}),
		"reconcile": histogramSums(op, "controller_runtime_reconcile_time_seconds", byLabel("controller", "reconcile ")),
		"queue":     histogramSums(op, "workqueue_queue_duration_seconds", byLabel("name", "queue wait ")),
		"client": histogramSums(op, "rest_client_request_duration_seconds", func(l map[string]string) string {
			return "operator client " + l["verb"]
		}),
		"limiter": histogramSums(op, "rest_client_rate_limiter_duration_seconds", func(l map[string]string) string {
			return "operator client rate limiter " + l["verb"]
		}),
	}}, nil
}

// since returns the mean durations (seconds) observed between before and s: the API
// server's per write verb, and the event controllers' reconcile and queue wait per family.
func (s *snapshot) since(before *snapshot) map[string]float64 {
	out := map[string]float64{}
	for k, h := range s.hists {
		maps.Copy(out, meansSince(before.hists[k], h))
	}
	return out
}

// profileName makes a file name of a label: "e2e no subscription" → "e2e-no-subscription".
func profileName(label string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(strings.ReplaceAll(label, ", ", "-")))
}

// waitWritesQuiet waits until no write on funnelevents happened for a second (by the API
// server's apiserver_request_total), at most timeout (then it notes it and goes on).
func (b *bench) waitWritesQuiet(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1.0
	for {
		fams, err := b.cl.metrics(ctx)
		if err != nil {
			return err
		}
		writes, _, err := writesFromMetrics(fams)
		if err != nil {
			return err
		}
		_, total := diffCounts(nil, writes)
		if total == last {
			return nil
		}
		if time.Now().After(deadline) {
			b.note("writes on funnelevents were still going on %s after the previous phase; the e2e baseline and write count may include some of them", timeout)
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
// receiver's create, and the controllers' one status write (an update, or a merge patch
// when the update conflicted).
var expectedWrites = map[string]bool{"POST 201": true, "PUT/status 200": true, "PATCH/status 200": true}

// unexpectedWrites returns the writes of byVerb that are not expectedWrites.
func unexpectedWrites(byVerb map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range byVerb {
		if !expectedWrites[k] {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
