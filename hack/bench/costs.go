package main

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// costsConcurrency is the workers of each operation: enough to keep the API server busy,
// few enough that the bench's own client is not what is measured.
const costsConcurrency = 8

// costs measures what one API operation on a FunnelEvent costs the API server and etcd in
// CPU time, to say where the end-to-end and ingest ratios go: a create (all raw pays, and
// the receiver's write), a status patch (the controllers' one write per event, and a
// duplicate's count), and a get (how the receiver compares a repeat). Objects are the
// receiver's (receiver.NewEvent) in nsRaw, which the operator does not watch; the patch
// writes the status a processed event gets. The three alternate over the rounds so that
// the machine's drift falls on each alike.
func (b *bench) costs(ctx context.Context) error {
	src := newSource(b.o.seed, 300, 0)
	count, rounds := pick(&b.o, 1000, 200), pick(&b.o, 3, 1)
	ops := []struct {
		name string
		do   func(context.Context, *funnelv1.FunnelEvent) error
	}{
		{"create", func(ctx context.Context, ev *funnelv1.FunnelEvent) error { return b.c.Create(ctx, ev) }},
		{"status patch", func(ctx context.Context, ev *funnelv1.FunnelEvent) error {
			base := ev.DeepCopy()
			processedStatus(&ev.Status, time.Now())
			return b.c.Status().Patch(ctx, ev, client.MergeFrom(base))
		}},
		{"get", func(ctx context.Context, ev *funnelv1.FunnelEvent) error {
			return b.c.Get(ctx, client.ObjectKeyFromObject(ev), &funnelv1.FunnelEvent{})
		}},
	}
	sums := make([]opCost, len(ops))
	for round := range rounds {
		evs := make([]*funnelv1.FunnelEvent, count)
		for i := range evs {
			var err error
			if evs[i], err = src.object(nsRaw); err != nil {
				return err
			}
		}
		for i, op := range ops {
			var mu sync.Mutex
			var firstErr error
			next := 0
			cpu := sampleCPU()
			_, err := send.Run(ctx, send.Load{Concurrency: costsConcurrency, Count: len(evs)}, func() (*funnelv1.FunnelEvent, error) {
				next++
				return evs[next-1], nil
			}, func(ctx context.Context, ev *funnelv1.FunnelEvent) {
				if err := op.do(ctx, ev); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			})
			if err = cmp.Or(err, firstErr, ctx.Err()); err != nil {
				return fmt.Errorf("costs: %s: %w", op.name, err)
			}
			used := sampleCPU().secondsSince(cpu)
			sums[i].Count += len(evs)
			sums[i].APIServerSeconds += used["apiserver"]
			sums[i].EtcdSeconds += used["etcd"]
		}
		logf("costs: round %d of %d done (%d objects)", round+1, rounds, len(evs))
	}
	res := &costsResult{Concurrency: costsConcurrency, Rounds: rounds}
	perOp := func(c opCost) float64 { return c.APIServerSeconds / float64(c.Count) }
	for i, c := range sums {
		c.Op = ops[i].name
		c.APIServerMsPerOp, c.EtcdMsPerOp = round3(perOp(c)*1000), round3(c.EtcdSeconds/float64(c.Count)*1000)
		c.TimesCreate = valueOr(ratio(perOp(c), perOp(sums[0])))
		res.Ops = append(res.Ops, c)
		logf("costs: %-12s apiserver %.2f ms CPU per operation (%.2f× a create), etcd %.2f ms", c.Op, c.APIServerMsPerOp, c.TimesCreate, c.EtcdMsPerOp)
	}
	b.res.Costs = res
	return nil
}
