package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// ingest sends webhooks over HTTP at each concurrency and compares with raw.
func (b *bench) ingest(ctx context.Context) error {
	src := newSource(b.o.seed, 2, b.o.duplicates)
	p := newPoster(b.webhookURL(nsIngest), b.tokens[nsIngest], slices.Max(b.o.concurrency))
	defer p.close()
	if b.o.warmup > 0 {
		logf("ingest: warm-up %s", b.o.warmup)
		t, _, err := b.closedLevel(ctx, src, p, 8, b.o.warmup, "")
		if err != nil {
			return err
		}
		if _, err := b.verify(ctx, nsIngest, t.ackedNames); err != nil {
			return err
		}
		if _, err := b.drain(ctx, nsIngest, "the ingest warm-up"); err != nil {
			return err
		}
	}
	for _, c := range b.o.concurrency {
		t, cores, err := b.closedLevel(ctx, src, p, c, b.o.ingestDuration, fmt.Sprintf("ingest-c%d", c))
		if err != nil {
			return err
		}
		l := ingestLevel{
			Concurrency:          c,
			Requests:             t.sent,
			Acked:                t.acked,
			AckedDuplicates:      t.ackedDups,
			ByStatus:             t.byStatus,
			NoAnswer:             t.noAnswer,
			Seconds:              round3(t.elapsed.Seconds()),
			AckedPerSecond:       round3(float64(t.acked) / t.elapsed.Seconds()),
			UniqueAckedPerSecond: round3(float64(t.acked-t.ackedDups) / t.elapsed.Seconds()),
			Latency:              statsOf(t.latencies),
			RawCreatesPerSecond:  b.rawBaseline(c),
			CPUCores:             cores,
			Failures:             topReasons(t.reasons, 5),
		}
		if l.RawCreatesPerSecond != nil {
			l.Ratio = ratio(l.AckedPerSecond, *l.RawCreatesPerSecond)
		}
		if l.RawProcessedPerSecond = rateAt(b.res.RawProcessed, c); l.RawProcessedPerSecond != nil {
			l.RatioProcessed = ratio(l.AckedPerSecond, *l.RawProcessedPerSecond)
		}
		b.checkOther(fmt.Sprintf("ingest c=%d", c), cores)
		if l.Missing, err = b.verify(ctx, nsIngest, t.ackedNames); err != nil {
			return err
		}
		if l.BacklogDrainSeconds, err = b.drain(ctx, nsIngest, fmt.Sprintf("ingest c=%d", c)); err != nil {
			return err
		}
		b.res.Ingest = append(b.res.Ingest, l)
		ratio := "n/a"
		if l.Ratio != nil {
			ratio = fmt.Sprintf("%.2f×", *l.Ratio)
		}
		logf("ingest c=%-3d %8.1f acked/s (%s raw)  p50 %s p95 %s p99 %s max %s  not acked %d, missing %d, backlog drained in %.1fs  CPU: %s",
			c, l.AckedPerSecond, ratio, fmtSeconds(l.Latency.P50), fmtSeconds(l.Latency.P95), fmtSeconds(l.Latency.P99),
			fmtSeconds(l.Latency.Max), l.Requests-l.Acked, l.Missing, l.BacklogDrainSeconds, fmtCores(l.CPUCores))
	}
	return nil
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

// shed counts the 503 answers of a tally.
func shed(t *tally) int { return t.byStatus[http.StatusServiceUnavailable] }
