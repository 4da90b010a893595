package harness

import (
	"context"
	"sync/atomic"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// Sending is a SendAll running in the background, for tests that act on the operator
// (kill it, restart it) while Funnel-like load goes on.
type Sending struct {
	acked atomic.Int64
	done  chan []send.Result
}

// SendInBackground starts s.SendAll(ctx, bodies, concurrency) and counts the attempts
// acknowledged as they happen (after any OnAttempt s already has).
func SendInBackground(ctx context.Context, s *send.Sender, bodies [][]byte, concurrency int) *Sending {
	bg := &Sending{done: make(chan []send.Result, 1)}
	prev := s.OnAttempt
	s.OnAttempt = func(event string, a send.Attempt) {
		if prev != nil {
			prev(event, a)
		}
		if a.Acknowledged() {
			bg.acked.Add(1)
		}
	}
	go func() { bg.done <- s.SendAll(ctx, bodies, concurrency) }()
	return bg
}

// Acked is how many attempts have been acknowledged so far.
func (bg *Sending) Acked() int64 { return bg.acked.Load() }

// Wait returns SendAll's results once every body is sent (or ctx ended).
func (bg *Sending) Wait() []send.Result { return <-bg.done }
