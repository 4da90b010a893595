package reliability_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Lease timings of controller-runtime's leader election (the operator keeps the defaults),
// and the longest wait between two tries of a candidate: client-go jitters the retry
// period by up to 120 %.
const (
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
	maxRetryWait  = retryPeriod * 22 / 10
)

// Scenario 3: two replicas, one control plane. Both receive the same events at once;
// there is exactly one FunnelEvent per event; reconcilers run only on the leader; the
// leader is SIGKILLed and the other takes over within the lease duration and finishes.
var _ = Describe("Two replicas with leader election", func() {
	It("stores each event once, reconciles on the leader only, and fails over", func() {
		requireLong()
		n, m := 400, 100
		f := newFixture("replicas", fixtureOptions{replicas: 2, subscriptions: []string{"pms"}})
		leader := leaderIndex(f)
		follower := 1 - leader
		start := time.Now()

		By("sending every event to both replicas at once")
		sent := sendCopies(f, bodies(n), 2, 8)
		o := f.checkStored(sent)
		Expect(o.stored).To(Equal(n), "one FunnelEvent per event")
		f.waitFinal(n, 2*time.Minute)
		Expect(reconciles(Default, f.ops[follower])).To(BeZero(), "event reconciles on the follower")
		Expect(reconciles(Default, f.ops[leader])).To(BeNumerically(">=", n))

		By("killing the leader")
		f.ops[leader].Kill()
		killed := time.Now()
		// Nobody renews the Lease after the kill: this is the dead leader's last renewal.
		var lease coordinationv1.Lease
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: leaseName}, &lease)).To(Succeed())
		oldHolder, lastRenew := *lease.Spec.HolderIdentity, lease.Spec.RenewTime.Time

		// The survivor still receives; the new events wait for a leader.
		more := f.sender(follower).SendAll(ctx, bodies(m), 8)
		for _, r := range more {
			Expect(r.Acknowledged()).To(BeTrue(), "acknowledged by the survivor: %v", r.Attempts)
		}
		Eventually(func(g Gomega) bool { return isLeader(g, f.ops[follower]) }).
			WithTimeout(2 * leaseDuration).WithPolling(50 * time.Millisecond).Should(BeTrue())
		takeover := time.Since(killed)
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: leaseName}, &lease)).To(Succeed())
		Expect(*lease.Spec.HolderIdentity).NotTo(Equal(oldHolder))
		// The survivor takes the Lease once it has not changed for leaseDuration on the
		// survivor's clock, which starts when it saw the last renewal (its next try, at most
		// maxRetryWait later); it notices the expiry on its next try: never before the lease
		// duration (that would be two leaders), at most two retry waits after it.
		gap := lease.Spec.AcquireTime.Sub(lastRenew)
		Expect(gap).To(BeNumerically(">=", leaseDuration), "new acquire time − last renewal: no overlap")
		Expect(gap).To(BeNumerically("<=", leaseDuration+2*maxRetryWait+time.Second), "new acquire time − last renewal")
		Expect(takeover).To(BeNumerically("<=", leaseDuration+2*maxRetryWait+time.Second), "takeover after SIGKILL")

		f.waitFinal(n+m, 2*time.Minute)
		all := append(sent, more...)
		o = f.checkStored(all)
		Expect(o.stored).To(Equal(n + m))
		redelivered := f.checkDeliveries()
		Expect(reconciles(Default, f.ops[follower])).To(BeNumerically(">=", m), "the new leader processed the rest")
		record(o.row("3. two replicas, leader SIGKILLed", time.Since(start),
			fmt.Sprintf("%d events to both replicas, then %d to the survivor; follower reconciles 0 before the kill; takeover %s after SIGKILL, %s after the last renewal (lease %s); %d redelivered; codes %s",
				n, m, takeover.Round(100*time.Millisecond), gap.Round(100*time.Millisecond), leaseDuration, redelivered, codes(all))))
	})
})
