package reliability_test

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// leaseName is the operator's leader election Lease.
const leaseName = "funnel-operator.funnel.leasing.dev"

// fixtureOptions shape a scenario's namespace and operators.
type fixtureOptions struct {
	// replicas of the operator (1 when 0); more than one elect a leader in the namespace.
	replicas int
	// leaderElect even with one replica.
	leaderElect bool
	// subscriptions: HTTP subscriptions of every event type to the sink, by name.
	subscriptions []string
	// hmac: the receiver also checks an HMAC signature.
	hmac bool
	// args are extra operator flags.
	args []string
	// noStart: the scenario starts the operators itself.
	noStart bool
	// kubeconfig of the operators; the admin's when empty.
	kubeconfig string
	// leaseNamespace holds the leader election Lease; the fixture's namespace when empty.
	leaseNamespace string
}

// fixture is one scenario's namespace, receiver, sink and operators.
type fixture struct {
	ns   string
	rcv  *harness.Receiver
	sink *harness.Sink
	ops  []*harness.Operator
	subs []string
}

// newFixture creates a namespace with a receiver (harness.NewReceiver), a sink and its
// subscriptions, and starts the operators watching only that namespace. Everything is
// stopped at the end of the spec.
func newFixture(prefix string, o fixtureOptions) *fixture {
	GinkgoHelper()
	ns, err := testenv.NewNamespace(ctx, k8s, prefix)
	Expect(err).NotTo(HaveOccurred())
	f := &fixture{ns: ns, subs: o.subscriptions}
	f.rcv, err = harness.NewReceiver(ctx, k8s, ns, o.hmac)
	Expect(err).NotTo(HaveOccurred())

	f.sink, err = harness.NewSink()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(f.sink.Close)
	for _, name := range o.subscriptions {
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"},
				Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: f.sink.URL + "/" + name}}},
		})).To(Succeed())
	}

	replicas := max(o.replicas, 1)
	for i := range replicas {
		// The sink is on loopback, which deliveries may not reach unless allowed.
		args := append([]string{"--namespaces=" + ns, "--graceful-shutdown-timeout=5s", "--delivery-allow-cidrs=127.0.0.1"}, o.args...)
		if replicas > 1 || o.leaderElect {
			args = append(args, "--leader-elect", "--leader-election-namespace="+cmp.Or(o.leaseNamespace, ns))
		}
		op, err := harness.NewOperator(harness.OperatorOptions{Binary: operatorBin, Kubeconfig: cmp.Or(o.kubeconfig, cp.Kubeconfig),
			LogPath: filepath.Join(workDir, fmt.Sprintf("%s-operator-%d.log", ns, i)), Args: args})
		Expect(err).NotTo(HaveOccurred())
		f.ops = append(f.ops, op)
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("--- %s, last lines:\n%s\n", op.LogPath, op.LogTail(40))
			}
			op.Kill()
		})
	}
	if !o.noStart {
		f.start()
	}
	return f
}

// start starts every operator and waits until all are ready.
func (f *fixture) start() {
	GinkgoHelper()
	for _, op := range f.ops {
		Expect(op.Start()).To(Succeed())
	}
	for _, op := range f.ops {
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed())
	}
}

// url is the receiver's URL on replica i.
func (f *fixture) url(i int) string { return f.ops[i].WebhookURL(f.ns, harness.ReceiverName) }

// sender posts to the given replicas (all when none) with the fixture's credentials and
// Funnel's retries.
func (f *fixture) sender(replicas ...int) *send.Sender {
	if len(replicas) == 0 {
		for i := range f.ops {
			replicas = append(replicas, i)
		}
	}
	s := &send.Sender{Auth: f.rcv.Auth(), Retries: send.FunnelRetries}
	for _, i := range replicas {
		s.URLs = append(s.URLs, f.url(i))
	}
	return s
}

// events lists the namespace's FunnelEvents.
func (f *fixture) events(g Gomega) map[string]funnelv1.FunnelEvent {
	var list funnelv1.FunnelEventList
	g.Expect(k8s.List(ctx, &list, client.InNamespace(f.ns))).To(Succeed())
	out := make(map[string]funnelv1.FunnelEvent, len(list.Items))
	for _, ev := range list.Items {
		out[ev.Name] = ev
	}
	return out
}

// unfinished lists the events not yet in a final phase.
func (f *fixture) unfinished(g Gomega) []string {
	var out []string
	for name, ev := range f.events(g) {
		if !ev.Status.Phase.Finished() {
			out = append(out, name+"="+string(ev.Status.Phase))
		}
	}
	slices.Sort(out)
	return out
}

// finished counts the events in a final phase, selected by the API server on the CRD's
// selectable status.phase (the operator's own selector of finished events).
func (f *fixture) finished(g Gomega) int {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(funnelv1.GroupVersion.WithKind("FunnelEventList"))
	g.Expect(k8s.List(ctx, list, client.InNamespace(f.ns), client.MatchingFieldsSelector{Selector: funnelv1.FinishedEvents()})).To(Succeed())
	return len(list.Items)
}

// waitFinal waits until every FunnelEvent of the namespace (want of them) is in a final
// phase, and checks that the selectable status.phase agrees.
func (f *fixture) waitFinal(want int, timeout time.Duration) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(f.unfinished(g)).To(BeEmpty())
	}).WithTimeout(timeout).Should(Succeed(), "events not in a final phase")
	Eventually(f.finished).Should(Equal(want), "events listed with field selector status.phase in (Succeeded, Failed, Ignored)")
}

// outcome checks acknowledged ⇒ stored and stored ⊆ sent, and returns the figures of a
// results row.
type outcome struct {
	sent, acked, stored, lost int
	duplicates                int64
}

func (f *fixture) checkStored(sent []send.Result) outcome {
	GinkgoHelper()
	names := map[string]bool{}
	for _, r := range sent {
		names[r.Event] = true
	}
	acked := send.Acknowledged(sent)
	stored := f.events(Default)
	var lost, unknown []string
	for name := range acked {
		if _, ok := stored[name]; !ok {
			lost = append(lost, name)
		}
	}
	var dups int64
	for name, ev := range stored {
		if !names[name] {
			unknown = append(unknown, name)
		}
		dups += ev.Status.Duplicates
	}
	o := outcome{sent: send.Requests(sent), acked: len(acked), stored: len(stored) - len(unknown), lost: len(lost), duplicates: dups}
	Expect(lost).To(BeEmpty(), "acknowledged with 200 but not stored")
	Expect(unknown).To(BeEmpty(), "stored but never sent")
	return o
}

// checkDeliveries checks that every stored event reached every subscription at least
// once, each time with the same Idempotency-Key, and returns the redeliveries.
func (f *fixture) checkDeliveries() (redelivered int) {
	GinkgoHelper()
	stored := f.events(Default)
	byKey := map[string]int{}
	for _, r := range f.sink.Requests() {
		sub := strings.TrimPrefix(r.Path, "/")
		Expect(r.Key).To(Equal(f.ns+"/"+r.Event+"/"+sub), "Idempotency-Key of a delivery of %s to %s", r.Event, sub)
		byKey[r.Key]++
	}
	var missing []string
	for name := range stored {
		for _, sub := range f.subs {
			n := byKey[f.ns+"/"+name+"/"+sub]
			if n == 0 {
				missing = append(missing, name+"→"+sub)
			}
			redelivered += max(n-1, 0)
		}
	}
	Expect(missing).To(BeEmpty(), "events the target never saw")
	return redelivered
}

func (o outcome) row(scenario string, d time.Duration, notes string) row {
	return row{Scenario: scenario, Sent: o.sent, Acked: o.acked, Stored: o.stored, Lost: o.lost,
		Duplicates: o.duplicates, Time: d, Notes: notes}
}

// batches numbers the calls of bodies, so that no two batches share an event.
var batches atomic.Uint64

// bodies makes n realistic bodies, new events every call (seeded from the suite's seed).
func bodies(n int) [][]byte {
	GinkgoHelper()
	b, err := harness.Events(uint64(GinkgoRandomSeed())<<16+batches.Add(1), n)
	Expect(err).NotTo(HaveOccurred())
	return b
}
