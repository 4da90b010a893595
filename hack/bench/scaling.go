package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// scaling offers fixed arrival rates (open loop) around the best ingest rate to a
// follower, the receiver's capacity, each step on a freshly restarted follower and
// drained by the leader afterwards, like the ingest levels.
func (b *bench) scaling(ctx context.Context) error {
	src := newSource(b.o.seed, 5, 0.10)
	res := &scalingResult{DurationSeconds: b.o.duration.Seconds()}
	for _, l := range b.res.Ingest {
		if l.AckedPerSecond > res.ReferencePerSecond {
			res.ReferencePerSecond, res.ReferenceConcurrency = l.AckedPerSecond, l.Concurrency
		}
	}
	for _, pct := range pick(&b.o, []int{25, 50, 75, 100, 125, 150, 200, 300}, []int{50, 100, 200}) {
		label := fmt.Sprintf("scaling %d%%", pct)
		rate := res.ReferencePerSecond * float64(pct) / 100
		if err := b.follow(ctx); err != nil {
			return err
		}
		warm, err := b.post(ctx, nsScaling, send.Load{Concurrency: 8, Duration: b.warmup()}, src)
		if err != nil {
			return fmt.Errorf("%s, warm-up: %w", label, err)
		}
		cpu := sampleCPU(b.procs())
		// The open loop sends as many requests at once as the rate needs, up to 2048: it gets
		// past what the closed loops reached.
		p, err := b.post(ctx, nsScaling, send.Load{Rate: rate, Duration: b.o.duration, Concurrency: 2048}, src)
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		pt := scalingPoint{Percent: pct, OfferedPerSecond: round3(rate), Sent: p.rep.Sent, Acked: p.rep.Acknowledged,
			AchievedPerSecond: round3(float64(p.rep.Acknowledged) / max(p.stats.Elapsed.Seconds(), b.o.duration.Seconds())),
			Shed503:           p.rep.ByStatus[http.StatusServiceUnavailable], Limited429: p.rep.ByStatus[http.StatusTooManyRequests],
			NoAnswer: p.rep.NoAnswer, DroppedByClient: p.stats.Dropped, Latency: latencyOf(p.rep.Latencies),
			CPUCores: coresSince(cpu), Failures: p.rep.TopFailures(5)}
		b.checkOther(label, pt.CPUCores)
		if pt.Missing, err = b.verify(ctx, nsScaling, append(warm.names(), p.names()...)); err != nil {
			return err
		}
		if pt.BacklogDrainSeconds, err = b.leadAndDrain(ctx, nsScaling, label); err != nil {
			return err
		}
		res.Points = append(res.Points, pt)
		logf("%s: offered %.1f/s, achieved %.1f/s; p50 %s p99 %s max %s; 503×%d 429×%d, no answer %d, dropped %d, missing %d; CPU %s",
			label, rate, pt.AchievedPerSecond, fmtSeconds(pt.Latency.P50), fmtSeconds(pt.Latency.P99), fmtSeconds(pt.Latency.Max),
			pt.Shed503, pt.Limited429, pt.NoAnswer, pt.DroppedByClient, pt.Missing, fmtCores(pt.CPUCores))
	}
	b.res.Scaling = res
	return nil
}
