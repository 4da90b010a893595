package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// The operator runs as its ServiceAccount (a token of it), with exactly the RBAC that
// config/rbac installs, and the whole flow must work: receive, process, deliver, run a
// Job as the subscription's ServiceAccount, record Events, count, elect a leader, apply
// retention.
var _ = Describe("The operator with the RBAC of config/rbac", Ordered, func() {
	var (
		webhookURL string
		sinkHits   atomic.Int32
		sinkURL    string
		ns         = "shop"
	)

	BeforeAll(func() {
		// A token of the ServiceAccount, not impersonation by the admin: the operator
		// impersonates its subscriptions' accounts, and that must be its own permission.
		token, err := testenv.OperatorToken(ctx, env)
		Expect(err).NotTo(HaveOccurred())

		sink := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			sinkHits.Add(1)
		})}
		sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		go func() { _ = sink.Serve(sinkLn) }()
		DeferCleanup(sink.Close)
		sinkURL = "http://" + sinkLn.Addr().String()

		asOperator := rest.AnonymousClientConfig(cfg)
		asOperator.BearerToken = token
		mgr, err := ctrl.NewManager(asOperator, ctrl.Options{
			Scheme:                  testenv.Scheme(),
			Logger:                  zap.New(zap.WriteTo(GinkgoWriter)),
			Metrics:                 metricsserver.Options{BindAddress: "0"},
			Cache:                   controllers.CacheOptions(nil),
			LeaderElection:          true,
			LeaderElectionID:        "funnel-operator.funnel.leasing.dev",
			LeaderElectionNamespace: "funnel-system",
		})
		Expect(err).NotTo(HaveOccurred())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		webhookURL = "http://" + ln.Addr().String()
		Expect(controllers.Setup(ctx, mgr, controllers.Options{Webhook: receiver.Options{Listener: ln},
			SealKeySecret:      types.NamespacedName{Namespace: "funnel-system", Name: receiver.DefaultSealKeySecret},
			DeliveryAllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})).To(Succeed())
		mgrCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mgrCtx) }()
		DeferCleanup(func() { cancel(); Expect(<-done).To(Succeed()) })

		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "token"},
			StringData: map[string]string{"token": "t0ken"}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
			Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
				SecretRef: funnelv1.SecretKeyRef{Name: "token", Key: "token"}}}}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"},
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: sinkURL}}}})).To(Succeed())
		// The Job is created as the subscription's ServiceAccount, which may create Jobs.
		Expect(testenv.ServiceAccount(ctx, k8s, ns, "jobs",
			rbacv1.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "move-in"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease.move_in"}, ServiceAccountName: "jobs", Action: funnelv1.Action{Job: &funnelv1.JobAction{
				Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1"}}}}}}}}}})).To(Succeed())
	})

	post := func(file string) int {
		GinkgoHelper()
		body, err := os.ReadFile(filepath.Join(testenv.Root(), "api", "funnel", "testdata", file))
		Expect(err).NotTo(HaveOccurred())
		req, err := http.NewRequest(http.MethodPost, webhookURL+"/webhooks/"+ns+"/funnel", strings.NewReader(string(body)))
		Expect(err).NotTo(HaveOccurred())
		req.Header.Set("Authorization", "Bearer t0ken")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	event := func(name string) func(Gomega) funnelv1.FunnelEvent {
		return func(g Gomega) funnelv1.FunnelEvent {
			var ev funnelv1.FunnelEvent
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &ev)).To(Succeed())
			return ev
		}
	}

	// finishedEvents counts the namespace's events in a final phase, selected by the API
	// server on the CRD's selectable status.phase.
	finishedEvents := func(g Gomega) int {
		n := 0
		for _, phase := range []funnelv1.EventPhase{funnelv1.PhaseSucceeded, funnelv1.PhaseFailed, funnelv1.PhaseIgnored} {
			var list funnelv1.FunnelEventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns), client.MatchingFields{funnelv1.FieldPhase: string(phase)})).To(Succeed())
			n += len(list.Items)
		}
		return n
	}

	It("elects a leader with its Lease", func() {
		Eventually(func(g Gomega) string {
			var lease coordinationv1.Lease
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "funnel-system", Name: "funnel-operator.funnel.leasing.dev"}, &lease)).To(Succeed())
			g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
			return *lease.Spec.HolderIdentity
		}).ShouldNot(BeEmpty())
	})

	It("makes its receiver and subscriptions Ready (Secrets, dry-run Jobs, status patches)", func() {
		Eventually(func(g Gomega) {
			var rcv funnelv1.FunnelReceiver
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "funnel"}, &rcv)).To(Succeed())
			g.Expect(rcv.Status.Conditions).To(ContainElement(HaveField("Reason", funnelv1.ReasonAccepting)))
			for _, name := range []string{"pms", "move-in"} {
				var sub funnelv1.FunnelSubscription
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &sub)).To(Succeed())
				g.Expect(sub.Status.Conditions).To(ContainElement(HaveField("Reason", funnelv1.ReasonReady)), name)
			}
		}).Should(Succeed())
	})

	It("receives, counts duplicates, processes and delivers an event", func() {
		Expect(post("classic-lease_transaction.status_updated.json")).To(Equal(http.StatusOK))
		Expect(post("classic-lease_transaction.status_updated.json")).To(Equal(http.StatusOK))
		body, err := os.ReadFile(filepath.Join(testenv.Root(), "api", "funnel", "testdata", "classic-lease_transaction.status_updated.json"))
		Expect(err).NotTo(HaveOccurred())
		name, err := funnel.EventName("funnel", body, time.Now())
		Expect(err).NotTo(HaveOccurred())
		Eventually(event(name)).Should(SatisfyAll(
			HaveField("Status.Phase", funnelv1.PhaseSucceeded),
			HaveField("Status.Duplicates", int64(1))))
		Expect(sinkHits.Load()).To(Equal(int32(1)))
		Eventually(func(g Gomega) int64 {
			var sub funnelv1.FunnelSubscription
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pms"}, &sub)).To(Succeed())
			return sub.Status.Succeeded
		}).Should(Equal(int64(1)))
	})

	It("runs a Job for a move-in", func() {
		Expect(post("v3-lease.move_in.json")).To(Equal(http.StatusOK))
		Eventually(func(g Gomega) []batchv1.Job {
			var jobs batchv1.JobList
			g.Expect(k8s.List(ctx, &jobs, client.InNamespace(ns))).To(Succeed())
			return jobs.Items
		}).Should(HaveLen(1))
	})

	It("records a Warning Event for invalid data", func() {
		ev := &funnelv1.FunnelEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "evt-bad", Labels: map[string]string{
				funnelv1.LabelReceiver: "funnel", funnelv1.LabelEventType: "lease_transaction.unit_reserved"}},
			Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, Type: "lease_transaction.unit_reserved",
				EventID: "1", ReceivedAt: metav1.NowMicro(), Data: runtime.RawExtension{Raw: []byte(`{"lease_transaction_id":"x"}`)}},
		}
		Expect(testenv.Seal(ctx, k8s, "funnel-system", ev)).To(Succeed())
		Expect(k8s.Create(ctx, ev)).To(Succeed())
		Eventually(func(g Gomega) []eventsv1.Event {
			var list eventsv1.EventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			return list.Items
		}).Should(ContainElement(SatisfyAll(HaveField("Regarding.Name", "evt-bad"), HaveField("Reason", funnelv1.ReasonInvalidPayload))))
	})

	It("deletes finished events past maxEvents", func() {
		Expect(post("partner-renter.status-change.json")).To(Equal(http.StatusOK))
		Eventually(finishedEvents).Should(BeNumerically(">=", 3))
		Expect(k8s.Patch(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"retention":{"maxEvents":1}}}`)))).To(Succeed())
		Eventually(finishedEvents).Should(Equal(1), fmt.Sprintf("retention in %s", ns))
	})
})
