package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// memorySmall is the memory phase's first point, taken before any other phase so that the
// cluster holds few events.
func (b *bench) memorySmall(ctx context.Context) error {
	pt, err := b.memoryPoint(ctx, pick(&b.o, 1000, 200), "small")
	if err != nil {
		return err
	}
	b.res.Memory = &memoryResult{Small: pt}
	return nil
}

// memoryLarge is the second point, taken last: the events the other phases stored count.
func (b *bench) memoryLarge(ctx context.Context) error {
	pt, err := b.memoryPoint(ctx, pick(&b.o, 50000, 10000), "large")
	if err != nil {
		return err
	}
	m := b.res.Memory
	m.Large = pt
	m.RSSRatio = ratio(float64(pt.RSSBytes), float64(m.Small.RSSBytes))
	m.HeapRatio = ratio(pt.HeapInuseBytes, m.Small.HeapInuseBytes)
	logf("memory: RSS %.2f× and heap %.2f× with %d vs %d finished events stored", valueOr(m.RSSRatio), valueOr(m.HeapRatio), pt.EventsStored, m.Small.EventsStored)
	return nil
}

// memoryPoint tops the watched namespaces up to want finished events (made like the
// receiver's in nsMemory, each created and given the status of a processed event, with the
// operator stopped so that its controllers do not race the bench), restarts the operator,
// waits until it is ready and idle, lets it settle, forces a GC through its pprof endpoint,
// and reads its RSS and heap. Were the operator's cache not scoped to unfinished events,
// it would hold them all.
func (b *bench) memoryPoint(ctx context.Context, want int, name string) (*memoryPoint, error) {
	watched := b.watched()
	if err := b.drain(ctx, "memory "+name, watched...); err != nil {
		return nil, err
	}
	stored, err := b.countEvents(ctx, watched...)
	if err != nil {
		return nil, err
	}
	b.op.Stop(20 * time.Second)
	if n := want - stored; n > 0 {
		logf("memory %s: creating %d finished events (%d stored already)", name, n, stored)
		c, err := b.create(ctx, nsMemory, send.Load{Concurrency: 64, Count: n}, newSource(b.o.seed, 6+uint64(want), 0), true)
		if err != nil {
			return nil, err
		}
		if c.n < n {
			return nil, fmt.Errorf("memory %s: created and finished %d of %d events", name, c.n, n)
		}
	}
	if stored, err = b.countEvents(ctx, watched...); err != nil {
		return nil, err
	}
	logf("memory %s: starting the operator with %d finished events stored in the namespaces it watches", name, stored)
	if err := b.startOperator(ctx); err != nil {
		return nil, err
	}
	if err := b.waitIdle(ctx); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(pick(&b.o, 5*time.Second, 2*time.Second)):
	}
	// gc=1 collects first, so the heap reads live data rather than live data plus the
	// garbage of the start-up.
	if err := b.op.Profile(ctx, "/debug/pprof/heap?gc=1", os.DevNull); err != nil {
		return nil, fmt.Errorf("forcing a GC in the operator: %w", err)
	}
	pt := &memoryPoint{EventsStored: stored}
	if pt.RSSBytes, err = b.op.RSS(); err != nil {
		return nil, err
	}
	if pt.HeapInuseBytes, err = b.operatorGauge(ctx, "go_memstats_heap_inuse_bytes"); err != nil {
		return nil, err
	}
	if pt.Goroutines, err = b.operatorGauge(ctx, "go_goroutines"); err != nil {
		return nil, err
	}
	logf("memory %s: %d events stored: RSS %.1f MiB, heap in use %.1f MiB, %.0f goroutines", name, stored,
		float64(pt.RSSBytes)/(1<<20), pt.HeapInuseBytes/(1<<20), pt.Goroutines)
	return pt, nil
}

// waitIdle waits until the operator's CPU use (process_cpu_seconds_total) stays under 5%
// of a core for two consecutive seconds.
func (b *bench) waitIdle(ctx context.Context) error {
	prev, quiet := math.NaN(), 0
	return b.poll(ctx, 90*time.Second, "the operator to go idle (under 5% CPU) after a restart", func() (bool, error) {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
		cpu, err := b.operatorGauge(ctx, "process_cpu_seconds_total")
		if err != nil {
			return false, err
		}
		if cpu-prev < 0.05 {
			quiet++
		} else {
			quiet = 0
		}
		prev = cpu
		return quiet >= 2, nil
	})
}
