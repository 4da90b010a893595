package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// memorySmall is the memory phase's first point, taken before any other phase so that
// the cluster holds exactly --memory-small events.
func (b *bench) memorySmall(ctx context.Context) error {
	pt, err := b.memoryPoint(ctx, b.o.memorySmall, "small")
	if err != nil {
		return err
	}
	b.res.Memory = &memoryResult{Small: pt}
	return nil
}

// memoryLarge is the second point, taken last: the events the other phases stored count.
func (b *bench) memoryLarge(ctx context.Context) error {
	pt, err := b.memoryPoint(ctx, b.o.memoryLarge, "large")
	if err != nil {
		return err
	}
	m := b.res.Memory
	if m == nil {
		m = &memoryResult{}
		b.res.Memory = m
	}
	m.Large = pt
	if m.Small != nil {
		m.RSSRatio = ratio(float64(pt.RSSBytes), float64(m.Small.RSSBytes))
		m.HeapRatio = ratio(pt.HeapInuseBytes, m.Small.HeapInuseBytes)
		logf("memory: RSS %.2f× and heap %.2f× with %d vs %d finished events stored",
			valueOr(m.RSSRatio), valueOr(m.HeapRatio), pt.EventsStored, m.Small.EventsStored)
	}
	return nil
}

// memoryPoint tops the watched namespaces up to want finished events (created with
// receiver.NewEvent in nsMemory, then given phase Succeeded by a status update, while the
// operator is stopped so that its controllers do not race the bench), waits until none
// is left to process, restarts the operator, waits until it is ready and idle, lets it
// settle, forces a GC through its pprof endpoint, and reads its RSS and heap.
func (b *bench) memoryPoint(ctx context.Context, want int, name string) (*memoryPoint, error) {
	watched := b.watched()
	if _, err := b.drain(ctx, "memory "+name, watched...); err != nil {
		return nil, err
	}
	stored, err := b.countEvents(ctx, watched)
	if err != nil {
		return nil, err
	}
	if stored > want {
		b.note("memory %s: the watched namespaces already hold %d events, more than the %d asked for", name, stored, want)
	}
	b.op.stop()
	if n := want - stored; n > 0 {
		logf("memory %s: creating %d finished events (%d stored; 2 writes each, the operator stopped meanwhile)", name, n, stored)
		start := time.Now()
		feedCtx, stop := context.WithCancel(ctx)
		items, feedErr := rawFeed(feedCtx, nsMemory, newSource(b.o.seed, 6+uint64(want), 0), n)
		t := b.createFinished(ctx, memoryWriters, items)
		stop()
		if err := feedErr(); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if t.acked < n {
			return nil, fmt.Errorf("memory %s: created and finished %d of %d events: %v", name, t.acked, n, topReasons(t.reasons, 3))
		}
		logf("memory %s: created and finished %d events in %.1fs", name, n, time.Since(start).Seconds())
	}
	if stored, err = b.countEvents(ctx, watched); err != nil {
		return nil, err
	}
	unwatched := 0
	if b.o.has(phaseRaw) {
		if unwatched, err = b.cl.countEvents(ctx, nsRaw); err != nil {
			return nil, err
		}
	}

	logf("memory %s: starting the operator with %d finished events stored in the namespaces it watches", name, stored)
	if err := b.op.Start(); err != nil {
		return nil, err
	}
	if err := b.op.waitReady(ctx); err != nil {
		return nil, err
	}
	readyAt := time.Now()
	if err := b.waitIdle(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	idleAfter := time.Since(readyAt)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(b.o.memorySettle):
	}
	// A heap profile with gc=1 forces a collection first, so the heap reads live data
	// rather than live data plus whatever garbage the start-up left; the profile is kept
	// with --operator-pprof.
	heapFile := os.DevNull
	if b.o.operatorPprof != "" {
		heapFile = filepath.Join(b.o.operatorPprof, "operator-heap-"+name+".pprof")
	}
	gcForced := true
	if err := b.op.Profile(ctx, "/debug/pprof/heap?gc=1", heapFile); err != nil {
		logf("forcing a GC in the operator: %v", err)
		gcForced = false
	}
	rss, err := b.op.RSS()
	if err != nil {
		return nil, err
	}
	fams, err := b.op.metrics(ctx)
	if err != nil {
		return nil, err
	}
	heap, ok := gaugeValue(fams, "go_memstats_heap_inuse_bytes")
	if !ok {
		return nil, fmt.Errorf("the operator's /metrics has no go_memstats_heap_inuse_bytes")
	}
	goroutines, _ := gaugeValue(fams, "go_goroutines")
	pt := &memoryPoint{EventsStored: stored, UnwatchedEvents: unwatched, RSSBytes: rss, HeapInuseBytes: heap, Goroutines: goroutines,
		IdleAfterSeconds: round3(idleAfter.Seconds()), GCForced: gcForced}
	logf("memory %s: %d events stored: RSS %.1f MiB, heap in use %.1f MiB, %v goroutines", name, stored,
		float64(rss)/(1<<20), heap/(1<<20), goroutines)
	return pt, nil
}

// memoryWriters is the concurrency of the memory phase's writes.
const memoryWriters = 64

// createFinished creates the objects of items with conc workers, each followed by a
// status update to phase Succeeded (what the controllers would have written), until
// items is closed. An item counts as acknowledged once both writes succeeded.
func (b *bench) createFinished(ctx context.Context, conc int, items <-chan item) *tally {
	t := newTally()
	_ = runClosed(ctx, conc, 24*time.Hour, items, func(ctx context.Context, it item) outcome {
		o := outcome{it: it, start: time.Now()}
		err := b.cl.c.Create(ctx, it.obj)
		if err == nil {
			finish(it.obj, time.Now())
			err = b.cl.c.Status().Update(ctx, it.obj)
		}
		o.latency = time.Since(o.start)
		if err == nil {
			o.status, o.ack = 200, true
		} else {
			o.status, o.err = apiCode(err), err
		}
		return o
	}, t)
	return t
}

// finish sets the status the controllers write for an event they processed without
// subscriptions: phase Succeeded, the Ready condition, the processed time.
func finish(ev *funnelv1.FunnelEvent, now time.Time) {
	ev.Status.Phase = funnelv1.PhaseSucceeded
	ev.Status.Summary = "Finished by the bench (memory phase)"
	meta.SetStatusCondition(&ev.Status.Conditions, metav1.Condition{Type: funnelv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: "Processed", Message: "Processed", ObservedGeneration: ev.Generation, LastTransitionTime: metav1.NewTime(now)})
	ev.Status.ProcessedTime = ptrTo(metav1.NewTime(now))
}

// countEvents counts the FunnelEvents of the namespaces.
func (b *bench) countEvents(ctx context.Context, namespaces []string) (int, error) {
	total := 0
	for _, ns := range namespaces {
		n, err := b.cl.countEvents(ctx, ns)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// waitIdle waits until the operator's CPU use (process_cpu_seconds_total) stays under 5%
// of a core for two consecutive seconds.
func (b *bench) waitIdle(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	prev := math.NaN()
	quiet := 0
	for quiet < 2 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not go idle (under 5%% CPU) within %s of a restart", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		if err := b.op.Alive(); err != nil {
			return err
		}
		fams, err := b.op.metrics(ctx)
		if err != nil {
			return err
		}
		cpu, ok := gaugeValue(fams, "process_cpu_seconds_total")
		if !ok {
			return fmt.Errorf("the operator's /metrics has no process_cpu_seconds_total")
		}
		if !math.IsNaN(prev) && cpu-prev < 0.05 {
			quiet++
		} else {
			quiet = 0
		}
		prev = cpu
	}
	return nil
}
