package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
)

// ingest sends webhooks over HTTP at each concurrency, twice:
//
//   - to a follower: the bench holds the leader election Lease, so the operator's
//     receiver serves (it runs on every replica) while its controllers wait. This is a
//     non-leader replica of the 2-replica Deployment, and what is compared with raw (the
//     target): Funnel's acknowledgements are the receivers' work, processing is the
//     leader's. Afterwards the bench releases the Lease, the operator becomes the leader
//     and drains the backlog;
//   - to the leader, whose controllers process the events on the same API server while
//     the level runs (the secondary "with processing" columns, against raw with
//     processing).
func (b *bench) ingest(ctx context.Context) error {
	src := newSource(b.o.seed, 2, b.o.duplicates)
	rawSrc := newSource(b.o.seed, 11, 0)
	for _, c := range b.o.concurrency {
		l := ingestLevel{Concurrency: c, RawCreatesPerSecond: b.rawBaseline(c), RawProcessedPerSecond: rateAt(b.res.RawProcessed, c)}

		// The follower.
		logf("ingest c=%d: restarting the operator as a follower (the bench holds the Lease)", c)
		if err := b.follow(ctx); err != nil {
			return err
		}
		var raw *interleavedRaw
		if b.o.adjacentRaw {
			raw = &interleavedRaw{b: b, src: rawSrc, c: c, label: fmt.Sprintf("ingest c=%d", c)}
		}
		run, err := b.ingestRun(ctx, src, c, fmt.Sprintf("ingest-c%d", c), fmt.Sprintf("ingest c=%d", c), true, raw)
		if err != nil {
			return err
		}
		if raw != nil {
			l.RawPhasePerSecond, l.RawCreatesPerSecond, l.BaselineAdjacent = l.RawCreatesPerSecond, ptrTo(raw.rate()), true
			logf("ingest c=%d: raw baseline interleaved with it: %.1f creates/s over %d rounds", c, raw.rate(), b.o.rounds)
		}
		if run.BacklogDrainSeconds, run.TakeoverSeconds, err = b.leadAndDrain(ctx, nsIngest, fmt.Sprintf("ingest c=%d", c)); err != nil {
			return err
		}
		l.ingestRun = *run
		if l.RawCreatesPerSecond != nil {
			l.Ratio = ratio(l.AckedPerSecond, *l.RawCreatesPerSecond)
		}
		b.logIngest(fmt.Sprintf("ingest c=%-3d (follower)", c), run, l.Ratio, "raw")

		// The leader, processing meanwhile.
		led, err := b.ingestRun(ctx, src, c, fmt.Sprintf("ingest-processing-c%d", c), fmt.Sprintf("ingest with processing c=%d", c), false, nil)
		if err != nil {
			return err
		}
		if led.BacklogDrainSeconds, err = b.drain(ctx, fmt.Sprintf("ingest with processing c=%d", c), nsIngest); err != nil {
			return err
		}
		l.WithProcessing = led
		if l.RawProcessedPerSecond != nil {
			l.RatioProcessed = ratio(led.AckedPerSecond, *l.RawProcessedPerSecond)
		}
		b.logIngest(fmt.Sprintf("ingest c=%-3d (leader)  ", c), led, l.RatioProcessed, "raw with processing")
		b.res.Ingest = append(b.res.Ingest, l)
	}
	return nil
}

func (b *bench) logIngest(what string, r *ingestRun, rat *float64, against string) {
	rs := "n/a"
	if rat != nil {
		rs = fmt.Sprintf("%.2f×", *rat)
	}
	takeover := ""
	if r.TakeoverSeconds > 0 {
		takeover = fmt.Sprintf(" (the leader took over in %.1fs)", r.TakeoverSeconds)
	}
	if r.DuplicateDrainSeconds > 0 {
		takeover += fmt.Sprintf(", duplicate counts drained in %.1fs between segments", r.DuplicateDrainSeconds)
	}
	logf("%s %8.1f acked/s (%s %s)  p50 %s p95 %s p99 %s max %s  not acked %d, missing %d, %.0f reconciles, backlog drained in %.1fs%s  CPU: %s",
		what, r.AckedPerSecond, rs, against, fmtSeconds(r.Latency.P50), fmtSeconds(r.Latency.P95), fmtSeconds(r.Latency.P99),
		fmtSeconds(r.Latency.Max), r.Requests-r.Acked, r.Missing, r.Reconciles, r.BacklogDrainSeconds, takeover, fmtCores(r.CPUCores))
}

// interleavedRaw is the raw baseline of an ingest level, measured in segments that
// alternate with the level's own (raw, ingest, raw, ingest, …): both sides then see the
// same moments of a machine whose speed drifts by ±20% within a minute.
type interleavedRaw struct {
	b       *bench
	src     *source
	c       int
	label   string
	created int
	seconds float64
}

// segment measures raw creates for d and adds them up.
func (r *interleavedRaw) segment(ctx context.Context, d time.Duration) error {
	l, err := r.b.rawLevel(ctx, r.src, nsRaw, r.c, d, r.label+" raw baseline", false)
	if err != nil {
		return fmt.Errorf("%s, raw baseline: %w", r.label, err)
	}
	r.created += l.Created
	r.seconds += l.Seconds
	return nil
}

func (r *interleavedRaw) rate() float64 { return round3(float64(r.created) / r.seconds) }

// ingestRun measures one closed-loop level in nsIngest (after a warm-up when follower:
// the operator was just restarted) and verifies that every acknowledged event exists. It
// leaves the backlog to the caller. With raw, the level runs in --rounds segments, each
// after a raw segment of the same length.
func (b *bench) ingestRun(ctx context.Context, src *source, c int, profile, label string, follower bool, raw *interleavedRaw) (*ingestRun, error) {
	p := newPoster(b.webhookURL(nsIngest), b.tokens[nsIngest], slices.Max(b.o.concurrency))
	defer p.close()
	var warmNames []string
	if follower && b.o.warmup > 0 {
		t, _, err := b.closedLevel(ctx, src, p, c, b.o.warmup, "")
		if err != nil {
			return nil, fmt.Errorf("%s, warm-up: %w", label, err)
		}
		warmNames = t.ackedNames
	}
	before, err := b.reconciles(ctx)
	if err != nil {
		return nil, err
	}
	var t *tally
	var cores map[string]float64
	var drain float64
	if raw == nil {
		t, cores, err = b.closedLevel(ctx, src, p, c, b.o.ingestDuration, profile)
	} else {
		t, cores, drain, err = b.interleaved(ctx, src, p, c, profile, raw)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	after, err := b.reconciles(ctx)
	if err != nil {
		return nil, err
	}
	b.checkOther(label, cores)
	r := &ingestRun{
		Requests:              t.sent,
		Acked:                 t.acked,
		AckedDuplicates:       t.ackedDups,
		ByStatus:              t.byStatus,
		NoAnswer:              t.noAnswer,
		Seconds:               round3(t.elapsed.Seconds()),
		AckedPerSecond:        round3(float64(t.acked) / t.elapsed.Seconds()),
		UniqueAckedPerSecond:  round3(float64(t.acked-t.ackedDups) / t.elapsed.Seconds()),
		Latency:               statsOf(t.latencies),
		Reconciles:            after - before,
		DuplicateDrainSeconds: drain,
		CPUCores:              cores,
		Failures:              topReasons(t.reasons, 5),
	}
	if follower && r.Reconciles > 0 {
		b.note("%s: the operator reconciled %.0f events while the bench held the Lease: it was not a follower", label, r.Reconciles)
	}
	if r.Missing, err = b.verify(ctx, nsIngest, append(warmNames, t.ackedNames...)); err != nil {
		return nil, err
	}
	return r, nil
}

// closedLevel POSTs bodies of src with conc workers for dur; profile names the profiles
// taken meanwhile ("" for none).
func (b *bench) closedLevel(ctx context.Context, src *source, p *poster, conc int, dur time.Duration, profile string) (*tally, map[string]float64, error) {
	feedCtx, stop := context.WithCancel(ctx)
	defer stop()
	items, feedErr := feed(feedCtx, src.item)
	wait := func() {}
	if profile != "" {
		wait = b.profiles(ctx, profile, dur)
	}
	t := newTally()
	cpu := sampleCPU()
	err := runClosed(ctx, conc, dur, items, p.post, t)
	cores := coresSince(cpu)
	stop()
	wait()
	if err != nil {
		return nil, nil, err
	}
	if err := feedErr(); err != nil {
		return nil, nil, err
	}
	if t.acked == 0 {
		return nil, nil, fmt.Errorf("no request was acknowledged at concurrency %d: %v", conc, topReasons(t.reasons, 3))
	}
	return t, cores, nil
}

// interleaved runs the level in --rounds segments, each after a raw segment of the same
// length; the CPU use is the mean of the segments'. Profiles cover the first segment.
func (b *bench) interleaved(ctx context.Context, src *source, p *poster, c int, profile string, raw *interleavedRaw) (*tally, map[string]float64, float64, error) {
	seg := b.o.ingestDuration / time.Duration(b.o.rounds)
	total := newTally()
	cores := map[string]float64{}
	drain := 0.0
	for i := range b.o.rounds {
		if err := raw.segment(ctx, seg); err != nil {
			return nil, nil, 0, err
		}
		t, cs, err := b.closedLevel(ctx, src, p, c, seg, profile)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("round %d: %w", i+1, err)
		}
		// The receiver writes duplicate counts in the background, one event after the
		// other. Like the leader's processing between levels, what is left of them is
		// drained before the next raw segment, which would otherwise pay for it; the
		// time it takes is reported, not counted.
		d, err := b.waitDuplicateCounts(ctx, time.Minute)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("round %d: %w", i+1, err)
		}
		drain += d.Seconds()
		profile = ""
		total.merge(t)
		for k, v := range cs {
			cores[k] += v / float64(b.o.rounds)
		}
	}
	for k, v := range cores {
		cores[k] = math.Round(v*100) / 100
	}
	return total, cores, round3(drain), nil
}

// shed counts the 503 answers of a tally.
func shed(t *tally) int { return t.byStatus[http.StatusServiceUnavailable] }

// waitDuplicateCounts waits until the operator has no duplicate count left to write
// (funnel_webhook_duplicate_counts_pending is 0) and returns how long that took.
func (b *bench) waitDuplicateCounts(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		fams, err := b.op.metrics(ctx)
		if err != nil {
			return 0, err
		}
		if pending, _ := gaugeValue(fams, "funnel_webhook_duplicate_counts_pending"); pending <= 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			b.note("duplicate counts were still being written %s after an ingest segment; the rest spilled into the next raw segment", timeout)
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
