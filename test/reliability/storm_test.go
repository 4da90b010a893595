package reliability_test

import (
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// eventControllers are the per-family event controllers (controller label of
// controller_runtime_reconcile_total).
var eventControllers = map[string]bool{"lease_transaction": true, "lease": true, "quote": true, "prospect": true, "unknown": true}

// reconciles sums controller_runtime_reconcile_total of the event controllers of op.
func reconciles(g Gomega, op *harness.Operator) float64 {
	m, err := op.Metrics(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	return harness.Sum(m, "controller_runtime_reconcile_total", func(l map[string]string) bool { return eventControllers[l["controller"]] })
}

// isLeader reads leader_election_master_status from op's metrics.
func isLeader(g Gomega, op *harness.Operator) bool {
	m, err := op.Metrics(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	return harness.Sum(m, "leader_election_master_status", nil) == 1
}

// leaderIndex waits until exactly one replica leads and returns it.
func leaderIndex(f *fixture) int {
	GinkgoHelper()
	leader := -1
	Eventually(func(g Gomega) {
		leader = -1
		for i, op := range f.ops {
			if isLeader(g, op) {
				g.Expect(leader).To(Equal(-1), "two leaders")
				leader = i
			}
		}
		g.Expect(leader).NotTo(Equal(-1), "no leader")
	}).Should(Succeed())
	return leader
}

// sendCopies sends every body copies times at once, copy i to replica i mod replicas, and
// returns one Result per request (the same event name repeated).
func sendCopies(f *fixture, bodies [][]byte, copies, concurrency int) []send.Result {
	senders := make([]*send.Sender, len(f.ops))
	for i := range f.ops {
		senders[i] = f.sender(i)
	}
	out := make([]send.Result, len(bodies)*copies)
	work := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range work {
				var each sync.WaitGroup
				for c := range copies {
					each.Go(func() { out[i*copies+c] = senders[c%len(senders)].Send(ctx, bodies[i]) })
				}
				each.Wait()
			}
		})
	}
	for i := range bodies {
		work <- i
	}
	close(work)
	wg.Wait()
	return out
}

// Scenario 4: each event sent 5× at once across two replicas → one object, the extra
// receipts counted in status.duplicates, one delivery per subscription.
var _ = Describe("Duplicate storm across replicas", func() {
	It("stores one object per event, counts the duplicates and delivers once per subscription", func() {
		const copies = 5
		n := size(40, 300)
		f := newFixture("storm", fixtureOptions{replicas: 2, subscriptions: []string{"pms", "crm"}})
		leader := leaderIndex(f)
		start := time.Now()
		sent := sendCopies(f, bodies(n), copies, 4)

		o := f.checkStored(sent)
		Expect(o.stored).To(Equal(n), "one FunnelEvent per event")
		f.waitFinal(n, 2*time.Minute)
		// Each receipt answered 200 after the first is a duplicate; the count is written in
		// the background, so wait for it.
		acks := map[string]int64{}
		for _, r := range sent {
			if r.Acknowledged() {
				acks[r.Event]++
			}
		}
		Eventually(func(g Gomega) []string {
			var wrong []string
			for name, ev := range f.events(g) {
				if ev.Status.Duplicates != acks[name]-1 {
					wrong = append(wrong, fmt.Sprintf("%s: duplicates %d, want %d", name, ev.Status.Duplicates, acks[name]-1))
				}
			}
			return wrong
		}).Should(BeEmpty(), "status.duplicates")
		o = f.checkStored(sent)

		Expect(f.checkDeliveries()).To(BeZero(), "deliveries beyond one per event and subscription")
		Expect(f.sink.Len()).To(Equal(n * len(f.subs)))

		follower := 1 - leader
		Expect(reconciles(Default, f.ops[follower])).To(BeZero(), "event reconciles on the follower")
		Expect(reconciles(Default, f.ops[leader])).To(BeNumerically(">=", n), "event reconciles on the leader")
		record(o.row("4. duplicate storm (5× each, 2 replicas)", time.Since(start),
			fmt.Sprintf("%d events × %d; %d deliveries for %d subscriptions; follower reconciles 0; codes %s",
				n, copies, f.sink.Len(), len(f.subs), codes(sent))))
	})
})
