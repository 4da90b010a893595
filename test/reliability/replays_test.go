package reliability_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// jobRunner stands in for the Job controller, which envtest does not run: it completes
// every Job of the namespace once, and counts the Jobs of each event.
type jobRunner struct {
	mu    sync.Mutex
	ran   map[string]int // Jobs completed, by event label
	names map[string]bool
}

func runJobs(ns string) *jobRunner {
	j := &jobRunner{ran: map[string]int{}, names: map[string]bool{}}
	jobCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-jobCtx.Done():
				return
			case <-tick.C:
			}
			var jobs batchv1.JobList
			if err := k8s.List(jobCtx, &jobs, client.InNamespace(ns)); err != nil {
				continue
			}
			for i := range jobs.Items {
				job := &jobs.Items[i]
				if len(job.Status.Conditions) > 0 {
					continue
				}
				now := metav1.Now()
				job.Status.StartTime, job.Status.CompletionTime, job.Status.Succeeded = &now, &now, 1
				job.Status.Conditions = []batchv1.JobCondition{
					{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}}
				if k8s.Status().Update(jobCtx, job) == nil {
					j.mu.Lock()
					j.ran[job.Labels[delivery.LabelEvent]]++
					j.names[job.Name] = true
					j.mu.Unlock()
				}
			}
		}
	}()
	DeferCleanup(func() { stop(); <-done })
	return j
}

func (j *jobRunner) of(event string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ran[funnel.LabelValue(event)]
}

// Scenario: replays, retention and SIGKILLs mixed, with an HTTP and a Job subscription.
// Each replay is a new delivery (Idempotency-Key …/replay-<n>, a new Job): every
// generation of every event reaches the HTTP target (by its key) and runs its Job
// exactly once, none is lost, and no event is left unfinished.
var _ = Describe("Replays, retention and SIGKILLs, with Job actions", func() {
	It("delivers every replay generation exactly once by its key, loses none, leaves none unfinished", func() {
		n := size(30, 150)
		f := newFixture("replays", fixtureOptions{subscriptions: []string{"pms"}, noStart: true})
		op := f.ops[0]
		start := time.Now()

		By("a Job subscription acting as an account that may run Jobs; finished events kept 4s")
		Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "actions"}})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "actions"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete"}}}})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "actions"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "actions"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: f.ns, Name: "actions"}}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "job"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: "actions",
				Action: funnelv1.Action{Job: &funnelv1.JobAction{Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
					Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
						Containers: []corev1.Container{{Name: "c", Image: "example.com/c:1"}}}}}}}}}})).To(Succeed())
		Expect(k8s.Patch(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: harness.ReceiverName}},
			client.RawPatch(types.MergePatchType, []byte(`{"spec":{"retention":{"succeeded":"4s"}}}`)))).To(Succeed())
		jobs := runJobs(f.ns)
		f.start()

		By("sending, with a SIGKILL halfway")
		sending := harness.SendInBackground(ctx, f.sender(), bodies(n), 8)
		Eventually(sending.Acked).WithTimeout(2 * time.Minute).Should(BeNumerically(">=", n/2))
		op.Kill()
		Expect(op.Start()).To(Succeed())
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
		sent := sending.Wait()
		var acked []string
		for name := range send.Acknowledged(sent) {
			acked = append(acked, name)
		}
		Expect(acked).To(HaveLen(n))

		// generations counts, per event, the deliveries asked for: the first, and each replay.
		generations := map[string]int{}
		for _, name := range acked {
			generations[name] = 1
		}
		delivered := func(g Gomega) {
			keys := f.sink.ByKey()
			for name, gens := range generations {
				for k := range gens {
					key := f.ns + "/" + name + "/pms"
					if k > 0 {
						key += fmt.Sprintf("/replay-%d", k)
					}
					g.Expect(keys).To(HaveKey(key), "generation %d of %s at the HTTP target", k, name)
				}
				g.Expect(jobs.of(name)).To(Equal(gens), "Jobs run for %s", name)
			}
		}
		Eventually(delivered).WithTimeout(2 * time.Minute).Should(Succeed())

		By("replaying (retention deletes what finished more than 4s ago), with a SIGKILL in the middle")
		replayed, gone := 0, 0
		annotation := map[string]string{}
		// The third round sets r1 again: a value reused is a new replay too.
		for round, value := range []string{"r1", "r2", "r1"} {
			for i, name := range acked {
				if i%(round+2) != 0 || annotation[name] == value {
					continue
				}
				if round == 0 && i == len(acked)/2 {
					op.Kill()
					Expect(op.Start()).To(Succeed())
				}
				err := k8s.Patch(ctx, &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name}},
					client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, funnelv1.AnnotationReplay, value)))
				if apierrors.IsNotFound(err) {
					gone++
					continue
				}
				Expect(err).NotTo(HaveOccurred())
				annotation[name] = value
				generations[name]++
				replayed++
			}
			Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
			Eventually(delivered).WithTimeout(2*time.Minute).Should(Succeed(), "replay round %d", round+1)
		}
		Eventually(f.unfinished).WithTimeout(time.Minute).Should(BeEmpty())

		By("every generation exactly once: no extra key at the target, no extra Job")
		want := 0
		for name, gens := range generations {
			want += gens
			Expect(jobs.of(name)).To(Equal(gens), "Jobs of %s", name)
		}
		var extra []string
		for key := range f.sink.ByKey() {
			if !expectedKey(f.ns, key, generations) {
				extra = append(extra, key)
			}
		}
		Expect(extra).To(BeEmpty(), "deliveries of no generation")
		Expect(len(f.sink.ByKey())).To(Equal(want))
		record(row{Scenario: "replays, retention and 2 SIGKILLs with a Job action", Sent: send.Requests(sent), Acked: n, Stored: n,
			Time: time.Since(start), Notes: fmt.Sprintf("%d replays asked (%d events already deleted by retention); %d generations, each once at the HTTP target by its key and once as a Job",
				replayed, gone, want)})
	})
})

// expectedKey tells whether key is the Idempotency-Key of a generation asked for.
func expectedKey(ns, key string, generations map[string]int) bool {
	for name, gens := range generations {
		for k := range gens {
			want := ns + "/" + name + "/pms"
			if k > 0 {
				want += fmt.Sprintf("/replay-%d", k)
			}
			if key == want {
				return true
			}
		}
	}
	return false
}
