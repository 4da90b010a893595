package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// scaling offers fixed arrival rates (open loop) around the best ingest rate, to a
// follower (the receiver's capacity), each step on a freshly restarted follower and
// drained by the leader afterwards.
func (b *bench) scaling(ctx context.Context) error {
	src := newSource(b.o.seed, 5, b.o.duplicates)
	res := &scalingResult{DurationSeconds: b.o.scalingDuration.Seconds(), Operator: "follower"}
	for _, l := range b.res.Ingest {
		if l.AckedPerSecond > res.ReferencePerSecond {
			res.ReferencePerSecond = l.AckedPerSecond
			res.Reference = fmt.Sprintf("ingest acked/s at concurrency %d (follower)", l.Concurrency)
		}
	}
	if res.ReferencePerSecond == 0 {
		// The ingest phase did not run: calibrate with a short closed loop here.
		c := b.o.concurrency[len(b.o.concurrency)-1]
		logf("scaling: calibrating with a closed loop at concurrency %d on a follower", c)
		if err := b.follow(ctx); err != nil {
			return err
		}
		p := newPoster(b.webhookURL(nsScaling), b.tokens[nsScaling], 512)
		t, _, err := b.closedLevel(ctx, src, p, c, max(b.o.scalingDuration, 2*time.Second), "")
		p.close()
		if err != nil {
			return err
		}
		res.ReferencePerSecond = round3(float64(t.acked) / t.elapsed.Seconds())
		res.Reference = fmt.Sprintf("calibration: closed loop at concurrency %d on a follower in the scaling phase", c)
		if _, _, err := b.leadAndDrain(ctx, nsScaling, "the scaling calibration"); err != nil {
			return err
		}
	}

	for _, pct := range b.o.scalingSteps {
		rate := res.ReferencePerSecond * float64(pct) / 100
		// Each step on a fresh follower (the receiver's capacity), drained by the leader
		// afterwards, like the ingest levels.
		if err := b.follow(ctx); err != nil {
			return err
		}
		p := newPoster(b.webhookURL(nsScaling), b.tokens[nsScaling], 512)
		var warmNames []string
		if b.o.warmup > 0 {
			t, _, err := b.closedLevel(ctx, src, p, 8, b.o.warmup, "")
			if err != nil {
				p.close()
				return fmt.Errorf("scaling step %d%%, warm-up: %w", pct, err)
			}
			warmNames = t.ackedNames
		}
		feedCtx, stop := context.WithCancel(ctx)
		items, feedErr := feed(feedCtx, src.item)
		t := newTally()
		cpu := sampleCPU()
		dropped, err := runOpen(ctx, rate, b.o.scalingDuration, b.o.scalingMaxClients, items, p.post, t)
		cores := coresSince(cpu)
		stop()
		p.close()
		if err != nil {
			return err
		}
		if err := feedErr(); err != nil {
			return err
		}
		secs := max(t.elapsed.Seconds(), b.o.scalingDuration.Seconds())
		pt := scalingPoint{
			Percent:           pct,
			OfferedPerSecond:  round3(rate),
			Sent:              t.sent,
			Acked:             t.acked,
			AchievedPerSecond: round3(float64(t.acked) / secs),
			ByStatus:          t.byStatus,
			Shed503:           shed(t),
			Limited429:        t.byStatus[http.StatusTooManyRequests],
			NoAnswer:          t.noAnswer,
			DroppedByClient:   dropped,
			Latency:           statsOf(t.latencies),
			CPUCores:          cores,
			Failures:          topReasons(t.reasons, 5),
		}
		b.checkOther(fmt.Sprintf("scaling step %d%%", pct), cores)
		if pt.Missing, err = b.verify(ctx, nsScaling, append(warmNames, t.ackedNames...)); err != nil {
			return err
		}
		if pt.BacklogDrainSeconds, pt.TakeoverSeconds, err = b.leadAndDrain(ctx, nsScaling, fmt.Sprintf("scaling step %d%%", pct)); err != nil {
			return err
		}
		res.Points = append(res.Points, pt)
		logf("scaling %3d%% (follower): offered %7.1f/s achieved %7.1f/s  p50 %s p99 %s max %s  503×%d 429×%d no answer %d dropped %d, missing %d, backlog drained in %.1fs  CPU: %s",
			pct, rate, pt.AchievedPerSecond, fmtSeconds(pt.Latency.P50), fmtSeconds(pt.Latency.P99), fmtSeconds(pt.Latency.Max),
			pt.Shed503, pt.Limited429, pt.NoAnswer, pt.DroppedByClient, pt.Missing, pt.BacklogDrainSeconds, fmtCores(pt.CPUCores))
	}
	b.res.Scaling = res
	return nil
}
