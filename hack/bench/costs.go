package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// The operations whose cost the costs phase measures.
const (
	opCreate      = "create"
	opStatusPatch = "status patch"
	opGet         = "get"
)

// costsConcurrency is the workers of each operation: enough to keep the API server busy,
// few enough that the bench's own client is not what is measured.
const costsConcurrency = 8

// costs measures what one API operation on a FunnelEvent costs the API server and etcd
// in CPU time, to say where the end-to-end and ingest ratios go: a create (all raw pays,
// and the receiver's write), a status patch (the controllers' one write per event, and a
// duplicate's count), and a get (how the receiver compares a repeat). Objects are the
// receiver's (receiver.NewEvent) in nsRaw, which the operator does not watch; the patch
// writes the status a processed event gets. The three alternate over --costs-rounds so
// that the machine's drift falls on each alike.
func (b *bench) costs(ctx context.Context) error {
	src := newSource(b.o.seed, 300, 0)
	sums := map[string]*opCost{}
	for _, op := range []string{opCreate, opStatusPatch, opGet} {
		sums[op] = &opCost{Op: op}
	}
	for round := range b.o.costsRounds {
		evs := make([]*funnelv1.FunnelEvent, 0, b.o.costsCount)
		items, feedErr := rawFeed(ctx, nsRaw, src, b.o.costsCount)
		for it := range items {
			evs = append(evs, it.obj)
		}
		if err := feedErr(); err != nil {
			return err
		}
		steps := []struct {
			op string
			do func(context.Context, *funnelv1.FunnelEvent) error
		}{
			{opCreate, func(ctx context.Context, ev *funnelv1.FunnelEvent) error { return b.cl.c.Create(ctx, ev) }},
			{opStatusPatch, func(ctx context.Context, ev *funnelv1.FunnelEvent) error {
				base := ev.DeepCopy()
				processedStatus(&ev.Status, time.Now())
				return b.cl.c.Status().Patch(ctx, ev, client.MergeFrom(base))
			}},
			{opGet, func(ctx context.Context, ev *funnelv1.FunnelEvent) error {
				return b.cl.c.Get(ctx, client.ObjectKeyFromObject(ev), &funnelv1.FunnelEvent{})
			}},
		}
		for _, s := range steps {
			cpu := sampleCPU()
			if err := forEach(ctx, evs, costsConcurrency, s.do); err != nil {
				return fmt.Errorf("costs: %s: %w", s.op, err)
			}
			used := sampleCPU().secondsSince(cpu)
			c := sums[s.op]
			c.Count += len(evs)
			c.APIServerSeconds += used["apiserver"]
			c.EtcdSeconds += used["etcd"]
		}
		logf("costs: round %d of %d done (%d objects)", round+1, b.o.costsRounds, len(evs))
	}
	res := &costsResult{Concurrency: costsConcurrency, Rounds: b.o.costsRounds}
	create := sums[opCreate].perOp()
	for _, op := range []string{opCreate, opStatusPatch, opGet} {
		c := sums[op]
		c.APIServerMsPerOp, c.EtcdMsPerOp = round3(c.perOp()*1000), round3(c.EtcdSeconds/float64(c.Count)*1000)
		if create > 0 {
			c.TimesCreate = round3(c.perOp() / create)
		}
		res.Ops = append(res.Ops, *c)
		logf("costs: %-12s apiserver %.2f ms CPU per operation (%.2f× a create), etcd %.2f ms", op, c.APIServerMsPerOp, c.TimesCreate, c.EtcdMsPerOp)
	}
	b.res.Costs = res
	return nil
}

// perOp is the API server's CPU seconds per operation.
func (c *opCost) perOp() float64 {
	if c.Count == 0 {
		return 0
	}
	return c.APIServerSeconds / float64(c.Count)
}

// processedStatus is the status the controllers write for a valid event no subscription
// wants: the final phase, the three conditions, a summary.
func processedStatus(st *funnelv1.FunnelEventStatus, now time.Time) {
	t := metav1.NewTime(now)
	st.Phase, st.Attempts, st.ProcessedTime = funnelv1.PhaseSucceeded, 1, &t
	st.Summary = "Application 74824: Submitted → Approved"
	cond := func(typ, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: 1, LastTransitionTime: t}
	}
	st.Conditions = []metav1.Condition{
		cond(funnelv1.ConditionValidated, "Valid", "Data matches its event type"),
		cond(funnelv1.ConditionDelivered, "NoSubscriptions", "No subscription wants this event"),
		cond(funnelv1.ConditionReady, "Processed", "No subscription wants this event"),
	}
}

// forEach runs do for every object with conc workers and returns the first error.
func forEach(ctx context.Context, evs []*funnelv1.FunnelEvent, conc int, do func(context.Context, *funnelv1.FunnelEvent) error) error {
	next := make(chan *funnelv1.FunnelEvent)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range conc {
		wg.Go(func() {
			for ev := range next {
				if err := do(ctx, ev); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, ev := range evs {
		select {
		case next <- ev:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
