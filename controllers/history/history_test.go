package history_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// base is the receipt time of the first event a spec archives.
var base = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

// archived writes one finished event to the archive as the archiver would, received
// minutes after base.
func archived(ns, name, typ string, phase funnelv1.EventPhase, leaseTransaction string, minutes int) {
	GinkgoHelper()
	received := base.Add(time.Duration(minutes) * time.Minute)
	labels := map[string]string{funnelv1.LabelReceiver: "funnel", funnelv1.LabelEventType: funnel.LabelValue(typ)}
	if leaseTransaction != "" {
		labels[funnel.LabelLeaseTransactionID] = leaseTransaction
	}
	ev := &funnelv1.FunnelEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: uuid.NewUUID(), ResourceVersion: "1",
			CreationTimestamp: metav1.NewTime(received), Labels: labels},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, Type: typ, EventID: name,
			ReceivedAt: metav1.NewMicroTime(received), OccurredAt: ptrTo(metav1.NewMicroTime(received)),
			Data: runtime.RawExtension{Raw: []byte(`{"lease_transaction_id": 74824}`)}},
		Status: funnelv1.FunnelEventStatus{Phase: phase, Summary: "Application " + leaseTransaction + ": Submitted → Approved", Attempts: 1},
	}
	_, err := store.Write(ctx, []*funnelv1.FunnelEvent{ev})
	Expect(err).NotTo(HaveOccurred())
}

func ptrTo[T any](v T) *T { return &v }

// names lists archived events through the API server, as client-go would.
func names(c client.Client, ns string, opts metav1.ListOptions) ([]string, error) {
	var list historyv1.ArchivedEventList
	if err := c.List(ctx, &list, client.InNamespace(ns), &client.ListOptions{Raw: &opts}); err != nil {
		return nil, err
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Name)
	}
	return out, nil
}

var _ = Describe("History API", func() {
	var ns string
	var history client.Client

	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, admin, "team")
		Expect(err).NotTo(HaveOccurred())
		scheme := testenv.Scheme()
		Expect(historyv1.AddToScheme(scheme)).To(Succeed())
		history, err = client.New(cp.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
	})

	It("answers kubectl get archivedevents -l <lease transaction> with the columns of kubectl get fev", func() {
		archived(ns, "evt-1", "lease_transaction.status_updated", funnelv1.PhaseSucceeded, "74824", 0)
		archived(ns, "evt-2", "lease_transaction.status_updated", funnelv1.PhaseFailed, "74824", 5)
		archived(ns, "evt-3", "lease_transaction.status_updated", funnelv1.PhaseSucceeded, "1", 10)
		other, err := testenv.NewNamespace(ctx, admin, "other")
		Expect(err).NotTo(HaveOccurred())
		archived(other, "evt-4", "lease_transaction.status_updated", funnelv1.PhaseSucceeded, "74824", 1)

		out, err := testenv.Kubectl(cp.Env(), "get", "archivedevents", "-n", ns, "-l", funnel.LabelLeaseTransactionID+"=74824")
		Expect(err).NotTo(HaveOccurred())
		lines := strings.Split(strings.TrimSpace(out), "\n")
		Expect(strings.Fields(lines[0])).To(Equal([]string{"NAME", "TYPE", "PHASE", "SUMMARY", "OCCURRED", "AGE"}))
		Expect(lines).To(HaveLen(3))
		Expect(lines[1]).To(And(HavePrefix("evt-1"), ContainSubstring("Succeeded"), ContainSubstring("Application 74824")))
		Expect(lines[2]).To(And(HavePrefix("evt-2"), ContainSubstring("Failed")))

		wide, err := testenv.Kubectl(cp.Env(), "get", "aev", "-n", ns, "-o", "wide", "--field-selector", "metadata.name=evt-3")
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Fields(strings.SplitN(wide, "\n", 2)[0])).To(Equal([]string{"NAME", "TYPE", "PHASE", "SUMMARY", "OCCURRED",
			"ATTEMPTS", "LEASE-TRANSACTION", "COMMUNITY", "UNIT", "CLIENT", "RENTER", "AGE"}))

		yaml, err := testenv.Kubectl(cp.Env(), "get", "archivedevent", "evt-2", "-n", ns, "-o", "yaml")
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml).To(And(ContainSubstring("kind: ArchivedEvent"), ContainSubstring("lease_transaction_id: 74824"),
			ContainSubstring(historyv1.AnnotationVersion+`: "1"`)))
	})

	It("runs label and field selectors exactly", func() {
		archived(ns, "a", "lease_transaction.status_updated", funnelv1.PhaseSucceeded, "100", 0)
		archived(ns, "b", "lease_transaction.status_updated", funnelv1.PhaseFailed, "200", 60)
		archived(ns, "c", "lease.move_in", funnelv1.PhaseSucceeded, "100", 120)
		archived(ns, "d", "renter.created", funnelv1.PhaseIgnored, "", 180)
		for _, tc := range []struct {
			labels, fields string
			want           []string
		}{
			{"", "", []string{"a", "b", "c", "d"}},
			{funnel.LabelLeaseTransactionID + "=100", "", []string{"a", "c"}},
			{funnel.LabelLeaseTransactionID + " in (100,200)", "", []string{"a", "b", "c"}},
			{funnel.LabelLeaseTransactionID + "!=100", "", []string{"b", "d"}},
			{funnel.LabelLeaseTransactionID + " notin (100)", "", []string{"b", "d"}},
			{funnel.LabelLeaseTransactionID, "", []string{"a", "b", "c"}},
			{"!" + funnel.LabelLeaseTransactionID, "", []string{"d"}},
			{funnel.LabelLeaseTransactionID + ">150", "", []string{"b"}},
			{"", "spec.type=lease.move_in", []string{"c"}},
			{"", "status.phase=Succeeded", []string{"a", "c"}},
			{"", "spec.receiver=funnel,status.phase=Ignored", []string{"d"}},
			{"", "spec.receiver=other", nil},
			{"", "spec.receivedAt.after=2025-03-01T10:00:00Z", []string{"b", "c", "d"}},
			{"", "spec.receivedAt.after=2025-03-01T10:00:00Z,spec.receivedAt.before=2025-03-01T12:00:00Z", []string{"b", "c"}},
			{funnel.LabelLeaseTransactionID + "=100", "status.phase=Succeeded,spec.type=lease.move_in", []string{"c"}},
		} {
			got, err := names(history, ns, metav1.ListOptions{LabelSelector: tc.labels, FieldSelector: tc.fields})
			Expect(err).NotTo(HaveOccurred(), "-l %q --field-selector %q", tc.labels, tc.fields)
			Expect(got).To(Equal(tc.want), "-l %q --field-selector %q", tc.labels, tc.fields)
		}

		By("refusing what it cannot run, saying why")
		_, err := names(history, ns, metav1.ListOptions{FieldSelector: "spec.eventID=a"})
		Expect(apierrors.IsBadRequest(err)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("spec.receivedAt.after"))
		_, err = names(history, ns, metav1.ListOptions{FieldSelector: "spec.receivedAt.after=last march"})
		Expect(err).To(MatchError(ContainSubstring("RFC 3339")))
		_, err = names(history, ns, metav1.ListOptions{FieldSelector: "status.phase!=Failed"})
		Expect(err).To(MatchError(ContainSubstring("only =")))
	})

	It("pages with limit and continue: every event once, in receipt order", func() {
		var want []string
		for i := range 23 {
			name := fmt.Sprintf("evt-%02d", i)
			archived(ns, name, "quote.created", funnelv1.PhaseSucceeded, "", 23-i) // archived newest first
			want = append(want, name)
		}
		slices.Reverse(want)
		var got []string
		pages := 0
		for cont := ""; ; pages++ {
			var list historyv1.ArchivedEventList
			Expect(history.List(ctx, &list, client.InNamespace(ns), client.Limit(5), client.Continue(cont))).To(Succeed())
			Expect(len(list.Items)).To(BeNumerically("<=", 5))
			for _, ev := range list.Items {
				got = append(got, ev.Name)
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
		Expect(got).To(Equal(want))
		Expect(pages).To(Equal(4))

		var list historyv1.ArchivedEventList
		err := history.List(ctx, &list, client.InNamespace(ns), client.Limit(5), client.Continue("bm90LWEtdG9rZW4"))
		Expect(apierrors.IsBadRequest(err)).To(BeTrue(), "%v", err)
	})

	It("lets a tenant read its namespace's history and forbids another's", func() {
		archived(ns, "mine", "quote.created", funnelv1.PhaseSucceeded, "", 0)
		other, err := testenv.NewNamespace(ctx, admin, "other")
		Expect(err).NotTo(HaveOccurred())
		archived(other, "theirs", "quote.created", funnelv1.PhaseSucceeded, "", 0)

		Expect(admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "history-reader"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{historyv1.GroupName}, Resources: []string{"archivedevents"},
				Verbs: []string{"get", "list"}}}})).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "alice"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "history-reader"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "alice"}}})).To(Succeed())
		aliceCfg := rest.CopyConfig(cp.Config)
		aliceCfg.Impersonate = rest.ImpersonationConfig{UserName: "alice"}
		scheme := testenv.Scheme()
		Expect(historyv1.AddToScheme(scheme)).To(Succeed())
		alice, err := client.New(aliceCfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		Eventually(func() ([]string, error) { return names(alice, ns, metav1.ListOptions{}) }).Should(Equal([]string{"mine"}))
		var ev historyv1.ArchivedEvent
		Expect(alice.Get(ctx, client.ObjectKey{Namespace: ns, Name: "mine"}, &ev)).To(Succeed())
		Expect(ev.Spec.Type).To(Equal("quote.created"))

		_, err = names(alice, other, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "another namespace: %v", err)
		err = alice.Get(ctx, client.ObjectKey{Namespace: other, Name: "theirs"}, &ev)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "another namespace: %v", err)
		_, err = names(alice, "", metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "every namespace: %v", err)
		By("asking for another namespace by field selector changes nothing")
		Expect(names(alice, ns, metav1.ListOptions{FieldSelector: "metadata.namespace=" + other})).To(BeEmpty())
	})

	It("gets one event by name, and says NotFound for another", func() {
		archived(ns, "evt-1", "quote.created", funnelv1.PhaseSucceeded, "", 0)
		var ev historyv1.ArchivedEvent
		Expect(history.Get(ctx, client.ObjectKey{Namespace: ns, Name: "evt-1"}, &ev)).To(Succeed())
		Expect(ev.Status.Phase).To(Equal(funnelv1.PhaseSucceeded))
		err := history.Get(ctx, client.ObjectKey{Namespace: ns, Name: "evt-2"}, &ev)
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%v", err)
	})

	It("is installed by config/history: APIService, Service, the operator's flags, readers' RBAC", func() {
		out, err := testenv.Kubectl(cp.Env(), "kustomize", filepath.Join(testenv.Root(), "config", "history"))
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(And(ContainSubstring("name: v1alpha1.history.funnel.leasing.dev"), ContainSubstring("name: funnel-history"),
			ContainSubstring("--history-bind-address=:8443"), ContainSubstring("name: FUNNEL_ARCHIVE_DATABASE_URL"),
			ContainSubstring("rbac.authorization.k8s.io/aggregate-to-view"), ContainSubstring("name: system:auth-delegator")))
	})
})
