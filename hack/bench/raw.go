package main

import (
	"context"
	"fmt"
	"time"
)

// rawFeed makes FunnelEvents exactly like the receiver's (receiver.NewEvent) from a
// duplicate-free source, built ahead so that a create measures the API server and the
// client, not the building; count > 0 stops after count objects.
func rawFeed(ctx context.Context, ns string, src *source, count int) (<-chan item, func() error) {
	return feedN(ctx, count, func() (item, error) {
		it, err := src.item()
		if err != nil {
			return item{}, err
		}
		if it.obj, err = eventObject(ns, it.body, time.Now()); err != nil {
			return item{}, fmt.Errorf("building the FunnelEvent of a synthetic body: %w", err)
		}
		return it, nil
	})
}

// createItems creates the objects of items with conc workers for at most dur (or until
// items is closed).
func (b *bench) createItems(ctx context.Context, conc int, dur time.Duration, items <-chan item) *tally {
	t := newTally()
	_ = runClosed(ctx, conc, dur, items, func(ctx context.Context, it item) outcome {
		o := outcome{it: it, start: time.Now()}
		err := b.cl.c.Create(ctx, it.obj)
		o.latency = time.Since(o.start)
		if err == nil {
			o.status, o.ack = 201, true
		} else {
			o.status, o.err = apiCode(err), err
		}
		return o
	}, t)
	return t
}

// raw measures FunnelEvents created directly, at each concurrency: first in nsRaw, which
// the operator does not watch (the baseline of the targets: one create, nothing else),
// then, with --raw-processed-baseline, in nsRawProcessed, which it watches, so the
// controllers (the operator is the leader) process them as they process ingested events:
// the same work as ingest with processing, minus the receiver.
func (b *bench) raw(ctx context.Context) error {
	src := newSource(b.o.seed, 1, 0)
	if b.o.warmup > 0 {
		logf("raw: warm-up %s", b.o.warmup)
		if _, err := b.rawLevel(ctx, src, nsRaw, 8, b.o.warmup, "", false); err != nil {
			return err
		}
	}
	for _, c := range b.o.concurrency {
		l, err := b.rawLevel(ctx, src, nsRaw, c, b.o.rawDuration, fmt.Sprintf("raw-c%d", c), true)
		if err != nil {
			return err
		}
		b.res.Raw = append(b.res.Raw, *l)
		logf("raw c=%-3d %8.1f creates/s  p50 %s p99 %s  (%d created, %d failed)  CPU: %s", c, l.CreatesPerSecond,
			fmtSeconds(l.Latency.P50), fmtSeconds(l.Latency.P99), l.Created, l.Failed, fmtCores(l.CPUCores))
	}
	if !b.o.rawProcessed {
		return nil
	}
	for _, c := range b.o.concurrency {
		l, err := b.rawLevel(ctx, src, nsRawProcessed, c, b.o.rawDuration, fmt.Sprintf("raw-processed-c%d", c), true)
		if err != nil {
			return err
		}
		if l.BacklogDrainSeconds, err = b.drain(ctx, fmt.Sprintf("raw (processed) c=%d", c), nsRawProcessed); err != nil {
			return err
		}
		b.res.RawProcessed = append(b.res.RawProcessed, *l)
		logf("raw (processed) c=%-3d %8.1f creates/s  p50 %s p99 %s  (%d created, %d failed), backlog drained in %.1fs  CPU: %s", c, l.CreatesPerSecond,
			fmtSeconds(l.Latency.P50), fmtSeconds(l.Latency.P99), l.Created, l.Failed, l.BacklogDrainSeconds, fmtCores(l.CPUCores))
	}
	return nil
}

// rawLevel runs one level in ns; label names it in notes and, with profile, the profiles
// taken during it.
func (b *bench) rawLevel(ctx context.Context, src *source, ns string, conc int, dur time.Duration, label string, profile bool) (*rawLevel, error) {
	feedCtx, stop := context.WithCancel(ctx)
	items, feedErr := rawFeed(feedCtx, ns, src, 0)
	wait := func() {}
	if profile {
		wait = b.profiles(ctx, label, dur)
	}
	cpu := sampleCPU()
	t := b.createItems(ctx, conc, dur, items)
	cores := coresSince(cpu)
	stop()
	wait()
	if err := feedErr(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.acked == 0 {
		return nil, fmt.Errorf("no FunnelEvent could be created at concurrency %d: %v", conc, topReasons(t.reasons, 3))
	}
	b.checkOther(label, cores)
	return &rawLevel{
		Concurrency:      conc,
		Created:          t.acked,
		Failed:           t.sent - t.acked,
		Seconds:          round3(t.elapsed.Seconds()),
		CreatesPerSecond: round3(float64(t.acked) / t.elapsed.Seconds()),
		Latency:          statsOf(t.latencies),
		CPUCores:         cores,
		Failures:         topReasons(t.reasons, 5),
	}, nil
}

// adjacentBaseline measures raw creates at concurrency c in nsRaw now, right before (or
// after: when says which) the measurement whose baseline it is: the two sides of the
// ratio are then seconds apart, not minutes (a shared machine drifts, and etcd grows
// through the run). nil without --adjacent-raw.
func (b *bench) adjacentBaseline(ctx context.Context, src *source, c int, label, when string) (*float64, error) {
	if !b.o.adjacentRaw {
		return nil, nil
	}
	l, err := b.rawLevel(ctx, src, nsRaw, c, b.o.rawDuration, label+" raw baseline", false)
	if err != nil {
		return nil, fmt.Errorf("%s, raw baseline right %s: %w", label, when, err)
	}
	logf("%s: raw baseline right %s: %.1f creates/s  CPU: %s", label, when, l.CreatesPerSecond, fmtCores(l.CPUCores))
	return ptrTo(l.CreatesPerSecond), nil
}

// rawBaseline is the raw creates/s at concurrency c, nil when not measured.
func (b *bench) rawBaseline(c int) *float64 { return rateAt(b.res.Raw, c) }

func rateAt(levels []rawLevel, c int) *float64 {
	for _, l := range levels {
		if l.Concurrency == c {
			return ptrTo(l.CreatesPerSecond)
		}
	}
	return nil
}

func fmtSeconds(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2fs", s)
	case s >= 0.001:
		return fmt.Sprintf("%.1fms", s*1000)
	default:
		return fmt.Sprintf("%.0fµs", s*1e6)
	}
}
