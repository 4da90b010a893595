package delivery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/identity"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// routerFixture is a Router over a fake client holding one event and one HTTP
// subscription to target, with a fake clock, an executor and a queue its wakes land in.
type routerFixture struct {
	router *Router
	clock  *clocktesting.FakeClock
	ev     *funnelv1.FunnelEvent
	wakes  workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func newRouterFixture(t *testing.T, target string) *routerFixture {
	t.Helper()
	scheme := testenv.Scheme()
	ev := exampleEvent(t, examples[0])
	ev.UID = "uid-1"
	sub := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ev.Namespace, Name: "pms"},
		Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target}}}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ev.DeepCopy(), sub).Build()
	clk := clocktesting.NewFakeClock(time.Now())
	exec := NewExecutor(4, 4, clk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = exec.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wakes := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	t.Cleanup(wakes.ShutDown)
	// No ServiceAccount: the subscription reads no Secret.
	r := &Router{Client: c, Identity: &identity.Clients{}, Scheme: scheme, Executor: exec, Clock: clk, Recorder: &events.FakeRecorder{},
		HTTP:  NewHTTPClient(NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil)),
		Stats: NewStats(c, c, time.Hour)}
	if err := r.Wakeups(predicate.NewPredicateFuncs(func(client.Object) bool { return true })).Start(ctx, wakes); err != nil {
		t.Fatal(err)
	}
	return &routerFixture{router: r, clock: clk, ev: ev, wakes: wakes}
}

// pass runs one Dispatch and, unless it is settling, records its deliveries as the
// reconciler would.
func (f *routerFixture) pass(t *testing.T) Result {
	t.Helper()
	res, err := f.router.Dispatch(context.Background(), f.ev, funnel.Details{Summary: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Settling {
		f.ev.Status.Deliveries = res.Deliveries
	}
	return res
}

// awaitWake waits until an attempt's end wakes the event.
func (f *routerFixture) awaitWake(t *testing.T) {
	t.Helper()
	got := make(chan reconcile.Request, 1)
	go func() {
		req, _ := f.wakes.Get()
		f.wakes.Done(req)
		got <- req
	}()
	select {
	case req := <-got:
		if req.NamespacedName != client.ObjectKeyFromObject(f.ev) {
			t.Fatalf("woke %v", req)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no wake")
	}
}

// TestDispatchRecordsAFastAttemptOnce: the pass that hands an attempt over writes
// nothing; the outcome wakes the event and the next pass records it: one status write.
func TestDispatchRecordsAFastAttemptOnce(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	f := newRouterFixture(t, target.URL)

	res := f.pass(t)
	if !res.Settling || res.RequeueAfter != DefaultSettleTime || len(res.Deliveries) != 1 || res.Deliveries[0].Phase != funnelv1.DeliveryPending {
		t.Fatalf("first pass: %+v", res)
	}
	f.awaitWake(t)
	res = f.pass(t)
	d := res.Deliveries[0]
	if res.Settling || d.Phase != funnelv1.DeliverySucceeded || d.Attempts != 1 || d.ResponseCode != 200 || d.LastAttemptTime == nil {
		t.Fatalf("second pass: %+v", res)
	}
	if hits.Load() != 1 {
		t.Errorf("the target got %d requests, want 1", hits.Load())
	}
}

// TestDispatchRecordsASlowAttemptAsRunning: past the settle time the attempt is recorded
// as Running (attempt 1, its start time); its outcome later completes that same attempt,
// and a pass in between does not make a second one.
func TestDispatchRecordsASlowAttemptAsRunning(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-release
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer target.Close()
	defer close(release)
	f := newRouterFixture(t, target.URL)

	if res := f.pass(t); !res.Settling {
		t.Fatalf("first pass: %+v", res)
	}
	submitted := f.clock.Now()
	f.clock.Step(DefaultSettleTime + time.Second)
	res := f.pass(t)
	d := res.Deliveries[0]
	if res.Settling || d.Phase != funnelv1.DeliveryRunning || d.Attempts != 1 || !d.LastAttemptTime.Time.Equal(submitted) ||
		res.RequeueAfter != httpRecheck {
		t.Fatalf("second pass: %+v, last attempt %v, submitted %v", res, d.LastAttemptTime, submitted)
	}
	if res := f.pass(t); res.Settling || res.Deliveries[0].Attempts != 1 {
		t.Fatalf("a pass while it runs: %+v", res)
	}

	release <- struct{}{}
	f.awaitWake(t)
	res = f.pass(t)
	d = res.Deliveries[0]
	if d.Phase != funnelv1.DeliveryPending || d.Attempts != 1 || d.ResponseCode != 503 || d.LastError != "HTTP 503 Service Unavailable" || d.NextAttemptTime == nil {
		t.Fatalf("after the outcome: %+v", d)
	}
	if hits.Load() != 1 {
		t.Errorf("the target got %d requests, want 1", hits.Load())
	}
}

// TestDispatchRoutesOnce: the pass that records a settled pass's outcomes keeps its
// routing; a subscription created in between is not routed to (replay would).
func TestDispatchRoutesOnce(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer target.Close()
	f := newRouterFixture(t, target.URL)
	if res := f.pass(t); !res.Settling {
		t.Fatalf("first pass: %+v", res)
	}
	late := &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: f.ev.Namespace, Name: "late"},
		Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}}}
	if err := f.router.Client.Create(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	f.awaitWake(t)
	res := f.pass(t)
	if len(res.Deliveries) != 1 || res.Deliveries[0].Subscription != "pms" || res.Deliveries[0].Phase != funnelv1.DeliverySucceeded {
		t.Fatalf("second pass: %+v", res.Deliveries)
	}
}

// update changes the fixture's subscription.
func (f *routerFixture) update(t *testing.T, change func(*funnelv1.FunnelSubscription)) {
	t.Helper()
	var sub funnelv1.FunnelSubscription
	if err := f.router.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ev.Namespace, Name: "pms"}, &sub); err != nil {
		t.Fatal(err)
	}
	change(&sub)
	if err := f.router.Client.Update(context.Background(), &sub); err != nil {
		t.Fatal(err)
	}
}

// TestDispatchHoldsWhileSuspended: a retry that falls due while its subscription is
// suspended waits, saying why, and is made once the subscription is resumed.
func TestDispatchHoldsWhileSuspended(t *testing.T) {
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer target.Close()
	f := newRouterFixture(t, target.URL)
	f.pass(t)
	f.awaitWake(t)
	if d := f.pass(t).Deliveries[0]; d.Phase != funnelv1.DeliveryPending || d.Attempts != 1 || d.NextAttemptTime == nil {
		t.Fatalf("after the 503: %+v", d)
	}

	f.update(t, func(s *funnelv1.FunnelSubscription) { s.Spec.Suspend = true })
	f.clock.Step(time.Minute)
	res := f.pass(t)
	if d := res.Deliveries[0]; d.Phase != funnelv1.DeliveryPending || d.Attempts != 1 || d.Reason != funnelv1.WaitSuspended ||
		res.Settling || res.RequeueAfter != pausedRecheck {
		t.Fatalf("suspended: %+v, %+v", d, res)
	}

	f.update(t, func(s *funnelv1.FunnelSubscription) { s.Spec.Suspend = false })
	if d := f.pass(t).Deliveries[0]; d.Reason != "" {
		t.Fatalf("resumed: %+v", d)
	}
	f.awaitWake(t)
	if d := f.pass(t).Deliveries[0]; d.Phase != funnelv1.DeliverySucceeded || d.Attempts != 2 || d.Reason != "" {
		t.Fatalf("after resuming: %+v", d)
	}
	if hits.Load() != 2 {
		t.Errorf("the target got %d requests, want 2", hits.Load())
	}
}

// TestDispatchDeadLettersAnExhaustedDelivery: the same state machine runs the dead
// letter once the delivery's retries are exhausted, with the failure context.
func TestDispatchDeadLettersAnExhaustedDelivery(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer target.Close()
	letters := make(chan http.Header, 2)
	dlq := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { letters <- r.Header.Clone() }))
	defer dlq.Close()
	f := newRouterFixture(t, target.URL)
	f.update(t, func(s *funnelv1.FunnelSubscription) {
		s.Spec.Delivery.Retries = ptr.To[int32](1)
		s.Spec.Delivery.DeadLetter = &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: dlq.URL}}
	})
	f.pass(t)
	f.awaitWake(t)
	if d := f.pass(t).Deliveries[0]; d.Phase != funnelv1.DeliveryPending || d.Attempts != 1 {
		t.Fatalf("after the first attempt: %+v", d)
	}
	f.clock.Step(time.Minute)
	f.pass(t)
	f.awaitWake(t)
	d := f.pass(t).Deliveries[0]
	if d.Phase != funnelv1.DeliveryFailed || d.Attempts != 2 || d.ResponseCode != 502 || d.DeadLetter == nil || d.DeadLetter.Phase != funnelv1.DeliveryPending {
		t.Fatalf("after the retries: %+v, dead letter %+v", d, d.DeadLetter)
	}
	f.awaitWake(t)
	d = f.pass(t).Deliveries[0]
	if dl := d.DeadLetter; dl.Phase != funnelv1.DeliverySucceeded || dl.Attempts != 1 || dl.ResponseCode != 200 || dl.CompletionTime == nil {
		t.Fatalf("dead letter: %+v", dl)
	}
	if h := <-letters; h.Get("X-Funnel-Dead-Letter") != "true" {
		t.Errorf("dead letter headers: %v", h)
	}
	if len(letters) != 0 {
		t.Error("the dead letter was sent twice")
	}
}
