package reliability_test

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// Scenario 2: kube-apiserver stopped mid-load for 10 s, then started again on the same
// address. Requests during the outage get 503 within 4 s, never 200; after recovery the
// senders' retries land; nothing acknowledged is missing and no event is stored twice.
var _ = Describe("API server outage", func() {
	It("answers 503 while the API server is down, and the retries land after", func() {
		requireLong()
		const (
			rate   = 50 * time.Millisecond // one new event every 50 ms, each with its retries
			before = 3 * time.Second
			outage = 10 * time.Second
		)
		n := 500 // 25 s of load: before, during and well after the outage
		// No leader election: with a 10 s outage the leader could not renew its 15 s lease
		// and would exit for a supervisor to restart; here the process itself must ride it out.
		f := newFixture("outage", fixtureOptions{subscriptions: []string{"pms"}})
		s := f.sender()
		// Funnel-like spacing: the Retry-After (5 s) of a 503, else 4 s, 8 s, 16 s.
		s.RetryDelay = func(n int, last send.Attempt) time.Duration {
			return max(send.RetryAfterOrBackoff(n, last), 4*time.Second<<(n-1))
		}
		bs := bodies(n)
		start := time.Now()

		var mu sync.Mutex
		var sent []send.Result
		var wg sync.WaitGroup
		go func() {
			defer GinkgoRecover()
			tick := time.NewTicker(rate)
			defer tick.Stop()
			for _, b := range bs {
				<-tick.C
				wg.Go(func() {
					r := s.Send(ctx, b)
					mu.Lock()
					sent = append(sent, r)
					mu.Unlock()
				})
			}
		}()

		time.Sleep(before) // the scenario: load first, then the outage
		By("stopping kube-apiserver")
		Expect(cp.StopAPIServer()).To(Succeed())
		down := time.Now()
		time.Sleep(outage) // the scenario: the API server stays down for 10 s
		up := time.Now()
		By("starting kube-apiserver again")
		Expect(cp.StartAPIServer()).To(Succeed())
		healthy := time.Now()
		Eventually(func() int { mu.Lock(); defer mu.Unlock(); return len(sent) }).WithTimeout(2 * time.Minute).Should(Equal(n))
		wg.Wait()
		Expect(f.ops[0].Running()).To(BeTrue(), "the operator rode out the outage: %v", f.ops[0].Err())

		var during, slow, ackedDuring []string
		retried := 0
		for _, r := range sent {
			got503 := false
			for _, a := range r.Attempts {
				if a.Duration >= 4*time.Second || a.Code == 0 {
					slow = append(slow, r.Event+": "+a.String())
				}
				if !a.Start.Before(down) && a.Start.Before(up) {
					during = append(during, a.String())
					if a.Code != http.StatusServiceUnavailable || a.RetryAfter == "" {
						ackedDuring = append(ackedDuring, r.Event+": "+a.String())
					}
				}
				if a.Code == http.StatusServiceUnavailable {
					got503 = true
				}
			}
			if got503 && r.Acknowledged() {
				retried++
			}
		}
		Expect(during).NotTo(BeEmpty(), "requests during the outage")
		Expect(ackedDuring).To(BeEmpty(), "answers during the outage other than 503 with Retry-After")
		Expect(slow).To(BeEmpty(), "answers later than 4 s, or none")
		Expect(retried).To(BeNumerically(">", 0), "events answered 503, then acknowledged on a retry")
		var notAcked []string
		for _, r := range sent {
			if !r.Acknowledged() {
				notAcked = append(notAcked, fmt.Sprint(r.Event, r.Attempts))
			}
		}
		Expect(notAcked).To(BeEmpty(), "events never acknowledged despite Funnel's retries")

		o := f.checkStored(sent)
		Expect(o.stored).To(Equal(n), "one FunnelEvent per event")
		f.waitFinal(n, 2*time.Minute)
		f.checkDeliveries()
		record(o.row("2. kube-apiserver down 10 s mid-load", time.Since(start),
			fmt.Sprintf("%d events; %d requests during the outage, all 503 + Retry-After within 4 s; %d events acknowledged on a retry after a 503; API server healthy %s after restart; codes %s",
				n, len(during), retried, healthy.Sub(up).Round(100*time.Millisecond), codes(sent))))
	})
})
