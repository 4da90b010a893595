package history_test

import (
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var _ = Describe("Archive and history API", func() {
	It("archive every acknowledged event once across a SIGKILL and a database outage; retention waits; kubectl reads it back", func() {
		const n = 60
		ns := "history-e2e"
		rcv, err := harness.NewReceiver(ctx, k8s, ns, false)
		Expect(err).NotTo(HaveOccurred())
		Expect(harness.WaitReceiverReady(ctx, k8s, types.NamespacedName{Namespace: ns, Name: harness.ReceiverName}, time.Minute)).To(Succeed())
		db, err := pgxpool.New(ctx, pg.URL)
		Expect(err).NotTo(HaveOccurred())
		defer db.Close()

		bodies, err := harness.Events(uint64(GinkgoRandomSeed()), n)
		Expect(err).NotTo(HaveOccurred())
		s := &send.Sender{Auth: rcv.Auth(), Retries: send.FunnelRetries, URLs: []string{op.WebhookURL(ns, harness.ReceiverName)}}
		sending := harness.SendInBackground(ctx, s, bodies, 4)

		Eventually(sending.Acked).Should(BeNumerically(">=", n/3))
		By("SIGKILL mid-load")
		op.Kill()
		Expect(op.Start()).To(Succeed())
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
		Eventually(sending.Acked).Should(BeNumerically(">=", 2*n/3))
		By("the archive's database down for a while")
		errorsBefore := archiveErrors(Default)
		Expect(pg.StopServer(ctx)).To(Succeed())
		Eventually(archiveErrors).Should(BeNumerically(">", errorsBefore), "the operator met the outage")
		Expect(pg.StartServer(ctx)).To(Succeed())
		results := sending.Wait()

		acknowledged := map[string]bool{}
		for _, r := range results {
			if r.Acknowledged() {
				acknowledged[r.Event] = true
			}
		}
		Expect(acknowledged).To(HaveLen(n), "every event acknowledged (Funnel-like retries)")

		By("every event archived once, as it is now")
		Eventually(func(g Gomega) {
			var list funnelv1.FunnelEventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			rvs := map[string]string{}
			for _, ev := range list.Items {
				g.Expect(ev.Status.Phase.Finished()).To(BeTrue(), "%s is %s", ev.Name, ev.Status.Phase)
				rvs[ev.Name] = ev.ResourceVersion
			}
			rows, err := db.Query(ctx, `SELECT name, resource_version FROM funnel_events WHERE namespace = $1`, ns)
			g.Expect(err).NotTo(HaveOccurred())
			archived := map[string]string{}
			for rows.Next() {
				var name, rv string
				g.Expect(rows.Scan(&name, &rv)).To(Succeed())
				g.Expect(archived).NotTo(HaveKey(name), "one row per event")
				archived[name] = rv
			}
			g.Expect(rows.Err()).NotTo(HaveOccurred())
			g.Expect(archived).To(Equal(rvs))
		}).WithTimeout(2 * time.Minute).Should(Succeed())

		By("retention trims etcd to maxEvents, deleting only archived events")
		Expect(k8s.Patch(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: harness.ReceiverName}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"retention":{"maxEvents":5}}}`)))).To(Succeed())
		Eventually(func(g Gomega) int {
			var list funnelv1.FunnelEventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			return len(list.Items)
		}).Should(Equal(5))
		var archived int
		Expect(db.QueryRow(ctx, `SELECT count(*) FROM funnel_events WHERE namespace = $1`, ns).Scan(&archived)).To(Succeed())
		Expect(archived).To(Equal(n))

		By("kubectl reads the history back through the API server")
		out, err := testenv.Kubectl(cp.Env(), "get", "archivedevents", "-n", ns, "--no-headers")
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Split(strings.TrimSpace(out), "\n")).To(HaveLen(n))
	})
	It("backfills a new subscription from the archive, surviving a SIGKILL, each event once", func() {
		ns := "history-e2e" // the 60 events archived by the spec above (specs run in order)
		sink, err := harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		defer func() { _ = sink.Close() }()
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sink.URL + "/late"}}}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"},
			Spec: funnelv1.FunnelBackfillSpec{Subscription: "late", EventsPerSecond: 10}})).To(Succeed())
		Eventually(sink.Len).Should(BeNumerically(">=", 15))
		By("SIGKILL mid-backfill")
		op.Kill()
		Expect(op.Start()).To(Succeed())
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
		Eventually(func(g Gomega) funnelv1.FunnelBackfillStatus {
			var bf funnelv1.FunnelBackfill
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "late"}, &bf)).To(Succeed())
			return bf.Status
		}).WithTimeout(2 * time.Minute).Should(And(HaveField("Delivered", int64(60)), HaveField("Remaining", int64(0)),
			HaveField("CompletionTime", Not(BeNil()))))
		byKey := sink.ByKey()
		Expect(byKey).To(HaveLen(60), "every archived event, to the new subscription")
		again := 0
		for _, n := range byKey {
			again += n - 1
		}
		Expect(again).To(BeNumerically("<=", 1), "at most the delivery under way at the SIGKILL is made again, with the same key")
	})
})

// archiveErrors is the operator's funnel_archive_errors_total.
func archiveErrors(g Gomega) float64 {
	families, err := op.Metrics(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	return harness.Sum(families, "funnel_archive_errors_total", nil)
}
