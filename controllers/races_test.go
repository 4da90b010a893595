package controllers_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/time/rate"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// steppedReceiver names the receiver whose events the suite's manager leaves alone: a
// spec processes them itself with a stepper, one pass at a time, on a fake clock.
const steppedReceiver = "stepped"

// stepper is an event controller's pass and the delivery router behind it, run by a spec
// on a clock it moves by hand, reading through reader (the API server, or a stale view).
type stepper struct {
	clock  *clocktesting.FakeClock
	events *controllers.EventReconciler
}

func newStepper(reader client.Client) *stepper {
	GinkgoHelper()
	clk := clocktesting.NewFakeClock(time.Now())
	exec := delivery.NewExecutor(8, 8, clk)
	execCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = exec.Start(execCtx) }()
	DeferCleanup(func() { stop(); <-done })
	actAs, err := identity.New(cfg, testenv.Scheme(), k8s.RESTMapper(), "")
	Expect(err).NotTo(HaveOccurred())
	router := &delivery.Router{Client: reader, APIReader: k8s, Identity: actAs, Scheme: testenv.Scheme(), Executor: exec, Clock: clk,
		HTTP:     delivery.NewHTTPClient(delivery.NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)),
		Recorder: mgrRecorder, Stats: delivery.NewStats(k8s, k8s, time.Hour)}
	// The manager's seal key, so that the receiver's events are delivered.
	sealer, err := receiver.LoadSealer(ctx, k8s, k8s, sealKeySecret, time.Now())
	Expect(err).NotTo(HaveOccurred())
	return &stepper{clock: clk, events: &controllers.EventReconciler{Client: reader, Family: funnel.FamilyLease,
		Dispatcher: router, Recorder: mgrRecorder, Clock: clk, Sealer: sealer}}
}

// pass runs one processing pass over the event.
func (s *stepper) pass(ns, name string) error {
	_, err := s.events.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}})
	return err
}

// passUntil runs passes until the event matches (attempts hand their HTTP calls over and
// return; a later pass records the outcome).
func (s *stepper) passUntil(ns, name string, m OmegaMatcher) {
	GinkgoHelper()
	Eventually(func(g Gomega) funnelv1.FunnelEvent {
		g.Expect(s.pass(ns, name)).To(Succeed())
		return getEvent(ns, name)(g)
	}).Should(m)
}

// intercepted is a direct client to the API server whose calls funcs may take over.
func intercepted(funcs interceptor.Funcs) client.Client {
	GinkgoHelper()
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return interceptor.NewClient(c, funcs)
}

// jobsOf lists the Jobs of a namespace.
func jobsOf(ns string) func(Gomega) []batchv1.Job {
	return func(g Gomega) []batchv1.Job {
		var jobs batchv1.JobList
		g.Expect(k8s.List(ctx, &jobs, client.InNamespace(ns))).To(Succeed())
		return jobs.Items
	}
}

// finishJob sets the outcome of a Job as the Job controller would (none runs in envtest):
// Complete, or Failed with reason.
func finishJob(ns, name string, failReason string) {
	GinkgoHelper()
	var job batchv1.Job
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &job)).To(Succeed())
	now := metav1.Now()
	job.Status.StartTime = &now
	if failReason == "" {
		job.Status.CompletionTime, job.Status.Succeeded = &now, 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}}
	} else {
		job.Status.Failed = 1
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: failReason, Message: "the Job failed", LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: failReason, Message: "the Job failed", LastTransitionTime: now}}
	}
	Expect(k8s.Status().Update(ctx, &job)).To(Succeed())
}

// runningJob waits until the event's delivery runs a Job, and returns its name.
func runningJob(ns, event string) string {
	GinkgoHelper()
	Eventually(getEvent(ns, event)).Should(HaveField("Status.Deliveries", ContainElement(SatisfyAll(
		HaveField("Phase", funnelv1.DeliveryRunning), HaveField("Job", Not(BeEmpty()))))))
	return getEvent(ns, event)(Default).Status.Deliveries[0].Job
}

// jobsRules lets a ServiceAccount create and delete Jobs.
var jobsRules = []rbacv1.PolicyRule{{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "delete"}}}

// The races of issue "Correct under races", each driven deterministically: the retention
// pass stepped between its list and its delete, Jobs completed or deleted by the spec, a
// fake clock, a second writer working from an old copy.
var _ = Describe("Correct under races", func() {
	// The events these specs send, named as the receiver acknowledged them.
	var moveIn, approved string

	subscribe := func(ns, name string, spec funnelv1.FunnelSubscriptionSpec) {
		GinkgoHelper()
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec})).To(Succeed())
		Eventually(subscriptionReady(ns, name)).Should(HaveField("Reason", funnelv1.ReasonReady))
	}
	send := func(path, file string) string {
		GinkgoHelper()
		a := post(webhookURL, path, example(file), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)
		return a.event()
	}

	It("does not delete an event replayed between retention's list and its delete", func() {
		ns, path := openReceiverNamespace("race-retention")
		Expect(k8s.Patch(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"}},
			client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"retention":{"succeeded":"1h"}}}`)))).To(Succeed())
		// Delivered once; the replay's delivery then waits an hour for its retry.
		target := newSink(http.StatusOK, http.StatusServiceUnavailable)
		subscribe(ns, "pms", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(time.Hour),
				MaxBackoff: funnelv1.NewDuration(time.Hour)}})
		approved = send(path, "classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseSucceeded))

		// Between the pass's list (the event expired, finished) and its delete, the event
		// is replayed and its delivery is under way again.
		replayed := false
		stepped := intercepted(interceptor.Funcs{
			Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if obj.GetName() == approved && !replayed {
					replayed = true
					replay(ns, approved, "after-listing")
					Eventually(getEvent(ns, approved)).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseProcessing),
						HaveField("Status.Deliveries", ConsistOf(HaveField("NextAttemptTime", Not(BeNil()))))))
				}
				return c.Delete(ctx, obj, opts...)
			},
		})
		clock := clocktesting.NewFakeClock(time.Now().Add(2 * time.Hour))
		retention := &controllers.RetentionReconciler{Client: stepped, APIReader: k8s, Clock: clock,
			Limiter: rate.NewLimiter(rate.Inf, 1), Recheck: time.Hour, Recorder: mgrRecorder}
		_, err := retention.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "funnel"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(replayed).To(BeTrue(), "the pass listed the event as expired")

		Expect(getEvent(ns, approved)(Default)).To(HaveField("Status.Phase", funnelv1.PhaseProcessing),
			"the replayed event is kept, its delivery waiting for its retry")
	})

	It("records a Job that completed in time as succeeded, though the pass sees it only after the delivery timeout", func() {
		ns, path := openReceiverNamespaceNamed("race-job-late", steppedReceiver)
		serviceAccount(ns, actionsAccount, jobsRules...)
		subscribe(ns, "move-in", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: actionsAccount,
			Action: jobAction(), Delivery: funnelv1.DeliveryPolicy{Timeout: funnelv1.NewDuration(time.Hour)}})
		moveIn = send(path, "v3-lease.move_in.json")
		s := newStepper(k8s)
		s.passUntil(ns, moveIn, HaveField("Status.Deliveries", ConsistOf(HaveField("Phase", funnelv1.DeliveryRunning))))
		finishJob(ns, runningJob(ns, moveIn), "")

		By("the operator looks again only after the timeout (a failover, a backlog)")
		s.clock.Step(2 * time.Hour)
		Expect(s.pass(ns, moveIn)).To(Succeed())
		Expect(getEvent(ns, moveIn)(Default)).To(SatisfyAll(finished(funnelv1.PhaseSucceeded),
			HaveField("Status.Deliveries", ConsistOf(HaveField("Phase", funnelv1.DeliverySucceeded)))))
	})

	It("stops a Job still running at the delivery timeout before failing the delivery", func() {
		ns, path := openReceiverNamespaceNamed("race-job-timeout", steppedReceiver)
		serviceAccount(ns, actionsAccount, jobsRules...)
		subscribe(ns, "move-in", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: actionsAccount,
			Action: jobAction(), Delivery: funnelv1.DeliveryPolicy{Timeout: funnelv1.NewDuration(time.Hour)}})
		moveIn = send(path, "v3-lease.move_in.json")
		s := newStepper(k8s)
		s.passUntil(ns, moveIn, HaveField("Status.Deliveries", ConsistOf(HaveField("Phase", funnelv1.DeliveryRunning))))
		job := runningJob(ns, moveIn)

		s.clock.Step(2 * time.Hour)
		Expect(s.pass(ns, moveIn)).To(Succeed())
		Expect(getEvent(ns, moveIn)(Default)).To(SatisfyAll(finished(funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliveryFailed),
				HaveField("LastError", ContainSubstring("timeout")))))))
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: job}, &batchv1.Job{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Job was stopped (deleted): %v", err)
	})

	It("finishes a dead letter waiting to retry when the subscription's deadLetter is removed", func() {
		ns, path := openReceiverNamespace("race-dead-letter")
		target := newSink(http.StatusBadRequest)
		dlq := newSink(http.StatusServiceUnavailable)
		subscribe(ns, "strict", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{BackoffDelay: funnelv1.NewDuration(3 * time.Second),
				DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: dlq.URL}}}})
		approved = send(path, "classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(HaveField("Status.Deliveries", ConsistOf(HaveField("DeadLetter",
			SatisfyAll(Not(BeNil()), HaveField("Phase", funnelv1.DeliveryPending), HaveField("NextAttemptTime", Not(BeNil())))))))

		Expect(k8s.Patch(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "strict"}},
			client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"delivery":{"deadLetter":null}}}`)))).To(Succeed())
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(finished(funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(HaveField("DeadLetter", SatisfyAll(
				HaveField("Phase", funnelv1.DeliveryFailed), HaveField("LastError", ContainSubstring("removed"))))))))
		Expect(dlq.got()).To(HaveLen(1))
	})

	It("reports a Job deleted before its outcome was recorded, and never runs it again", func() {
		ns, path := openReceiverNamespace("race-job-gone")
		serviceAccount(ns, actionsAccount, actionRules...)
		subscribe(ns, "move-in", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: actionsAccount,
			Action: jobAction()})
		moveIn = send(path, "v3-lease.move_in.json")
		job := runningJob(ns, moveIn)

		By("a person (or ttlSecondsAfterFinished) deletes the Job")
		Expect(k8s.Delete(ctx, &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: job}},
			client.PropagationPolicy(metav1.DeletePropagationBackground))).To(Succeed())
		Eventually(getEvent(ns, moveIn)).Should(SatisfyAll(finished(funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("Phase", funnelv1.DeliveryFailed),
				HaveField("LastError", ContainSubstring("deleted before its outcome was recorded")))))))
		Expect(jobsOf(ns)(Default)).To(BeEmpty(), "the Job is not created again")
		Eventually(kubeEvents(ns, moveIn)).Should(ContainElement(HaveField("Reason", funnelv1.ReasonDeliveryFailed)))
	})

	It("does not let a writer working from an older copy overwrite a newer status", func() {
		ns, path := openReceiverNamespaceNamed("race-stale", steppedReceiver)
		target := newSink(http.StatusBadGateway)
		dlq := newSink(http.StatusAccepted)
		subscribe(ns, "pms", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{Retries: ptr(int32(0)), DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: dlq.URL}}}})
		approved = send(path, "classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(HaveField("Status.Phase", funnelv1.PhasePending))
		old := getEvent(ns, approved)(Default)

		By("one writer processes the event to its end")
		newStepper(k8s).passUntil(ns, approved, SatisfyAll(finished(funnelv1.PhaseFailed),
			HaveField("Status.Deliveries", ConsistOf(HaveField("DeadLetter.Phase", funnelv1.DeliverySucceeded)))))
		done := getEvent(ns, approved)(Default)

		By("another (a former leader, or a pass whose write's answer was lost) still reads the copy before that")
		var writes atomic.Int32
		stale := intercepted(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if ev, ok := obj.(*funnelv1.FunnelEvent); ok && key.Name == approved {
					old.DeepCopyInto(ev)
					return nil
				}
				return c.Get(ctx, key, obj, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				writes.Add(1)
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		})
		other := newStepper(stale)
		Eventually(func(g Gomega) int32 {
			g.Expect(other.pass(ns, approved)).To(Succeed())
			return writes.Load()
		}).Should(BeNumerically(">", 0), "the other writer came to write")
		Expect(getEvent(ns, approved)(Default).Status).To(Equal(done.Status), "its write, from the older copy, was refused")
	})

	It("records an outcome whose first write was refused without calling the target again, and counts it once", func() {
		ns, path := openReceiverNamespaceNamed("race-conflict", steppedReceiver)
		target := newSink(http.StatusOK)
		subscribe(ns, "pms", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
			Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}})
		approved = send(path, "classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(HaveField("Status.Phase", funnelv1.PhasePending))

		var refused atomic.Bool
		s := newStepper(intercepted(interceptor.Funcs{
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if refused.CompareAndSwap(false, true) {
					return apierrors.NewConflict(funnelv1.GroupVersion.WithResource("funnelevents").GroupResource(), obj.GetName(),
						errors.New("the receiver counted a duplicate meanwhile"))
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}))
		s.passUntil(ns, approved, finished(funnelv1.PhaseSucceeded))
		Expect(refused.Load()).To(BeTrue())
		Expect(target.got()).To(HaveLen(1), "the outcome the refused write carried was recorded by the next pass, not made again")
		Expect(metricValue("funnel_deliveries_total", map[string]string{"subscription": ns + "/pms", "result": "succeeded"})).To(BeEquivalentTo(1))
	})

	It("gives an event matching a subscription not Ready for a passing reason a delivery that waits, and delivers once it is Ready", func() {
		ns, path := openReceiverNamespace("race-not-ready")
		serviceAccount(ns, actionsAccount, actionRules...)
		target := newSink(http.StatusOK)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount,
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL, HeadersFrom: []funnelv1.HTTPHeaderFromSecret{
					{Name: "Authorization", SecretRef: funnelv1.SecretKeyRef{Name: "pms-key", Key: "key"}}}}}}})).To(Succeed())
		Eventually(subscriptionReady(ns, "pms")).Should(HaveField("Reason", funnelv1.ReasonSecretNotFound))

		approved = send(path, "classic-lease_transaction.status_updated.json")
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(HaveField("Status.Phase", funnelv1.PhaseProcessing),
			HaveField("Status.Deliveries", ConsistOf(SatisfyAll(HaveField("Subscription", "pms"),
				HaveField("Phase", funnelv1.DeliveryPending), HaveField("Attempts", int32(0)),
				HaveField("Reason", funnelv1.WaitSubscriptionNotReady),
				HaveField("Message", ContainSubstring(`Secret "pms-key" does not exist`)))))))
		Consistently(getEvent(ns, approved), "1s").Should(HaveField("Status.Deliveries", ConsistOf(HaveField("Attempts", int32(0)))),
			"no attempt is spent while the subscription is not Ready")

		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms-key"},
			Data: map[string][]byte{"key": []byte("Bearer k")}})).To(Succeed())
		Eventually(getEvent(ns, approved)).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
			HaveField("Status.Deliveries", ConsistOf(HaveField("Attempts", int32(1))))))
		Expect(target.got()).To(HaveLen(1))
		Expect(target.got()[0].header.Get("Authorization")).To(Equal("Bearer k"))
	})

	It("runs a Job again on every replay, a reused replay value too", func() {
		ns, path := openReceiverNamespace("race-replay-job")
		serviceAccount(ns, actionsAccount, actionRules...)
		subscribe(ns, "move-in", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: actionsAccount,
			Action: jobAction()})
		moveIn = send(path, "v3-lease.move_in.json")
		names := map[string]bool{}
		for i, value := range []string{"", "a", "b", "a"} {
			if value != "" {
				replay(ns, moveIn, value)
				Eventually(getEvent(ns, moveIn)).Should(HaveField("Status.ObservedReplay", value))
			}
			job := runningJob(ns, moveIn)
			Expect(names).NotTo(HaveKey(job), "replay %d (%q) ran Job %s again instead of a new one", i, value, job)
			names[job] = true
			finishJob(ns, job, "")
			Eventually(getEvent(ns, moveIn)).Should(finished(funnelv1.PhaseSucceeded))
		}
		Expect(jobsOf(ns)(Default)).To(HaveLen(4))
	})
})
