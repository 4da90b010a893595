package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/archive"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// archivedRow is what a spec reads back of one archived event.
type archivedRow struct {
	Namespace, Name, Receiver, Type, Phase, ResourceVersion string
	Labels                                                  map[string]string
	Spec                                                    funnelv1.FunnelEventSpec
	Status                                                  funnelv1.FunnelEventStatus
	Version                                                 int
}

var _ = Describe("Archive", func() {
	var (
		ns    string
		url   string
		store *archive.Store
		db    *pgxpool.Pool
	)

	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "archive")
		Expect(err).NotTo(HaveOccurred())
		url = newDatabase()
		store, err = archive.Open(ctx, url)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(store.Close)
		db, err = pgxpool.New(ctx, url) // a pool: it reconnects after an outage
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(db.Close)
	})

	// startArchiver runs an archiver of the spec's namespace, as a leader would, until the
	// returned stop is called (an operator restart is a stop and a new archiver).
	startArchiver := func() (stop func()) {
		actx, acancel := context.WithCancel(ctx)
		done := make(chan struct{})
		a := &archive.Archiver{Store: store, Client: k8s, Finished: funnelv1.FinishedEvents(), Namespaces: []string{ns},
			FlushInterval: 50 * time.Millisecond, Backoff: 100 * time.Millisecond}
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(a.Start(actx)).To(Succeed())
		}()
		stopped := false
		stop = func() {
			if !stopped {
				stopped = true
				acancel()
				<-done
			}
		}
		DeferCleanup(stop)
		return stop
	}

	// finish writes the status an event controller writes when an event reaches phase.
	finish := func(ev *funnelv1.FunnelEvent, phase funnelv1.EventPhase, replay string) {
		GinkgoHelper()
		now := metav1.Now()
		status := funnelv1.FunnelEventStatus{Phase: phase, Summary: "Application 74824: Submitted → Approved",
			ProcessedTime: &now, ObservedReplay: replay, Attempts: 1,
			Conditions: []metav1.Condition{{Type: funnelv1.ConditionReady, Status: metav1.ConditionTrue, Reason: funnelv1.ReasonProcessed,
				Message: "processed", LastTransitionTime: now}},
			Deliveries: []funnelv1.DeliveryStatus{{Subscription: "pms-sync", AttemptStatus: funnelv1.AttemptStatus{
				Phase: funnelv1.DeliverySucceeded, Attempts: 1, ResponseCode: 200, CompletionTime: &now}}}}
		if phase == funnelv1.PhaseFailed {
			status.Conditions[0] = metav1.Condition{Type: funnelv1.ConditionValidated, Status: metav1.ConditionFalse,
				Reason: funnelv1.ReasonInvalidPayload, Message: "data.lease_transaction_id: must be an integer, got string", LastTransitionTime: now}
		}
		patch, err := json.Marshal(map[string]any{"status": status})
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Status().Patch(ctx, ev, client.RawPatch(types.MergePatchType, patch))).To(Succeed())
	}
	// finishedEvent stores an event, as the receiver does, and finishes it in phase.
	finishedEvent := func(name string, phase funnelv1.EventPhase) *funnelv1.FunnelEvent {
		GinkgoHelper()
		typ := "lease_transaction.status_updated"
		ev := &funnelv1.FunnelEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
				funnelv1.LabelReceiver: "funnel", funnelv1.LabelEventType: funnel.LabelValue(typ),
				"funnel.leasing.dev/lease-transaction-id": "74824",
			}},
			Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, Type: typ, EventID: name,
				ReceivedAt: metav1.NewMicroTime(time.Now()),
				Data:       runtime.RawExtension{Raw: []byte(`{"lease_transaction_id": 9007199254740993, "current_status": "Approved"}`)}},
		}
		Expect(k8s.Create(ctx, ev)).To(Succeed())
		if phase != funnelv1.PhasePending {
			finish(ev, phase, "")
		}
		return ev
	}

	rows := func(g Gomega) map[string]archivedRow {
		out := map[string]archivedRow{}
		res, err := db.Query(ctx, `SELECT namespace, name, receiver, type, phase, resource_version, labels, spec, status, version
			FROM funnel_events WHERE namespace = $1`, ns)
		g.Expect(err).NotTo(HaveOccurred())
		defer res.Close()
		for res.Next() {
			var r archivedRow
			var spec, status []byte
			g.Expect(res.Scan(&r.Namespace, &r.Name, &r.Receiver, &r.Type, &r.Phase, &r.ResourceVersion, &r.Labels, &spec, &status, &r.Version)).To(Succeed())
			g.Expect(json.Unmarshal(spec, &r.Spec)).To(Succeed())
			g.Expect(json.Unmarshal(status, &r.Status)).To(Succeed())
			out[r.Name] = r
		}
		g.Expect(res.Err()).NotTo(HaveOccurred())
		return out
	}
	archivedNames := func(g Gomega) []string {
		var names []string
		for name := range rows(g) {
			names = append(names, name)
		}
		return names
	}
	current := func(name string) *funnelv1.FunnelEvent {
		GinkgoHelper()
		var ev funnelv1.FunnelEvent
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ev)).To(Succeed())
		return &ev
	}

	It("archives every finished event once: spec, final status, labels, receiver; and writes nothing to the API server", func() {
		startArchiver()
		finishedEvent("succeeded", funnelv1.PhaseSucceeded)
		finishedEvent("failed", funnelv1.PhaseFailed)
		finishedEvent("ignored", funnelv1.PhaseIgnored)
		finishedEvent("pending", funnelv1.PhasePending)
		processing := finishedEvent("processing", funnelv1.PhasePending)
		Expect(k8s.Status().Patch(ctx, processing, client.RawPatch(types.MergePatchType, []byte(`{"status":{"phase":"Processing"}}`)))).To(Succeed())

		Eventually(archivedNames).Should(ConsistOf("succeeded", "failed", "ignored"))
		got := rows(Default)
		for _, name := range []string{"succeeded", "failed", "ignored"} {
			ev := current(name)
			r := got[name]
			Expect(r.ResourceVersion).To(Equal(ev.ResourceVersion), "archived as it is now: nothing wrote to it since")
			Expect(r.Version).To(Equal(1))
			Expect(r.Receiver).To(Equal("funnel"))
			Expect(r.Phase).To(Equal(string(ev.Status.Phase)))
			Expect(r.Labels).To(Equal(ev.Labels))
			Expect(r.Spec.Type).To(Equal(ev.Spec.Type))
			Expect(r.Status.Conditions).To(HaveLen(len(ev.Status.Conditions)))
			Expect(r.Status.Deliveries).To(Equal(ev.Status.Deliveries))
			Expect(r.Status.Summary).To(Equal(ev.Status.Summary))
		}
		Expect(string(got["succeeded"].Spec.Data.Raw)).To(ContainSubstring("9007199254740993"), "integers survive exactly")
		Expect(got["failed"].Status.Conditions).To(ContainElement(HaveField("Reason", funnelv1.ReasonInvalidPayload)))
	})

	It("archives exactly once across restarts, catching up on what finished meanwhile", func() {
		stop := startArchiver()
		finishedEvent("before", funnelv1.PhaseSucceeded)
		Eventually(archivedNames).Should(ConsistOf("before"))
		stop()

		finishedEvent("while-down", funnelv1.PhaseSucceeded)
		startArchiver()
		Eventually(archivedNames).Should(ConsistOf("before", "while-down"))
		// The watch starts after the catch-up: once this one is archived, the new
		// archiver has seen everything.
		finishedEvent("after", funnelv1.PhaseFailed)
		Eventually(archivedNames).Should(ConsistOf("before", "while-down", "after"))
		for name, r := range rows(Default) {
			Expect(r.Version).To(Equal(1), "%s written once", name)
		}
	})

	It("waits out a database outage and loses nothing", func() {
		errorsBefore := counter("funnel_archive_errors_total")
		startArchiver()
		finishedEvent("before", funnelv1.PhaseSucceeded)
		Eventually(archivedNames).Should(ConsistOf("before"))

		Expect(pg.StopServer(ctx)).To(Succeed())
		restarted := false
		DeferCleanup(func() {
			if !restarted {
				Expect(pg.StartServer(ctx)).To(Succeed())
			}
		})
		for i := range 5 {
			finishedEvent(fmt.Sprintf("during-%d", i), funnelv1.PhaseSucceeded)
		}
		Eventually(func() float64 { return counter("funnel_archive_errors_total") }).Should(BeNumerically(">", errorsBefore))
		Expect(gauge("funnel_archive_up")).To(BeZero())

		Expect(pg.StartServer(ctx)).To(Succeed())
		restarted = true
		Eventually(archivedNames).Should(ConsistOf("before", "during-0", "during-1", "during-2", "during-3", "during-4"))
		for name, r := range rows(Default) {
			Expect(r.Version).To(Equal(1), "%s written once", name)
		}
		Expect(gauge("funnel_archive_up")).To(Equal(1.0))
	})

	It("updates the row of a replayed event and counts a version", func() {
		startArchiver()
		finishedEvent("replayed", funnelv1.PhaseSucceeded)
		Eventually(archivedNames).Should(ConsistOf("replayed"))

		ev := current("replayed")
		Expect(k8s.Patch(ctx, ev, client.RawPatch(types.MergePatchType, fmt.Appendf(nil,
			`{"metadata":{"annotations":{%q:"again"}}}`, funnelv1.AnnotationReplay)))).To(Succeed())
		Expect(k8s.Status().Patch(ctx, ev, client.RawPatch(types.MergePatchType, []byte(`{"status":{"phase":"Pending"}}`)))).To(Succeed())
		finish(ev, funnelv1.PhaseFailed, "again")
		// Every stored state of a finished event is archived (retention deletes only what
		// the archive holds in its current version), so the archiver may also catch the
		// moment between the replay annotation and the status going back to Pending: 2 or 3.
		Eventually(func(g Gomega) archivedRow { return rows(g)["replayed"] }).Should(And(
			HaveField("Status.ObservedReplay", "again"), HaveField("Phase", "Failed"),
			HaveField("Version", SatisfyAll(BeNumerically(">=", 2), BeNumerically("<=", 3))),
			HaveField("ResourceVersion", current("replayed").ResourceVersion)))
	})

	It("writes the same state of an event once, even from two archivers at once", func() {
		_, err := store.Migrate(ctx)
		Expect(err).NotTo(HaveOccurred())
		ev := finishedEvent("twice", funnelv1.PhaseSucceeded)
		ev = current(ev.Name)
		written, err := store.Write(ctx, []*funnelv1.FunnelEvent{ev})
		Expect(err).NotTo(HaveOccurred())
		Expect(written).To(Equal([]bool{true}))
		written, err = store.Write(ctx, []*funnelv1.FunnelEvent{ev})
		Expect(err).NotTo(HaveOccurred())
		Expect(written).To(Equal([]bool{false}), "a leader handing over may write what the last one wrote")
		Expect(rows(Default)["twice"].Version).To(Equal(1))
	})

	It("migrates the schema once, whoever starts first", func() {
		other, err := archive.Open(ctx, url)
		Expect(err).NotTo(HaveOccurred())
		defer other.Close()
		versions := make(chan int, 2)
		for _, s := range []*archive.Store{store, other} {
			go func() {
				defer GinkgoRecover()
				v, err := s.Migrate(ctx)
				Expect(err).NotTo(HaveOccurred())
				versions <- v
			}()
		}
		Expect([]int{<-versions, <-versions}).To(HaveEach(BeNumerically(">=", 1)))
		var applied int
		Expect(db.QueryRow(ctx, `SELECT count(*) FROM funnel_schema_migrations`).Scan(&applied)).To(Succeed())
		v, err := store.Migrate(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(v).To(Equal(applied), "each version recorded once; migrating again changes nothing")
	})

	It("refuses a connection string that does not parse without repeating it", func() {
		_, err := archive.Open(ctx, "postgres://user:s3cret@[::1")
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).NotTo(ContainSubstring("s3cret"))
	})

	Describe("with retention", func() {
		var (
			clock     *clocktesting.FakeClock
			retention *controllers.RetentionReconciler
		)
		BeforeEach(func() {
			Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
				Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true},
					Retention: funnelv1.Retention{Succeeded: funnelv1.NewDuration(time.Hour)}}})).To(Succeed())
			clock = clocktesting.NewFakeClock(time.Now().Add(2 * time.Hour))
			retention = &controllers.RetentionReconciler{Client: k8s, APIReader: k8s, Clock: clock,
				Limiter: rate.NewLimiter(rate.Inf, 1), Recheck: time.Hour, Archive: store}
		})
		pass := func() time.Duration {
			GinkgoHelper()
			res, err := retention.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "funnel"}})
			Expect(err).NotTo(HaveOccurred())
			return res.RequeueAfter
		}
		stored := func() []string {
			GinkgoHelper()
			var list funnelv1.FunnelEventList
			Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			var names []string
			for _, ev := range list.Items {
				names = append(names, ev.Name)
			}
			return names
		}

		It("deletes only events archived in their current version", func() {
			_, err := store.Migrate(ctx)
			Expect(err).NotTo(HaveOccurred())
			finishedEvent("expired", funnelv1.PhaseSucceeded)
			Expect(pass()).To(BeNumerically("<=", 30*time.Second), "look again soon: the archive is behind")
			Expect(stored()).To(ConsistOf("expired"), "not archived: kept")

			stop := startArchiver()
			Eventually(archivedNames).Should(ConsistOf("expired"))
			stop()
			By("a change after archiving (a duplicate counted) waits for the archive again")
			ev := current("expired")
			Expect(k8s.Status().Patch(ctx, ev, client.RawPatch(types.MergePatchType, []byte(`{"status":{"duplicates":1}}`)))).To(Succeed())
			pass()
			Expect(stored()).To(ConsistOf("expired"))

			startArchiver()
			Eventually(func(g Gomega) int64 { return rows(g)["expired"].Status.Duplicates }).Should(BeEquivalentTo(1))
			pass()
			Expect(stored()).To(BeEmpty())
			Expect(archivedNames(Default)).To(ConsistOf("expired"), "deleted from the cluster, kept in the archive")
		})

		It("deletes nothing while the database is down", func() {
			startArchiver()
			finishedEvent("expired", funnelv1.PhaseSucceeded)
			Eventually(archivedNames).Should(ConsistOf("expired"))
			Expect(pg.StopServer(ctx)).To(Succeed())
			defer func() { Expect(pg.StartServer(ctx)).To(Succeed()) }()
			_, err := retention.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "funnel"}})
			Expect(err).To(MatchError(ContainSubstring("archive")))
			Expect(stored()).To(ConsistOf("expired"))
		})
	})
})

// counter sums a counter's series from controller-runtime's registry.
func counter(name string) float64 {
	GinkgoHelper()
	var sum float64
	for _, m := range family(name) {
		sum += m.GetCounter().GetValue()
	}
	return sum
}

// gauge reads an unlabelled gauge.
func gauge(name string) float64 {
	GinkgoHelper()
	for _, m := range family(name) {
		return m.GetGauge().GetValue()
	}
	return 0
}

func family(name string) []*dto.Metric {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}
