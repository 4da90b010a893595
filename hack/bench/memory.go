package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
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

// memoryPoint tops the cluster up to want finished events (created directly, done
// label set), waits until none is left to process, restarts the operator, waits until
// it is ready and idle, lets it settle, and reads its RSS and heap.
func (b *bench) memoryPoint(ctx context.Context, want int, name string) (*memoryPoint, error) {
	stored, err := b.cl.countEvents(ctx, "")
	if err != nil {
		return nil, err
	}
	if stored > want {
		b.note("memory %s: the cluster already holds %d events, more than the %d asked for", name, stored, want)
	}
	if n := want - stored; n > 0 {
		logf("memory %s: creating %d finished events (%d stored)", name, n, stored)
		start := time.Now()
		feedCtx, stop := context.WithCancel(ctx)
		items, feedErr := rawFeed(feedCtx, nsMemory, newSource(b.o.seed, 6+uint64(want), 0), n, true)
		t := b.createItems(ctx, 32, 24*time.Hour, items)
		stop()
		if err := feedErr(); err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if t.acked < n {
			return nil, fmt.Errorf("memory %s: created %d of %d events: %v", name, t.acked, n, topReasons(t.reasons, 3))
		}
		logf("memory %s: created %d events in %.1fs", name, n, time.Since(start).Seconds())
	}
	if _, err := b.drain(ctx, "", "memory "+name); err != nil {
		return nil, err
	}
	if stored, err = b.cl.countEvents(ctx, ""); err != nil {
		return nil, err
	}

	logf("memory %s: restarting the operator with %d finished events stored", name, stored)
	if err := b.op.restart(ctx); err != nil {
		return nil, err
	}
	readyAt := time.Now()
	if err := b.waitIdle(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	idleAfter := time.Since(readyAt)
	// With a pprof endpoint a heap profile with gc=1 forces a collection, so the heap
	// reads live data rather than live data plus whatever garbage the start-up left.
	gcForced := false
	if b.op.pprofAddr != "" {
		if err := b.op.profile(ctx, "/debug/pprof/heap?gc=1", os.DevNull); err != nil {
			logf("forcing a GC in the operator: %v", err)
		} else {
			gcForced = true
		}
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(b.o.memorySettle):
	}
	rss, err := b.op.rss()
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
	if b.o.operatorPprof != "" {
		if err := b.op.profile(ctx, "/debug/pprof/heap", filepath.Join(b.o.operatorPprof, "operator-heap-"+name+".pprof")); err != nil {
			logf("heap profile of the operator: %v", err)
		}
	}
	pt := &memoryPoint{EventsStored: stored, RSSBytes: rss, HeapInuseBytes: heap, Goroutines: goroutines,
		IdleAfterSeconds: round3(idleAfter.Seconds()), GCForced: gcForced}
	logf("memory %s: %d events stored: RSS %.1f MiB, heap in use %.1f MiB, %v goroutines", name, stored,
		float64(rss)/(1<<20), heap/(1<<20), goroutines)
	return pt, nil
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
		if err := b.op.alive(); err != nil {
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
