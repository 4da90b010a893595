package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// answerTimeout is how long the bench waits for an answer: longer than the 4 s the
// receiver promises, so that a late answer is seen and counted rather than cut off.
const answerTimeout = 10 * time.Second

// item is one webhook body, with the name of the FunnelEvent it becomes.
type item struct {
	body []byte
	name string
}

// recentBodies is how many recent bodies a duplicate is drawn from.
const recentBodies = 256

// source makes a stream of realistic bodies: every documented type, in all three envelopes
// at random, with a fraction dups of repeats of recently made bodies. One goroutine uses it
// at a time (send.Run calls next in order).
type source struct {
	gen     *synth.Generator
	r       *rand.Rand
	types   []string
	formats []funnel.Format
	dups    float64
	recent  []item
	next    int
}

// newSource makes a source; each stream of one seed gives other events.
func newSource(seed, stream uint64, dups float64) *source {
	return &source{
		gen:     synth.New(rand.New(rand.NewPCG(seed, stream))),
		r:       rand.New(rand.NewPCG(seed, stream^0x9e3779b97f4a7c15)),
		types:   synth.Types(),
		formats: synth.Formats(),
		dups:    dups,
	}
}

// item returns the next body: a repeat with probability dups once there is something to
// repeat, else a fresh event of a random type and format.
func (s *source) item() (item, error) {
	if len(s.recent) > 0 && s.r.Float64() < s.dups {
		return s.recent[s.r.IntN(len(s.recent))], nil
	}
	typ, format := s.types[s.r.IntN(len(s.types))], s.formats[s.r.IntN(len(s.formats))]
	body, err := s.gen.Event(typ, format)
	if err != nil {
		return item{}, err
	}
	name, err := funnel.EventName(harness.ReceiverName, body, time.Now())
	if err != nil {
		return item{}, fmt.Errorf("a synthetic %s %s body does not parse: %w", format, typ, err)
	}
	it := item{body: body, name: name}
	if len(s.recent) < recentBodies {
		s.recent = append(s.recent, it)
	} else {
		s.recent[s.next] = it
		s.next = (s.next + 1) % recentBodies
	}
	return it, nil
}

// object is the FunnelEvent the receiver of ns would create for the next body, made with
// the receiver's own code (receiver.NewEvent): same name, labels, annotations and spec.
func (s *source) object(ns string) (*funnelv1.FunnelEvent, error) {
	it, err := s.item()
	if err != nil {
		return nil, err
	}
	env, err := funnel.Parse(it.body)
	if err != nil {
		return nil, err
	}
	rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: harness.ReceiverName}}
	now := time.Now()
	return receiver.NewEvent(rcv, env, funnel.Naming{Receiver: harness.ReceiverName}.Identify(env, now), now), nil
}

// posted is what a posting run did: the report of its requests, how long it took, and
// when each acknowledged event was first posted.
type posted struct {
	rep   *send.Report
	stats send.Stats
	acked map[string]time.Time
}

// names are the acknowledged events.
func (p *posted) names() []string {
	out := make([]string, 0, len(p.acked))
	for n := range p.acked {
		out = append(out, n)
	}
	return out
}

// ackedPerSecond counts every acknowledged request, first receipts and repeats: each is a
// delivery Funnel sees acknowledged.
func (p *posted) ackedPerSecond() float64 {
	return round3(float64(p.rep.Acknowledged) / p.stats.Elapsed.Seconds())
}

// post sends bodies of src to the receiver of ns in the shape of l, one attempt each (a
// load run measures answers; it does not retry them).
func (b *bench) post(ctx context.Context, ns string, l send.Load, src *source) (*posted, error) {
	s := &send.Sender{URLs: []string{b.op.WebhookURL(ns, harness.ReceiverName)}, Auth: b.receivers[ns].Auth(),
		Timeout: answerTimeout, Client: send.NewClient(max(l.Concurrency, 64))}
	defer s.Client.CloseIdleConnections()
	p := &posted{rep: send.NewReport(), acked: map[string]time.Time{}}
	var mu sync.Mutex
	var err error
	p.stats, err = send.Run(ctx, l, src.item, func(ctx context.Context, it item) {
		a := s.Post(ctx, s.URLs[0], it.body, nil)
		p.rep.Add(send.Result{Event: it.name, Attempts: []send.Attempt{a}})
		if a.Acknowledged() {
			// The receiver says which event it stored; the prediction stands in for a
			// receiver that does not.
			name := cmp.Or(a.Event, it.name)
			mu.Lock()
			if first, ok := p.acked[name]; !ok || a.Start.Before(first) {
				p.acked[name] = a.Start
			}
			mu.Unlock()
		}
	})
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && p.rep.Acknowledged == 0 {
		err = fmt.Errorf("no request was acknowledged: %v", p.rep.TopFailures(3))
	}
	return p, err
}

// created is what a run of direct creates did.
type created struct {
	n, failed int
	latencies []time.Duration
	failures  map[string]int
	elapsed   time.Duration
}

func (c *created) perSecond() float64 { return round3(float64(c.n) / c.elapsed.Seconds()) }

// create creates the FunnelEvents of src in ns in the shape of l through the bench's
// client, which has no client-side rate limit: what the receiver's create costs without
// the receiver. With finish, each object then gets the status of a processed event (a
// second write).
func (b *bench) create(ctx context.Context, ns string, l send.Load, src *source, finish bool) (*created, error) {
	c := &created{failures: map[string]int{}}
	var mu sync.Mutex
	st, err := send.Run(ctx, l, func() (*funnelv1.FunnelEvent, error) { return src.object(ns) }, func(ctx context.Context, ev *funnelv1.FunnelEvent) {
		start := time.Now()
		err := b.c.Create(ctx, ev)
		if err == nil && finish {
			processedStatus(ev, time.Now())
			err = b.c.Status().Update(ctx, ev)
		}
		d := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			c.failed++
			c.failures[fmt.Sprintf("%d %v", apiCode(err), err)]++
			return
		}
		c.n++
		c.latencies = append(c.latencies, d)
	})
	c.elapsed = st.Elapsed
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && c.n == 0 {
		err = fmt.Errorf("no FunnelEvent could be created in %s: %v", ns, slices.Collect(maps.Keys(c.failures)))
	}
	return c, err
}

// processedStatus is the status the controllers write for a valid event of a known type
// that no subscription wants (controllers/event_lifecycle.go): the final phase, the three
// conditions, the summary.
func processedStatus(ev *funnelv1.FunnelEvent, now time.Time) {
	t := metav1.NewTime(now)
	st := &ev.Status
	st.Phase, st.ProcessedTime = funnelv1.PhaseSucceeded, &t
	st.Summary = funnel.Lookup(ev.Spec.Type).Decode(ev.Spec.Data.Raw).Summary
	cond := func(typ, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: ev.Generation, LastTransitionTime: t}
	}
	st.Conditions = []metav1.Condition{
		cond(funnelv1.ConditionValidated, funnelv1.ReasonValid, "Data matches its event type"),
		cond(funnelv1.ConditionDelivered, funnelv1.ReasonNoSubscriptions, "No subscription matches the event"),
		cond(funnelv1.ConditionReady, funnelv1.ReasonProcessed, "Processed"),
	}
}
