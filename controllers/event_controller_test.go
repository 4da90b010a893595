package controllers_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// processedBy is how many passes the named family controller has completed, from the
// funnel_event_processing_duration_seconds histogram: the proof of which controller ran.
func processedBy(family string) uint64 {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var n uint64
	for _, f := range families {
		if f.GetName() != "funnel_event_processing_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "family" && l.GetValue() == family {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

// getEvent reads an event from the API server (finished events are not cached).
func getEvent(ns, name string) func(Gomega) funnelv1.FunnelEvent {
	return func(g Gomega) funnelv1.FunnelEvent {
		var ev funnelv1.FunnelEvent
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ev)).To(Succeed())
		return ev
	}
}

// finished matches an event whose processing ended in phase.
func finished(phase funnelv1.EventPhase) OmegaMatcher {
	return SatisfyAll(
		HaveField("Status.Phase", phase),
		HaveField("Status.ProcessedTime", Not(BeNil())),
	)
}

// replay asks for an event to be processed again, as kubectl funnel replay does: a new
// replay value, and the phase back to Pending so the event re-enters the cache.
func replay(ns, name, value string) {
	GinkgoHelper()
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Expect(k8s.Patch(ctx, ev, client.RawPatch(types.MergePatchType, fmt.Appendf(nil,
		`{"metadata":{"annotations":{%q:%q}}}`, funnelv1.AnnotationReplay, value)))).To(Succeed())
	Expect(k8s.Status().Patch(ctx, ev, client.RawPatch(types.MergePatchType,
		[]byte(`{"status":{"phase":"Pending"}}`)))).To(Succeed())
}

// kubeEvents lists the Kubernetes Events about one object.
func kubeEvents(ns, name string) func(Gomega) []eventsv1.Event {
	return func(g Gomega) []eventsv1.Event {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Name == name {
				out = append(out, e)
			}
		}
		return out
	}
}

// sealed seals ev with the operator's seal key, as the receiver does: the
// controllers deliver only sealed events.
func sealed(ev *funnelv1.FunnelEvent) *funnelv1.FunnelEvent {
	GinkgoHelper()
	Expect(testenv.Seal(ctx, k8s, sealKeySecret.Namespace, ev)).To(Succeed())
	return ev
}

// createEvent stores an event directly, as the receiver would, with its labels.
func createEvent(ns, name, eventType, data string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, sealed(&funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			funnelv1.LabelReceiver: "funnel", funnelv1.LabelEventType: funnel.LabelValue(eventType), funnelv1.LabelFormat: "V3",
		}},
		Spec: funnelv1.FunnelEventSpec{
			Receiver: "funnel", Format: funnelv1.FormatV3, Type: eventType, EventID: name,
			ReceivedAt: metav1.NewMicroTime(time.Now()), Data: runtime.RawExtension{Raw: []byte(data)},
		},
	}))).To(Succeed())
}

var _ = Describe("Event processing", func() {
	var ns, path string
	BeforeEach(func() { ns, path = openReceiverNamespace("events") })

	It("processes every documented type with its family's controller, to Succeeded with a summary", func() {
		gen := synth.New(rand.New(rand.NewPCG(1, 2)))
		for _, t := range synth.Types() {
			family := string(funnel.FamilyOf(t))
			before := processedBy(family)
			body, err := gen.Event(t, "")
			Expect(err).NotTo(HaveOccurred())
			a := post(webhookURL, path, body, nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			name := a.event()

			Eventually(getEvent(ns, name)).Should(SatisfyAll(
				finished(funnelv1.PhaseSucceeded),
				HaveField("Status.Summary", Not(BeEmpty())),
			), "event type %s", t)
			ev := getEvent(ns, name)(Default)
			for _, c := range []string{funnelv1.ConditionValidated, funnelv1.ConditionDelivered, funnelv1.ConditionReady} {
				cond := meta.FindStatusCondition(ev.Status.Conditions, c)
				Expect(cond).NotTo(BeNil(), "%s: condition %s", t, c)
				Expect(cond.Status).To(Equal(metav1.ConditionTrue), "%s: condition %s", t, c)
				Expect(cond.ObservedGeneration).To(Equal(ev.Generation))
			}
			// The duration is observed once the pass's status write returned, a moment after
			// the status is visible.
			Eventually(func() uint64 { return processedBy(family) }).Should(BeNumerically(">", before),
				"%s was not processed by the %s controller", t, family)
		}
	})

	It("summarises the documented example exactly", func() {
		Expect(post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil).code).To(Equal(http.StatusOK))
		Eventually(getEvent(ns, exampleName("classic-lease_transaction.status_updated.json"))).Should(SatisfyAll(
			finished(funnelv1.PhaseSucceeded),
			HaveField("Status.Summary", "Application 74824: Submitted → Approved"),
		))
	})

	It("ignores a valid event of an unknown type, in the fallback controller", func() {
		before := processedBy("unknown")
		createEvent(ns, "evt-unknown", "lease_transaction.brand_new", `{"lease_transaction_id": 5}`)
		Eventually(getEvent(ns, "evt-unknown")).Should(SatisfyAll(
			finished(funnelv1.PhaseIgnored),
			HaveField("Status.Conditions", ContainElement(SatisfyAll(
				HaveField("Type", funnelv1.ConditionReady), HaveField("Reason", funnelv1.ReasonNotHandled)))),
		))
		Eventually(func() uint64 { return processedBy("unknown") }).Should(BeNumerically(">", before))
	})

	Describe("validation informs, it does not block", func() {
		var all, strict *sink
		BeforeEach(func() {
			all, strict = newSink(http.StatusOK), newSink(http.StatusOK)
			subscribeReady(ns, "all", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: all.URL}}})
			subscribeReady(ns, "strict", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, RequireValidData: true,
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: strict.URL}}})
		})
		delivered := func(subs ...string) OmegaMatcher {
			var each []any
			for _, s := range subs {
				each = append(each, SatisfyAll(HaveField("Subscription", s), HaveField("Phase", funnelv1.DeliverySucceeded)))
			}
			return SatisfyAll(finished(funnelv1.PhaseSucceeded), HaveField("Status.Deliveries", ConsistOf(each...)))
		}
		validated := func(status metav1.ConditionStatus, reason, field string) OmegaMatcher {
			return HaveField("Status.Conditions", ContainElement(SatisfyAll(HaveField("Type", funnelv1.ConditionValidated),
				HaveField("Status", status), HaveField("Reason", reason), HaveField("Message", ContainSubstring(field)))))
		}

		It("delivers data missing a documented required field, says what is wrong once, and skips subscriptions that want valid data", func() {
			// lease_transaction.unit_reserved documents unit_id as a required integer.
			a := post(webhookURL, path, []byte(`{"id":"6f1d0a52-3b7e-4c1e-9a5e-2d9f4c8b7a61","event":"lease_transaction.unit_reserved",`+
				`"timestamp":"2024-10-09T13:49:31Z","data":{"lease_transaction_id":74824,"lease_transaction_type":"Application","client_id":1,"community_id":2}}`), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Eventually(getEvent(ns, a.event())).Should(SatisfyAll(delivered("all"),
				validated(metav1.ConditionFalse, funnelv1.ReasonInvalidPayload, "data.unit_id: required integer is missing")))
			Expect(strict.got()).To(BeEmpty())
			Eventually(kubeEvents(ns, a.event())).Should(ContainElement(SatisfyAll(
				HaveField("Type", "Warning"), HaveField("Reason", funnelv1.ReasonInvalidPayload), HaveField("Note", ContainSubstring("data.unit_id")))))
			Consistently(func() int {
				n := 0
				for _, e := range kubeEvents(ns, a.event())(Default) {
					if e.Reason == funnelv1.ReasonInvalidPayload {
						n++
					}
				}
				return n
			}, "2s").Should(Equal(1), "one Warning Event, however often the event is looked at")
		})

		It("delivers undocumented shapes everywhere, noted in the Validated condition", func() {
			// The docs list five appointment statuses, yet the event also fires when a tour is created.
			a := post(webhookURL, path, []byte(`{"event":"appointment.updated","data":{"funnel_renter_id":456,"funnel_tour_id":"879",`+
				`"status":"scheduled","end":""}}`), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Eventually(getEvent(ns, a.event())).Should(SatisfyAll(delivered("all", "strict"),
				validated(metav1.ConditionTrue, funnelv1.ReasonUndocumentedShape, `data.status: "scheduled" is not one of the documented values`),
				validated(metav1.ConditionTrue, funnelv1.ReasonUndocumentedShape, "data.funnel_tour_id: is a numeric string"),
				HaveField("Status.Summary", "Tour 879 for renter 456: scheduled")))
		})

		It("counts what was wrong with the envelope: a Classic event without its documented timestamp is invalid, and still delivered", func() {
			a := post(webhookURL, path, []byte(`{"id":71,"event_type":"lease_transaction.status_updated","event_timestamp":null,`+
				`"event_data":{"lease_transaction_id":1,"current_status":"Approved"}}`), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Eventually(getEvent(ns, a.event())).Should(SatisfyAll(delivered("all"),
				validated(metav1.ConditionFalse, funnelv1.ReasonInvalidPayload, "event_timestamp: is null")))
			Expect(strict.got()).To(BeEmpty())
		})

		It("matches event types in any letter case: handler, family controller and subscription patterns", func() {
			before := processedBy("prospect")
			a := post(webhookURL, path, []byte(`{"event":"Renter.Status-Change","data":{"funnel_renter_id":456678,"status":"Applicant"}}`), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Eventually(getEvent(ns, a.event())).Should(SatisfyAll(delivered("all", "strict"),
				HaveField("Status.Summary", "Renter 456678 is now Applicant"),
				HaveField("ObjectMeta.Labels", HaveKeyWithValue(funnelv1.LabelEventType, "renter.status-change"))))
			Expect(processedBy("prospect")).To(BeNumerically(">", before))
		})
	})

	It("delivers only what the receiver created: not an event without its seal, nor with another's, nor a late copy", func() {
		target := newSink(http.StatusOK)
		subscribeReady(ns, "all", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}})
		// Numbers the API server rewrites (2.5e5 → 250000, past 64 bits rounded): the seal still holds.
		a := post(webhookURL, path, []byte(`{"id":"3b0c7ad4-8f0e-4c55-9a57-2a1f3b9e6d10","event":"lease.move_in",`+
			`"timestamp":"2024-10-09T13:49:31Z","data":{"lease_id":1,"amount":2.5e5,"big":18446744073709551615}}`), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)
		Eventually(getEvent(ns, a.event())).Should(finished(funnelv1.PhaseSucceeded))
		genuine := getEvent(ns, a.event())(Default)
		Expect(target.got()).To(HaveLen(1))

		unsealed := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evt-unsealed", Labels: genuine.Labels}, Spec: genuine.Spec}
		Expect(k8s.Create(ctx, unsealed)).To(Succeed())
		copied := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evt-copied", Labels: genuine.Labels,
			Annotations: genuine.Annotations}, Spec: genuine.Spec}
		Expect(k8s.Create(ctx, copied)).To(Succeed())
		// Sealed right, but received an hour before it is created: an old event created again.
		late := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evt-late", Labels: genuine.Labels},
			Spec: *genuine.Spec.DeepCopy()}
		late.Spec.ReceivedAt = metav1.NewMicroTime(time.Now().Add(-time.Hour))
		Expect(k8s.Create(ctx, sealed(late))).To(Succeed())

		for name, why := range map[string]string{"evt-unsealed": "it has no seal", "evt-copied": "its seal does not match",
			"evt-late": "a copy of an event received before"} {
			Eventually(getEvent(ns, name)).Should(SatisfyAll(finished(funnelv1.PhaseFailed), HaveField("Status.Deliveries", BeEmpty()),
				HaveField("Status.Conditions", ContainElement(SatisfyAll(HaveField("Type", funnelv1.ConditionReady),
					HaveField("Status", metav1.ConditionFalse), HaveField("Reason", funnelv1.ReasonNotReceived),
					HaveField("Message", ContainSubstring(why)))))), name)
			Eventually(kubeEvents(ns, name)).Should(ContainElement(SatisfyAll(HaveField("Type", "Warning"),
				HaveField("Reason", funnelv1.ReasonNotReceived))), name)
		}
		By("a replay of the genuine event is delivered again; of another, still not")
		replay(ns, genuine.Name, "again")
		replay(ns, "evt-unsealed", "again")
		Eventually(target.got).Should(HaveLen(2))
		Eventually(getEvent(ns, "evt-unsealed")).Should(SatisfyAll(HaveField("Status.ObservedReplay", "again"), finished(funnelv1.PhaseFailed)))
		Consistently(target.got, "1s").Should(HaveLen(2))
	})

	It("takes finished events out of the controllers' cache, and keeps unfinished ones in it", func() {
		Expect(post(webhookURL, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusOK))
		name := exampleName("v3-lease.move_in.json")
		Eventually(getEvent(ns, name)).Should(finished(funnelv1.PhaseSucceeded))
		Eventually(func() error {
			return mgrCache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &funnelv1.FunnelEvent{})
		}).Should(Satisfy(apierrors.IsNotFound))

		var cached funnelv1.FunnelEventList
		Expect(mgrCache.List(ctx, &cached, client.InNamespace(ns))).To(Succeed())
		Expect(cached.Items).To(BeEmpty())
	})

	It("replays an event when the replay annotation changes, and records the previous outcome", func() {
		createEvent(ns, "evt-replay", "lease_transaction.status_updated",
			`{"lease_transaction_id": 1, "lease_transaction_type": "Application", "current_status": "Approved", "previous_status": "Submitted"}`)
		Eventually(getEvent(ns, "evt-replay")).Should(finished(funnelv1.PhaseSucceeded))
		replay(ns, "evt-replay", "r1")

		Eventually(getEvent(ns, "evt-replay")).Should(SatisfyAll(
			finished(funnelv1.PhaseSucceeded),
			HaveField("Status.ObservedReplay", "r1"),
			HaveField("Status.Summary", "Application 1: Submitted → Approved"),
		))
		Eventually(kubeEvents(ns, "evt-replay")).Should(ContainElement(SatisfyAll(
			HaveField("Type", "Normal"), HaveField("Reason", funnelv1.ReasonReplayed),
			HaveField("Note", ContainSubstring("previously Succeeded")))))
	})

	It("replays a finished event when only the annotation changes, as kubectl annotate does", func() {
		createEvent(ns, "evt-annotate", "renter.status-change", `{"funnel_renter_id": 9, "funnel_team_id": 8, "status": "Applicant"}`)
		Eventually(getEvent(ns, "evt-annotate")).Should(finished(funnelv1.PhaseSucceeded))
		annotate := func(value string) {
			GinkgoHelper()
			Expect(k8s.Patch(ctx, &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evt-annotate"}},
				client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, funnelv1.AnnotationReplay, value)))).To(Succeed())
		}
		// Twice: the watch of finished events sees the first change, and the second after
		// the event finished again.
		for _, value := range []string{"a1", "a2"} {
			annotate(value)
			Eventually(getEvent(ns, "evt-annotate")).Should(SatisfyAll(
				finished(funnelv1.PhaseSucceeded), HaveField("Status.ObservedReplay", value)))
		}
		Eventually(kubeEvents(ns, "evt-annotate")).Should(HaveLen(2))
		for _, e := range kubeEvents(ns, "evt-annotate")(Default) {
			Expect(e.Reason).To(Equal(funnelv1.ReasonReplayed))
		}
	})

	It("re-evaluates an event whose phase was reset without a new replay value, without a Replayed Event", func() {
		createEvent(ns, "evt-reset", "renter.status-change", `{"funnel_renter_id": 7, "funnel_team_id": 8, "status": "Applicant"}`)
		Eventually(getEvent(ns, "evt-reset")).Should(finished(funnelv1.PhaseSucceeded))
		first := getEvent(ns, "evt-reset")(Default)
		Expect(k8s.Status().Patch(ctx, &first, client.RawPatch(types.MergePatchType, []byte(`{"status":{"phase":"Pending"}}`)))).To(Succeed())
		Eventually(getEvent(ns, "evt-reset")).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
			HaveField("Status.ProcessedTime", Equal(first.Status.ProcessedTime)),
			HaveField("Status.Summary", first.Status.Summary)))
		Expect(kubeEvents(ns, "evt-reset")(Default)).To(BeEmpty())
	})
})
