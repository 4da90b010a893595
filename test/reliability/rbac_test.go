package reliability_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// notAuditable are grants the flow exercises but the audit log cannot show, with why
// (none today: "update funnelevents/finalizers" was one, while the operator created Jobs
// that blocked their event's deletion).
var notAuditable = map[harness.Permission]string{}

// actionsAccount is the ServiceAccount the scenario's Job and Secret subscriptions act as.
const actionsAccount = "actions"

// Scenario 6 (RBAC): the operator binary runs with a token of its ServiceAccount
// (TokenRequest) and exactly the RBAC of config/rbac, through the whole flow. The
// permissions it used (the API server's audit log) are compared with those granted: a
// refused request or a grant never used fails the spec.
var _ = Describe("The operator with exactly config/rbac", func() {
	It("works end to end and uses every permission it is granted", func() {
		requireLong()
		start := time.Now()
		rbacDir := filepath.Join(testenv.Root(), "config", "rbac")
		By("applying config/rbac and requesting a token of the operator's ServiceAccount")
		saToken, err := testenv.OperatorToken(ctx, cp.Env())
		Expect(err).NotTo(HaveOccurred())
		kubeconfig := filepath.Join(workDir, "operator-sa.kubeconfig")
		Expect(cp.WriteTokenKubeconfig(kubeconfig, "funnel-operator", saToken)).To(Succeed())

		f := newFixture("rbac", fixtureOptions{subscriptions: []string{"pms"}, leaderElect: true, noStart: true,
			kubeconfig: kubeconfig, leaseNamespace: "funnel-system", args: []string{"--zap-log-level=debug"}})
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "crm"},
			StringData: map[string]string{"api-key": "k-" + harness.RandomSecret(), "signing-key": harness.RandomSecret()}})).To(Succeed())
		By("a ServiceAccount for the subscriptions' Jobs and Secrets: the operator acts as it")
		Expect(testenv.ServiceAccount(ctx, k8s, f.ns, actionsAccount,
			rbacv1.PolicyRule{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"crm"}, Verbs: []string{"get"}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "crm"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"renter.*"}, ServiceAccountName: actionsAccount, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{
				URL:              f.sink.URL + "/crm",
				HeadersFrom:      []funnelv1.HTTPHeaderFromSecret{{Name: "X-Api-Key", SecretRef: funnelv1.SecretKeyRef{Name: "crm", Key: "api-key"}}},
				SigningSecretRef: &funnelv1.SecretKeyRef{Name: "crm", Key: "signing-key"},
			}}}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "move-in"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{funnel.TypeMoveIn}, ServiceAccountName: actionsAccount, Action: funnelv1.Action{Job: &funnelv1.JobAction{
				Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1"}}}}}}}}}})).To(Succeed())

		By("a FunnelBackfill, with no archive to read: its conditions say so (a status patch)")
		Expect(k8s.Create(ctx, &funnelv1.FunnelBackfill{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "history"},
			Spec: funnelv1.FunnelBackfillSpec{Subscription: "pms"}})).To(Succeed())

		f.start()
		op := f.ops[0]
		Eventually(func(g Gomega) bool { return isLeader(g, op) }).Should(BeTrue(), "leader")
		Eventually(func(g Gomega) {
			var rcv funnelv1.FunnelReceiver
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: harness.ReceiverName}, &rcv)).To(Succeed())
			g.Expect(rcv.Status.Conditions).To(ContainElement(HaveField("Reason", funnelv1.ReasonAccepting)))
			for _, name := range []string{"pms", "crm", "move-in"} {
				var sub funnelv1.FunnelSubscription
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: name}, &sub)).To(Succeed())
				g.Expect(sub.Status.Conditions).To(ContainElement(HaveField("Reason", funnelv1.ReasonReady)), name)
			}
		}).Should(Succeed())

		By("receiving events, twice each (duplicates), processing and delivering them")
		bs := bodies(32) // two of each documented type, lease.move_in included
		sent := f.sender().SendAll(ctx, append(bs, bs...), 4)
		for _, r := range sent {
			Expect(r.Acknowledged()).To(BeTrue(), "%v", r.Attempts)
		}
		By("an invalid event: a Warning Event")
		invalid := &funnelv1.FunnelEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "evt-invalid", Labels: map[string]string{
				funnelv1.LabelReceiver: harness.ReceiverName, funnelv1.LabelEventType: funnel.TypeUnitReserved}},
			Spec: funnelv1.FunnelEventSpec{Receiver: harness.ReceiverName, Format: funnelv1.FormatV3, Type: funnel.TypeUnitReserved,
				EventID: "1", ReceivedAt: metav1.NowMicro(), Data: runtime.RawExtension{Raw: []byte(`{"lease_transaction_id":"x"}`)}},
		}
		Expect(testenv.Seal(ctx, k8s, "funnel-system", invalid)).To(Succeed())
		Expect(k8s.Create(ctx, invalid)).To(Succeed())

		Eventually(func(g Gomega) []batchv1.Job {
			var jobs batchv1.JobList
			g.Expect(k8s.List(ctx, &jobs, client.InNamespace(f.ns))).To(Succeed())
			return jobs.Items
		}).Should(HaveLen(2), "a Job per move-in")
		Eventually(func(g Gomega) []eventsv1.Event {
			var list eventsv1.EventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(f.ns))).To(Succeed())
			return list.Items
		}).Should(ContainElement(SatisfyAll(HaveField("Regarding.Name", "evt-invalid"), HaveField("Reason", funnelv1.ReasonInvalidPayload))))

		waitFinishedButMoveIns(f)

		By("again with client-go's list fallback (informers list, then watch, where streaming lists are off or unsupported), at --zap-log-level=10")
		op.Stop(20 * time.Second)
		Expect(op.Err()).NotTo(HaveOccurred(), "a clean exit")
		op.Env = append(op.Env, "KUBE_FEATURE_WatchListClient=false")
		// And at the highest verbosity: the ServiceAccount token must not show there either.
		op.Args = append(op.Args, "--zap-log-level=10")
		f.start()
		Eventually(func(g Gomega) bool { return isLeader(g, op) }).Should(BeTrue(), "leader again")
		again := f.sender().SendAll(ctx, bodies(4), 4)
		for _, r := range again {
			Expect(r.Acknowledged()).To(BeTrue(), "%v", r.Attempts)
		}
		sent = append(sent, again...)
		waitFinishedButMoveIns(f)

		// The event the test created itself counts as sent, never acknowledged.
		o := f.checkStored(append(sent, send.Result{Event: "evt-invalid"}))
		Expect(o.stored).To(Equal(36 + 1))
		Expect(f.sink.Len()).To(BeNumerically(">=", 36-2), "deliveries to pms (all but the move-ins) and crm (renter.*)")

		By("retention: keep one finished event")
		Expect(k8s.Patch(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: harness.ReceiverName}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"retention":{"maxEvents":1}}}`)))).To(Succeed())
		Eventually(f.finished).Should(Equal(1))

		By("stopping the operator (SIGTERM: subscription counts flushed, lease released)")
		op.Stop(20 * time.Second)
		Expect(op.Err()).NotTo(HaveOccurred(), "a clean exit")
		log, err := op.Log()
		Expect(err).NotTo(HaveOccurred())
		// An RBAC refusal reads `User "<user>" cannot <verb> resource …` (quotes escaped in JSON).
		Expect(string(log)).NotTo(MatchRegexp(`funnel-operator\\?" cannot`), "no request was refused by RBAC")
		expectNoSecrets(log, map[string]string{"ServiceAccount token": saToken, "receiver token": f.rcv.Token})

		By("comparing the permissions used (audit log) with those granted (config/rbac)")
		used, err := harness.UsedPermissions(cp.AuditLog, operatorUser)
		Expect(err).NotTo(HaveOccurred())
		granted, err := harness.GrantedPermissions(filepath.Join(rbacDir, "role.yaml"), filepath.Join(rbacDir, "leader_election_role.yaml"),
			filepath.Join(rbacDir, "seal_key_role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var report strings.Builder
		var unused, refused, usedOK []string
		fmt.Fprintf(&report, "granted by config/rbac (%d):\n", len(granted))
		for _, p := range harness.SortedPermissions(granted) {
			u := used[p]
			state := fmt.Sprintf("used %d×", u.Allowed)
			switch {
			case u.Allowed > 0:
				usedOK = append(usedOK, p.String())
			case notAuditable[p] != "":
				state = "exercised, not auditable: " + notAuditable[p]
			default:
				state = "NEVER USED"
				unused = append(unused, p.String())
			}
			fmt.Fprintf(&report, "  %-50s %s\n", p, state)
		}
		fmt.Fprintf(&report, "used by the operator (%d):\n", len(used))
		for _, p := range harness.SortedPermissions(used) {
			u := used[p]
			fmt.Fprintf(&report, "  %-50s allowed %d, forbidden %d\n", p, u.Allowed, u.Forbidden)
			if u.Forbidden > 0 || !granted[p] {
				refused = append(refused, p.String())
			}
		}
		acted, err := harness.ImpersonatedPermissions(cp.AuditLog, operatorUser)
		Expect(err).NotTo(HaveOccurred())
		fmt.Fprintf(&report, "done as the subscriptions' ServiceAccounts:\n")
		for as, perms := range acted {
			for _, p := range harness.SortedPermissions(perms) {
				fmt.Fprintf(&report, "  %-50s as %s: allowed %d, forbidden %d\n", p, as, perms[p].Allowed, perms[p].Forbidden)
			}
		}
		GinkgoWriter.Print(report.String())
		AddReportEntry("permissions", report.String())
		record(o.row("6. RBAC of config/rbac, ServiceAccount token", time.Since(start),
			fmt.Sprintf("%d permissions granted, %d used, %d not auditable; never used: %s; refused: %s",
				len(granted), len(usedOK), len(notAuditable), orNone(unused), orNone(refused))))
		Expect(refused).To(BeEmpty(), "requests refused, or allowed by something other than config/rbac")
		Expect(acted).To(HaveKeyWithValue("system:serviceaccount:"+f.ns+":"+actionsAccount, SatisfyAll(
			HaveKeyWithValue(harness.Permission{Group: "batch", Resource: "jobs", Verb: "create"}, HaveField("Allowed", BeNumerically(">=", 2))),
			HaveKeyWithValue(harness.Permission{Resource: "secrets", Verb: "get"}, HaveField("Allowed", BeNumerically(">=", 1))))),
			"Jobs created and Secrets read as the subscriptions' ServiceAccount")
		Expect(unused).To(BeEmpty(), "granted by config/rbac but never used by the whole flow: extra permissions\n%s", report.String())
	})
})

// waitFinishedButMoveIns waits until every event but the move-ins is in a final phase:
// their Jobs never run here (no kubelet), so their deliveries stay Running.
func waitFinishedButMoveIns(f *fixture) {
	GinkgoHelper()
	Eventually(func(g Gomega) []string {
		var left []string
		for name, ev := range f.events(g) {
			if !ev.Status.Phase.Finished() && ev.Spec.Type != funnel.TypeMoveIn {
				left = append(left, name+"="+string(ev.Status.Phase))
			}
		}
		return left
	}).WithTimeout(2 * time.Minute).Should(BeEmpty())
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
