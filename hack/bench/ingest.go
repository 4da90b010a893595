package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// ingest measures the receiver: real HTTP webhooks at each concurrency to a follower (the
// bench holds the leader election Lease, so the receiver serves while the controllers
// wait: a non-leader replica of the 2-replica Deployment). Its baseline is raw creates at
// the same concurrency in segments interleaved with the level's own (raw, ingest, raw,
// ingest, …), so that both sides see the same moments of a machine whose speed drifts.
// Afterwards the bench releases the Lease and the operator, now the leader, drains the
// backlog.
func (b *bench) ingest(ctx context.Context) error {
	src, rawSrc := newSource(b.o.seed, 2, 0.10), newSource(b.o.seed, 11, 0)
	rounds := pick(&b.o, 4, 2)
	seg := b.o.duration / time.Duration(rounds)
	for _, c := range b.o.concurrency {
		label := fmt.Sprintf("ingest c=%d", c)
		logf("%s: restarting the operator as a follower (the bench holds the Lease)", label)
		if err := b.follow(ctx); err != nil {
			return err
		}
		// Unmeasured: the operator was just restarted.
		warm, err := b.post(ctx, nsIngest, send.Load{Concurrency: c, Duration: b.warmup()}, src)
		if err != nil {
			return fmt.Errorf("%s, warm-up: %w", label, err)
		}
		before, err := b.reconciles(ctx)
		if err != nil {
			return err
		}
		l := ingestLevel{Concurrency: c, CPUCores: map[string]float64{}}
		raw := &created{}
		total := &posted{rep: send.NewReport(), acked: warm.acked}
		for i := range rounds {
			r, err := b.create(ctx, nsRaw, send.Load{Concurrency: c, Duration: seg}, rawSrc, false)
			if err != nil {
				return fmt.Errorf("%s, raw baseline: %w", label, err)
			}
			raw.n, raw.elapsed = raw.n+r.n, raw.elapsed+r.elapsed
			cpu := sampleCPU(b.postmaster)
			p, err := b.post(ctx, nsIngest, send.Load{Concurrency: c, Duration: seg}, src)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", label, i+1, err)
			}
			for k, v := range coresSince(cpu) {
				l.CPUCores[k] += v / float64(rounds)
			}
			total.rep.Merge(p.rep)
			total.stats.Elapsed += p.stats.Elapsed
			for n, t := range p.acked {
				total.acked[n] = t
			}
			// The receiver writes duplicate counts in the background; like the leader's
			// processing, what is left of them is drained before the next raw segment,
			// which would otherwise pay for it. The time it takes is reported, not counted.
			d, err := b.waitDuplicateCounts(ctx)
			if err != nil {
				return err
			}
			l.DuplicateDrainSeconds += d
		}
		for k, v := range l.CPUCores {
			l.CPUCores[k] = math.Round(v*100) / 100
		}
		b.checkOther(label, l.CPUCores)
		after, err := b.reconciles(ctx)
		if err != nil {
			return err
		}
		if after > before {
			b.note("%s: the operator reconciled %.0f events while the bench held the Lease: it was not a follower", label, after-before)
		}
		if l.Missing, err = b.verify(ctx, nsIngest, total.names()); err != nil {
			return err
		}
		if l.BacklogDrainSeconds, err = b.leadAndDrain(ctx, nsIngest, label); err != nil {
			return err
		}
		l.RawCreatesPerSecond, l.AckedPerSecond = raw.perSecond(), total.ackedPerSecond()
		l.Ratio = ratio(l.AckedPerSecond, l.RawCreatesPerSecond)
		l.Requests, l.NotAcked, l.NoAnswer = total.rep.Sent, total.rep.NotAcknowledged(), total.rep.NoAnswer
		l.ByStatus, l.Failures = total.rep.ByStatus, total.rep.TopFailures(5)
		l.Latency, l.DuplicateDrainSeconds = latencyOf(total.rep.Latencies), round3(l.DuplicateDrainSeconds)
		b.res.Ingest = append(b.res.Ingest, l)
		logf("%s: %.1f acked/s, raw %.1f creates/s interleaved: %.2f×; p50 %s p99 %s max %s; not acked %d, missing %d; backlog drained in %.1fs; CPU %s",
			label, l.AckedPerSecond, l.RawCreatesPerSecond, valueOr(l.Ratio), fmtSeconds(l.Latency.P50), fmtSeconds(l.Latency.P99),
			fmtSeconds(l.Latency.Max), l.NotAcked, l.Missing, l.BacklogDrainSeconds, fmtCores(l.CPUCores))
	}
	return nil
}

func (b *bench) warmup() time.Duration { return pick(&b.o, 2*time.Second, 500*time.Millisecond) }

// waitDuplicateCounts waits until the operator has no duplicate count left to write
// (funnel_webhook_duplicate_counts_pending is 0) and returns the seconds that took.
func (b *bench) waitDuplicateCounts(ctx context.Context) (float64, error) {
	start := time.Now()
	err := b.poll(ctx, time.Minute, "the receiver's duplicate counts", func() (bool, error) {
		pending, err := b.operatorGauge(ctx, "funnel_webhook_duplicate_counts_pending")
		return pending <= 0, err
	})
	if errors.Is(err, errTimedOut) {
		b.note("duplicate counts were still being written a minute after an ingest segment; the rest spilled into the next raw segment")
		err = nil
	}
	return time.Since(start).Seconds(), err
}
