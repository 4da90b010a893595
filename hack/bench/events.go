package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
)

// item is one webhook body to send, with the name of the FunnelEvent it becomes.
type item struct {
	body []byte
	name string
	// dup is set when body was sent before (a repeated delivery).
	dup bool
	// obj is the FunnelEvent of body, for direct creates.
	obj *funnelv1.FunnelEvent
}

// recentBodies is how many recent bodies a duplicate is drawn from.
const recentBodies = 256

// source makes a stream of realistic bodies: every documented type, in all three
// envelopes at random, with a fraction of repeats of recently sent bodies. It is not safe
// for concurrent use; feed runs it in one goroutine.
type source struct {
	gen     *synth.Generator
	r       *rand.Rand
	types   []string
	formats []funnel.Format
	dups    float64
	recent  []item
	next    int
}

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
		it := s.recent[s.r.IntN(len(s.recent))]
		it.dup = true
		return it, nil
	}
	typ := s.types[s.r.IntN(len(s.types))]
	format := s.formats[s.r.IntN(len(s.formats))]
	body, err := s.gen.Event(typ, format)
	if err != nil {
		return item{}, err
	}
	env, err := funnel.Parse(body)
	if err != nil {
		return item{}, fmt.Errorf("a synthetic %s %s body does not parse: %w", format, typ, err)
	}
	it := item{body: body, name: env.ObjectName(body)}
	if len(s.recent) < recentBodies {
		s.recent = append(s.recent, it)
	} else {
		s.recent[s.next] = it
		s.next = (s.next + 1) % recentBodies
	}
	return it, nil
}

// feed runs next in one goroutine, buffering ahead of the consumers, until ctx ends.
// The returned function reports the first error of next (after the channel is closed).
func feed(ctx context.Context, next func() (item, error)) (<-chan item, func() error) {
	return feedN(ctx, 0, next)
}

// feedN is feed that stops after count items when count > 0.
func feedN(ctx context.Context, count int, next func() (item, error)) (<-chan item, func() error) {
	ch := make(chan item, 1024)
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for i := 0; count <= 0 || i < count; i++ {
			it, e := next()
			if e != nil {
				err = e
				return
			}
			select {
			case ch <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() error { <-done; return err }
}

// eventObject builds the FunnelEvent the receiver of ns would create for body, with the
// receiver's own code (receiver.NewEvent): same name, labels, digest annotation and spec.
func eventObject(ns string, body []byte, now time.Time) (*funnelv1.FunnelEvent, error) {
	env, err := funnel.Parse(body)
	if err != nil {
		return nil, err
	}
	rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: receiverName}}
	return receiver.NewEvent(rcv, env, body, now), nil
}
