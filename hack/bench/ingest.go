package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
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
		// CPU seconds by component: what one acknowledged request costs beside one raw create.
		rawSecs, ingestSecs := map[string]float64{}, map[string]float64{}
		var segments []float64
		for i := range rounds {
			rawStart := sampleCPU(b.procs())
			r, err := b.create(ctx, nsRaw, send.Load{Concurrency: c, Duration: seg}, rawSrc, false)
			if err != nil {
				return fmt.Errorf("%s, raw baseline: %w", label, err)
			}
			raw.n, raw.elapsed = raw.n+r.n, raw.elapsed+r.elapsed
			cpu := sampleCPU(b.procs())
			addSeconds(rawSecs, cpu.secondsSince(rawStart))
			p, err := b.post(ctx, nsIngest, send.Load{Concurrency: c, Duration: seg}, src)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", label, i+1, err)
			}
			end := sampleCPU(b.procs())
			addSeconds(ingestSecs, end.secondsSince(cpu))
			for k, v := range coresBetween(cpu, end) {
				l.CPUCores[k] += v / float64(rounds)
			}
			if pair := ratio(p.ackedPerSecond(), r.perSecond()); pair != nil {
				segments = append(segments, *pair)
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
		l.CPUMsPerRequest, l.RawCPUMsPerCreate = msPerOp(ingestSecs, total.rep.Acknowledged), msPerOp(rawSecs, raw.n)
		l.APICostRatio = ratio(apiCPU(l.CPUMsPerRequest), apiCPU(l.RawCPUMsPerCreate))
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
		slices.Sort(segments)
		if l.SegmentRatios = segments; len(segments) > 0 {
			l.SegmentRatioMedian = median(segments)
		}
		l.Requests, l.NotAcked, l.NoAnswer = total.rep.Sent, total.rep.NotAcknowledged(), total.rep.NoAnswer
		l.ByStatus, l.Failures = total.rep.ByStatus, total.rep.TopFailures(5)
		l.Latency, l.DuplicateDrainSeconds = latencyOf(total.rep.Latencies), round3(l.DuplicateDrainSeconds)
		b.res.Ingest = append(b.res.Ingest, l)
		logf("%s: %.1f acked/s, raw %.1f creates/s interleaved: %.2f× (segment pairs %v, median %.2f); p50 %s p99 %s max %s; not acked %d, missing %d; backlog drained in %.1fs; CPU %s; API CPU per request %.2f ms, %.2f× a raw create's; operator %.2f ms",
			label, l.AckedPerSecond, l.RawCreatesPerSecond, valueOr(l.Ratio), l.SegmentRatios, l.SegmentRatioMedian, fmtSeconds(l.Latency.P50), fmtSeconds(l.Latency.P99),
			fmtSeconds(l.Latency.Max), l.NotAcked, l.Missing, l.BacklogDrainSeconds, fmtCores(l.CPUCores),
			apiCPU(l.CPUMsPerRequest), valueOr(l.APICostRatio), l.CPUMsPerRequest["operator"])
	}
	return nil
}

// addSeconds adds CPU seconds by component into sum.
func addSeconds(sum, secs map[string]float64) {
	for k, v := range secs {
		sum[k] += v
	}
}

// apiCPU is the API server's and etcd's share of CPU by component, in whatever unit the
// map holds (seconds used, or ms per operation).
func apiCPU(byComponent map[string]float64) float64 {
	return byComponent["apiserver"] + byComponent["etcd"]
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
