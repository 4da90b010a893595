package backfill_test

import (
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var base = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

var _ = Describe("FunnelBackfill", func() {
	var (
		ns   string
		sink *harness.Sink
	)
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "backfill")
		Expect(err).NotTo(HaveOccurred())
		sink, err = harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(sink.Close)
	})

	// archived writes a finished event to the archive, received minutes after base.
	archived := func(name, typ, community string, minutes int) {
		GinkgoHelper()
		received := base.Add(time.Duration(minutes) * time.Minute)
		ev := &funnelv1.FunnelEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uuid.NewUUID(), ResourceVersion: "1",
				CreationTimestamp: metav1.NewTime(received), Labels: map[string]string{
					funnelv1.LabelEventType: funnel.LabelValue(typ), funnel.LabelCommunityID: community}},
			Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, Type: typ, EventID: name,
				ReceivedAt: metav1.NewMicroTime(received), Data: runtime.RawExtension{Raw: []byte(`{"community_id": ` + community + `}`)}},
			Status: funnelv1.FunnelEventStatus{Phase: funnelv1.PhaseSucceeded, Summary: name},
		}
		_, err := store.Write(ctx, []*funnelv1.FunnelEvent{ev})
		Expect(err).NotTo(HaveOccurred())
	}
	subscription := func(name, path string, types []string, retries int32) {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: types,
				Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sink.URL + path}},
				Delivery: funnelv1.DeliveryPolicy{Retries: ptr.To(retries), BackoffDelay: funnelv1.NewDuration(10 * time.Millisecond)}}})).To(Succeed())
	}
	create := func(name string, spec funnelv1.FunnelBackfillSpec) {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
	}
	get := func(name string) func(Gomega) funnelv1.FunnelBackfill {
		return func(g Gomega) funnelv1.FunnelBackfill {
			var bf funnelv1.FunnelBackfill
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &bf)).To(Succeed())
			return bf
		}
	}
	complete := func(bf funnelv1.FunnelBackfill) bool {
		return meta.IsStatusConditionTrue(bf.Status.Conditions, funnelv1.ConditionComplete)
	}
	keys := func(path string) map[string]int {
		out := map[string]int{}
		for _, r := range sink.Requests() {
			if r.Path == path {
				out[r.Key]++
			}
		}
		return out
	}
	key := func(event, sub string) string { return ns + "/" + event + "/" + sub }

	It("delivers exactly the matching archived events, once, to that subscription only, and records them in the archive", func() {
		startBackfills()
		archived("evt-1", "lease_transaction.status_updated", "1", 0)
		archived("evt-2", "lease_transaction.status_updated", "2", 1) // another community
		archived("evt-3", "lease.move_in", "1", 2)                    // another type
		archived("evt-4", "lease_transaction.application_created", "1", 3)
		archived("evt-5", "lease_transaction.status_updated", "1", 600) // after the range
		subscription("new", "/new", []string{"lease_transaction.*"}, 0)
		subscription("old", "/old", []string{"*"}, 0)

		create("march", funnelv1.FunnelBackfillSpec{Subscription: "new",
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{funnel.LabelCommunityID: "1"}},
			ReceivedBefore: &metav1.Time{Time: base.Add(time.Hour)}, EventsPerSecond: 100})
		Eventually(get("march")).Should(Satisfy(complete))
		Expect(keys("/new")).To(Equal(map[string]int{key("evt-1", "new"): 1, key("evt-4", "new"): 1}))
		Expect(keys("/old")).To(BeEmpty(), "only the backfill's subscription")
		bf := get("march")(Default)
		Expect(bf.Status).To(And(HaveField("Delivered", int64(2)), HaveField("Failed", int64(0)), HaveField("Remaining", int64(0)),
			HaveField("CompletionTime", Not(BeNil()))))
		Expect(meta.FindStatusCondition(bf.Status.Conditions, funnelv1.ConditionReady)).To(HaveField("Reason", funnelv1.ReasonBackfilling))
		succeeded, failed, err := store.BackfillCounts(ctx, bf.UID)
		Expect(err).NotTo(HaveOccurred())
		Expect([]int64{succeeded, failed}).To(Equal([]int64{2, 0}), "outcomes in the archive")

		By("a failing target: failed after the subscription's retries, counted and recorded")
		sink.SetCode(http.StatusInternalServerError)
		subscription("down", "/down", []string{"lease.*"}, 2)
		create("down", funnelv1.FunnelBackfillSpec{Subscription: "down", EventsPerSecond: 100})
		Eventually(get("down")).Should(And(Satisfy(complete), HaveField("Status.Failed", int64(1)), HaveField("Status.Delivered", int64(0))))
		Expect(keys("/down")).To(Equal(map[string]int{key("evt-3", "down"): 3}), "one attempt and two retries, the same key")
	})

	It("resumes after a restart from where it was, without delivering again what got an outcome", func() {
		stop := startBackfills()
		for i := range 8 {
			archived(fmt.Sprintf("evt-%d", i), "renter.created", "1", i)
		}
		subscription("crm", "/crm", []string{"renter.*"}, 0)
		create("renters", funnelv1.FunnelBackfillSpec{Subscription: "crm", EventsPerSecond: 4})
		Eventually(func() int { return len(keys("/crm")) }).Should(BeNumerically(">=", 3))
		Eventually(get("renters")).Should(HaveField("Status.Position", Not(BeEmpty())))
		stop()
		startBackfills()
		Eventually(get("renters")).Should(And(Satisfy(complete), HaveField("Status.Delivered", int64(8))))
		got := keys("/crm")
		Expect(got).To(HaveLen(8))
		for k, n := range got {
			Expect(n).To(Equal(1), "%s delivered once", k)
		}
	})

	It("stops when deleted", func() {
		startBackfills()
		for i := range 20 {
			archived(fmt.Sprintf("evt-%d", i), "renter.created", "1", i)
		}
		subscription("crm", "/crm", []string{"renter.*"}, 0)
		create("slow", funnelv1.FunnelBackfillSpec{Subscription: "crm", EventsPerSecond: 2})
		Eventually(func() int { return len(keys("/crm")) }).Should(BeNumerically(">=", 2))
		Expect(k8s.Delete(ctx, &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "slow"}})).To(Succeed())
		after := len(keys("/crm"))
		// At 2 a second, 2 s would bring 4 more; one may have been under way at the delete.
		Consistently(func() int { return len(keys("/crm")) }, 2*time.Second).Should(BeNumerically("<=", after+1))
	})

	It("says why it cannot run: no such subscription, then a Job subscription as soon as it appears", func() {
		startBackfills()
		reason := func(name string) func(g Gomega) string {
			return func(g Gomega) string {
				c := meta.FindStatusCondition(get(name)(g).Status.Conditions, funnelv1.ConditionReady)
				g.Expect(c).NotTo(BeNil())
				return c.Reason
			}
		}
		create("jobs", funnelv1.FunnelBackfillSpec{Subscription: "jobs"})
		Eventually(reason("jobs")).Should(Equal(funnelv1.ReasonSubscriptionNotFound))

		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jobs"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{Job: &funnelv1.JobAction{
				Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1"}}}}}}}}}})).To(Succeed())
		// Well within the 30 s recheck: the new subscription wakes the backfill naming it.
		Eventually(reason("jobs"), 10*time.Second).Should(Equal(funnelv1.ReasonUnsupportedAction))
	})

	It("refuses a changed spec and a reversed time range", func() {
		create("fixed", funnelv1.FunnelBackfillSpec{Subscription: "a"})
		bf := get("fixed")(Default)
		bf.Spec.Subscription = "b"
		Expect(k8s.Update(ctx, &bf)).To(MatchError(ContainSubstring("spec is immutable")))
		err := k8s.Create(ctx, &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reversed"},
			Spec: funnelv1.FunnelBackfillSpec{Subscription: "a", ReceivedAfter: &metav1.Time{Time: base.Add(time.Hour)},
				ReceivedBefore: &metav1.Time{Time: base}}})
		Expect(err).To(MatchError(ContainSubstring("receivedAfter must be before receivedBefore")))
	})
})
