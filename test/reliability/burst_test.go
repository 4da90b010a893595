package reliability_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// funnelBackoff is a Funnel-like schedule: 1 s, 2 s, 4 s between its 4 attempts (at
// most 8 s), whatever the answer's Retry-After says — Funnel documents its retry count,
// not its schedule, nor that it reads Retry-After.
func funnelBackoff(n int, _ send.Attempt) time.Duration {
	return min(time.Second<<(n-1), 8*time.Second)
}

// Scenario 9: a burst as Funnel sends one (a nightly sync, a backlog after an outage on
// its side), to a receiver with the defaults: nothing may be given up. A rate limit of
// 100/s (burst 200), the former default, made this very burst give one event up.
var _ = Describe("Burst from a Funnel-like sender", func() {
	It("gives nothing up with the receiver's defaults: every event acknowledged within 4 attempts, and stored once", func() {
		n := size(300, 3000)
		const inFlight = 32
		f := newFixture("burst", fixtureOptions{subscriptions: []string{"pms"}})
		s := f.sender()
		s.RetryDelay = funnelBackoff
		start := time.Now()
		sent := s.SendAll(ctx, bodies(n), inFlight)
		took := time.Since(start)

		var gaveUp []string
		retried := 0
		for _, r := range sent {
			if !r.Acknowledged() {
				gaveUp = append(gaveUp, fmt.Sprintf("%s: %v", r.Event, r.Attempts))
			}
			if len(r.Attempts) > 1 {
				retried++
			}
		}
		Expect(gaveUp).To(BeEmpty(), "events a Funnel-like sender gave up on")
		o := f.checkStored(sent)
		Expect(o.stored).To(Equal(n), "one FunnelEvent per event")
		record(o.row("9. Funnel-like burst, receiver defaults", took,
			fmt.Sprintf("%d events at %d in flight, 4 attempts 1-8 s apart: %d given up, %d needed a retry; %.0f events/s; codes %s",
				n, inFlight, len(gaveUp), retried, float64(n)/took.Seconds(), codes(sent))))
	})
})
