package controllers_test

import (
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

var _ = Describe("Retention", func() {
	var (
		ns        string
		clock     *clocktesting.FakeClock
		retention *controllers.RetentionReconciler
		created   time.Time
	)

	// finishedEvent stores an event whose processing ends in the given phase: a known type
	// succeeds, one whose delivery is refused for good fails, an unknown type is ignored.
	// It waits until the event controllers are done with it.
	finishedEvent := func(name, receiver string, phase funnelv1.EventPhase) {
		GinkgoHelper()
		typ, data := "quote.created", `{}`
		switch phase {
		case funnelv1.PhaseFailed:
			typ = "quote.undeliverable"
			var sub funnelv1.FunnelSubscription
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "refused"}, &sub); apierrors.IsNotFound(err) {
				subscribeReady(ns, "refused", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{typ},
					Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: newSink(http.StatusBadRequest).URL}}})
			}
		case funnelv1.PhaseIgnored:
			typ = "quote.brand_new"
		}
		ev := &funnelv1.FunnelEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
				funnelv1.LabelReceiver: receiver, funnelv1.LabelEventType: typ,
			}},
			Spec: funnelv1.FunnelEventSpec{Receiver: receiver, Format: funnelv1.FormatClassic, Type: typ,
				ReceivedAt: metav1.NewMicroTime(time.Now()), Data: runtime.RawExtension{Raw: []byte(data)}},
		}
		Expect(k8s.Create(ctx, sealed(ev))).To(Succeed())
		if created.IsZero() || ev.CreationTimestamp.Before(&metav1.Time{Time: created}) {
			created = ev.CreationTimestamp.Time
		}
		Eventually(getEvent(ns, name)).Should(finished(phase))
	}
	remaining := func() []string {
		GinkgoHelper()
		var list funnelv1.FunnelEventList
		Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		names := []string{}
		for _, ev := range list.Items {
			names = append(names, ev.Name)
		}
		return names
	}
	receiverWith := func(name string, r funnelv1.Retention) {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true}, Retention: r},
		})).To(Succeed())
	}
	capCondition := func(name string) *metav1.Condition {
		GinkgoHelper()
		var rcv funnelv1.FunnelReceiver
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rcv)).To(Succeed())
		return meta.FindStatusCondition(rcv.Status.Conditions, funnelv1.ConditionMaxEventsReached)
	}
	deletedFor := func(name, reason string) float64 {
		GinkgoHelper()
		return metricValue("funnel_retention_deleted_total", map[string]string{"receiver": ns + "/" + name, "reason": reason})
	}
	pass := func(name string) time.Duration {
		GinkgoHelper()
		res, err := retention.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}})
		Expect(err).NotTo(HaveOccurred())
		return res.RequeueAfter
	}

	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "retention")
		Expect(err).NotTo(HaveOccurred())
		created = time.Time{}
		clock = clocktesting.NewFakeClock(time.Now())
		// The same reconciler the manager runs, with a clock the spec moves by hand. The
		// receivers are read straight from the API server: no waiting for a cache.
		retention = &controllers.RetentionReconciler{Client: k8s, APIReader: k8s, Clock: clock,
			Limiter: rate.NewLimiter(rate.Inf, 1), Recheck: 24 * time.Hour, Recorder: mgrRecorder}
	})

	It("deletes finished events past their phase's age, only its receiver's, and wakes up for the next expiry", func() {
		receiverWith("funnel", funnelv1.Retention{
			Succeeded: funnelv1.NewDuration(time.Hour), Failed: funnelv1.NewDuration(2 * time.Hour)})
		finishedEvent("succeeded", "funnel", funnelv1.PhaseSucceeded)
		finishedEvent("ignored", "funnel", funnelv1.PhaseIgnored)
		finishedEvent("failed", "funnel", funnelv1.PhaseFailed)
		finishedEvent("other-receiver", "other", funnelv1.PhaseSucceeded)

		clock.SetTime(created.Add(30 * time.Minute))
		Expect(pass("funnel")).To(BeNumerically("~", 30*time.Minute, 2*time.Second), "wake up when the first event expires")
		Expect(remaining()).To(ConsistOf("succeeded", "ignored", "failed", "other-receiver"))

		clock.SetTime(created.Add(90 * time.Minute))
		Expect(pass("funnel")).To(BeNumerically("~", 30*time.Minute, 2*time.Second), "wake up when the failed event expires")
		Expect(remaining()).To(ConsistOf("failed", "other-receiver"))

		clock.SetTime(created.Add(3 * time.Hour))
		Expect(pass("funnel")).To(Equal(24*time.Hour), "nothing left to expire: the recheck interval")
		Expect(remaining()).To(ConsistOf("other-receiver"))

		By("the age, not the cap, decided: the condition and the metric say so")
		Expect(capCondition("funnel")).To(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", funnelv1.ReasonWithinMaxEvents)))
		Expect(deletedFor("funnel", "age")).To(BeEquivalentTo(3))
		Expect(deletedFor("funnel", "max_events")).To(BeZero())
		Expect(metricValue("funnel_retention_finished_events", map[string]string{"receiver": ns + "/funnel"})).To(BeZero())
	})

	It("keeps at most maxEvents finished events, deleting the oldest first, and says the cap is trimming", func() {
		receiverWith("capped", funnelv1.Retention{MaxEvents: ptr(int32(2))})
		for _, name := range []string{"a", "b", "c", "d"} {
			finishedEvent(name, "capped", funnelv1.PhaseSucceeded)
		}
		clock.SetTime(created)
		Expect(pass("capped")).To(Equal(24*time.Hour), "maxEvents is rechecked every Recheck")
		// Creation times have a resolution of a second; the names, in creation order,
		// break ties, so the two created last remain.
		Expect(remaining()).To(ConsistOf("c", "d"))

		By("the receiver's condition, an Event and the metric say the cap is deciding")
		Expect(capCondition("capped")).To(And(HaveField("Status", metav1.ConditionTrue),
			HaveField("Reason", funnelv1.ReasonMaxEventsReached), HaveField("Message", ContainSubstring("maxEvents (2)"))))
		Eventually(kubeEvents(ns, "capped")).Should(ContainElement(And(
			HaveField("Type", "Warning"), HaveField("Reason", funnelv1.ReasonMaxEventsReached))))
		Expect(deletedFor("capped", "max_events")).To(BeEquivalentTo(2))
		Expect(deletedFor("capped", "age")).To(BeZero())
		Expect(metricValue("funnel_retention_finished_events", map[string]string{"receiver": ns + "/capped"})).To(BeEquivalentTo(2))

		By("back within the cap, the condition clears")
		pass("capped")
		Expect(capCondition("capped")).To(HaveField("Status", metav1.ConditionFalse))
		Expect(remaining()).To(ConsistOf("c", "d"))
	})

	It("deletes by age before counting against the cap", func() {
		receiverWith("both", funnelv1.Retention{Succeeded: funnelv1.NewDuration(time.Hour), MaxEvents: ptr(int32(2))})
		for _, name := range []string{"a", "b", "c"} {
			finishedEvent(name, "both", funnelv1.PhaseSucceeded)
		}
		clock.SetTime(created.Add(2 * time.Hour))
		pass("both")
		Expect(remaining()).To(BeEmpty())
		Expect(deletedFor("both", "age")).To(BeEquivalentTo(3))
		Expect(deletedFor("both", "max_events")).To(BeZero())
		Expect(capCondition("both")).To(HaveField("Status", metav1.ConditionFalse))
	})

	It("keeps any number with maxEvents 0", func() {
		receiverWith("unbounded", funnelv1.Retention{MaxEvents: ptr(int32(0))})
		for _, name := range []string{"a", "b", "c"} {
			finishedEvent(name, "unbounded", funnelv1.PhaseSucceeded)
		}
		clock.SetTime(created)
		pass("unbounded")
		Expect(remaining()).To(ConsistOf("a", "b", "c"))
		Expect(capCondition("unbounded")).To(HaveField("Status", metav1.ConditionFalse))
	})

	It("never deletes an event that is still being processed", func() {
		receiverWith("funnel", funnelv1.Retention{Succeeded: funnelv1.NewDuration(time.Hour),
			Failed: funnelv1.NewDuration(time.Hour), MaxEvents: ptr(int32(1))})
		// A delivery waiting an hour for its retry keeps this event Processing.
		down := newSink(http.StatusServiceUnavailable)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "down"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"quote.created"}, Filter: "has(event.data.stuck)",
				Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: down.URL}},
				Delivery: funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(time.Hour), MaxBackoff: funnelv1.NewDuration(time.Hour)}}})).To(Succeed())
		Eventually(subscriptionReady(ns, "down")).Should(HaveField("Reason", funnelv1.ReasonReady))
		Expect(k8s.Create(ctx, sealed(&funnelv1.FunnelEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "stuck", Labels: map[string]string{funnelv1.LabelEventType: "quote.created"}},
			Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatClassic, Type: "quote.created",
				ReceivedAt: metav1.NewMicroTime(time.Now()), Data: runtime.RawExtension{Raw: []byte(`{"stuck": true}`)}},
		}))).To(Succeed())
		Eventually(getEvent(ns, "stuck")).Should(HaveField("Status.Phase", funnelv1.PhaseProcessing))
		finishedEvent("done", "funnel", funnelv1.PhaseSucceeded)

		clock.SetTime(created.Add(24 * 365 * time.Hour))
		pass("funnel")
		Expect(remaining()).To(ConsistOf("stuck"))
		Expect(capCondition("funnel")).To(HaveField("Status", metav1.ConditionFalse), "unfinished events do not count")
	})

	It("keeps an event whose replay was asked for by annotation until the replay has run", func() {
		receiverWith("funnel", funnelv1.Retention{Succeeded: funnelv1.NewDuration(time.Hour)})
		finishedEvent("replayed", "funnel", funnelv1.PhaseSucceeded)
		finishedEvent("done", "funnel", funnelv1.PhaseSucceeded)

		By("holding the replay watcher back: a policy refuses the status writes of one event")
		refuseStatusWrites(ns, "replayed")
		By("asking for a replay with the annotation alone, as kubectl annotate or a GitOps tool would")
		ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "replayed"}}
		Expect(k8s.Patch(ctx, ev, client.RawPatch(types.MergePatchType, fmt.Appendf(nil,
			`{"metadata":{"annotations":{%q:"again"}}}`, funnelv1.AnnotationReplay)))).To(Succeed())

		clock.SetTime(created.Add(2 * time.Hour))
		Expect(pass("funnel")).To(BeNumerically("<=", 15*time.Second), "look again soon")
		Expect(remaining()).To(ConsistOf("replayed"), "the replay not started yet keeps its event")

		By("once the replay has run, the event is deleted like any other")
		allowStatusWrites()
		Eventually(getEvent(ns, "replayed")).Should(SatisfyAll(HaveField("Status.ObservedReplay", "again"),
			finished(funnelv1.PhaseSucceeded)))
		pass("funnel")
		Expect(remaining()).To(BeEmpty())
	})

	It("applies the default ages and cap to a receiver without retention settings", func() {
		receiverWith("defaults", funnelv1.Retention{})
		var rcv funnelv1.FunnelReceiver
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "defaults"}, &rcv)).To(Succeed())
		Expect(rcv.Spec.Retention.MaxEvents).To(HaveValue(Equal(funnelv1.DefaultMaxEvents)), "bounded by default")
		finishedEvent("week-old", "defaults", funnelv1.PhaseSucceeded)
		finishedEvent("failed-week-old", "defaults", funnelv1.PhaseFailed)
		clock.SetTime(created.Add(funnelv1.DefaultSucceededRetention + time.Minute))
		pass("defaults")
		Expect(remaining()).To(ConsistOf("failed-week-old"))
		clock.SetTime(created.Add(funnelv1.DefaultFailedRetention + time.Minute))
		pass("defaults")
		Expect(remaining()).To(BeEmpty())
	})
})

// statusWritePolicy names the admission policy refuseStatusWrites installs.
const statusWritePolicy = "funnel-spec-refuse-status-writes"

// refuseStatusWrites makes the API server refuse every status write of the event ns/name
// (a ValidatingAdmissionPolicy), until allowStatusWrites; it returns once in force.
func refuseStatusWrites(ns, name string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: statusWritePolicy},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{funnelv1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"funnelevents/status"}}}}}},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("object.metadata.namespace != %q || object.metadata.name != %q", ns, name),
				Message:    "status writes of this event are refused by the spec"}},
		},
	})).To(Succeed())
	Expect(k8s.Create(ctx, &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: statusWritePolicy},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: statusWritePolicy,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	})).To(Succeed())
	DeferCleanup(allowStatusWrites)
	probe := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Eventually(func() error {
		return k8s.Status().Patch(ctx, probe, client.RawPatch(types.MergePatchType, []byte(`{"status":{}}`)), client.DryRunAll)
	}).Should(MatchError(ContainSubstring("refused by the spec")), "the policy is in force")
}

// allowStatusWrites removes refuseStatusWrites' policy.
func allowStatusWrites() {
	GinkgoHelper()
	for _, obj := range []client.Object{&admissionv1.ValidatingAdmissionPolicyBinding{}, &admissionv1.ValidatingAdmissionPolicy{}} {
		obj.SetName(statusWritePolicy)
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed())
	}
}
