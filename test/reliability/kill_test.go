package reliability_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// Scenario 1: the operator is SIGKILLed mid-load and restarted. Every event that got a
// 200 exists, every event reaches a final phase, deliveries resume, and the target sees
// each event at least once, every redelivery with the same Idempotency-Key.
var _ = Describe("Operator killed mid-load", func() {
	It("loses no acknowledged event and resumes deliveries", func() {
		n, kills := size(150, 1500), size(1, 3)
		f := newFixture("kill", fixtureOptions{subscriptions: []string{"pms"}})
		op := f.ops[0]
		start := time.Now()

		sending := harness.SendInBackground(ctx, f.sender(), bodies(n), 8)

		var restarted time.Time
		for k := 1; k <= kills; k++ {
			// Kill points spread over the load: at 1/(kills+1), 2/(kills+1), … of it.
			at := int64(n * k / (kills + 1))
			Eventually(sending.Acked).WithTimeout(2*time.Minute).Should(BeNumerically(">=", at), "acknowledged before kill %d", k)
			By(fmt.Sprintf("SIGKILL %d after %d acknowledgements", k, sending.Acked()))
			op.Kill()
			Expect(op.Start()).To(Succeed())
			Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
			restarted = time.Now()
		}
		sent := sending.Wait()

		o := f.checkStored(sent)
		f.waitFinal(o.stored, 2*time.Minute)
		redelivered := f.checkDeliveries()
		after := 0
		for _, r := range f.sink.Requests() {
			if r.Time.After(restarted) {
				after++
			}
		}
		Expect(after).To(BeNumerically(">", 0), "deliveries after the last restart")

		By("asking for a replay by annotation while the operator is down")
		op.Kill()
		var victim string
		for name := range f.events(Default) {
			victim = name
			break
		}
		Expect(k8s.Patch(ctx, &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: victim}},
			client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"while-down"}}}`, funnelv1.AnnotationReplay)))).To(Succeed())
		Expect(op.Start()).To(Succeed())
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
		Eventually(func(g Gomega) funnelv1.FunnelEventStatus {
			return f.events(g)[victim].Status
		}).Should(SatisfyAll(HaveField("ObservedReplay", "while-down"), HaveField("Phase", funnelv1.PhaseSucceeded)),
			"the replay asked for while the operator was down")
		record(o.row(fmt.Sprintf("1. operator SIGKILLed %d× mid-load", kills), time.Since(start),
			fmt.Sprintf("%d events, %d deliveries after the last restart, %d redelivered (same key); a replay annotated while the operator was down ran after its restart; codes %s",
				n, after, redelivered, codes(sent))))
	})
})
