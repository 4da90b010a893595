package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// startExecutor runs an executor until the test ends, and checks that it stops.
func startExecutor(t *testing.T, workers, perNamespace int) *Executor {
	t.Helper()
	e := NewExecutor(workers, perNamespace, clocktesting.NewFakeClock(time.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = e.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			t.Error("the executor did not stop")
		}
	})
	return e
}

func keyOf(ns, event string) AttemptKey {
	return AttemptKey{Event: types.NamespacedName{Namespace: ns, Name: event}, Subscription: "sub", Number: 1}
}

func objectOf(k AttemptKey) client.Object {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: k.Event.Namespace, Name: k.Event.Name}}
}

// waitDone polls until the attempt's outcome is back.
func waitDone(t *testing.T, e *Executor, k AttemptKey) attemptState {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := e.attempt(k, nil, nil); st.done {
			return st
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%v did not end", k)
	return attemptState{}
}

// TestExecutorIsFairAcrossNamespaces: one namespace's hanging attempts take at most its
// share of the workers; another namespace's attempt runs at once.
func TestExecutorIsFairAcrossNamespaces(t *testing.T) {
	e := startExecutor(t, 4, 2)
	release := make(chan struct{})
	defer close(release)
	var mu sync.Mutex
	started := map[string]int{}
	hang := func(ns string) func(context.Context) attempt {
		return func(ctx context.Context) attempt {
			mu.Lock()
			started[ns]++
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
			}
			return attempt{succeeded: true}
		}
	}
	for i := range 20 {
		k := keyOf("greedy", fmt.Sprint("evt-", i))
		e.attempt(k, objectOf(k), hang("greedy"))
	}
	k := keyOf("other", "evt-1")
	e.attempt(k, objectOf(k), func(context.Context) attempt { return attempt{succeeded: true, code: 200} })
	if st := waitDone(t, e, k); !st.outcome.succeeded || st.outcome.code != 200 {
		t.Fatalf("outcome %+v", st.outcome)
	}
	mu.Lock()
	defer mu.Unlock()
	if started["greedy"] != 2 {
		t.Errorf("the greedy namespace runs %d attempts at once, want its cap of 2", started["greedy"])
	}
}

// TestExecutorServesNamespacesInTurn: with one worker, waiting namespaces take turns,
// each in submission order.
func TestExecutorServesNamespacesInTurn(t *testing.T) {
	e := NewExecutor(1, 1, clocktesting.NewFakeClock(time.Now()))
	var mu sync.Mutex
	var order []string
	for _, k := range []AttemptKey{keyOf("a", "1"), keyOf("a", "2"), keyOf("a", "3"), keyOf("b", "1"), keyOf("c", "1"), keyOf("b", "2")} {
		e.attempt(k, objectOf(k), func(context.Context) attempt {
			mu.Lock()
			order = append(order, k.Event.String())
			mu.Unlock()
			return attempt{}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Start(ctx) }()
	defer func() { cancel(); <-done }()
	waitDone(t, e, keyOf("a", "3"))
	mu.Lock()
	defer mu.Unlock()
	want := "[a/1 b/1 c/1 a/2 b/2 a/3]"
	if got := fmt.Sprint(order); got != want {
		t.Errorf("order %s, want %s", got, want)
	}
}

// TestExecutorHandsOutcomesOverAndWakes: the outcome goes to the passes that ask for a
// while (one whose status write failed asks again), then is forgotten; the controllers
// whose events it is are woken, the others not.
func TestExecutorHandsOutcomesOverAndWakes(t *testing.T) {
	e := startExecutor(t, 2, 2)
	mineQ := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	otherQ := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer mineQ.ShutDown()
	defer otherQ.ShutDown()
	byNamespace := func(ns string) predicate.Predicate {
		return predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == ns })
	}
	if err := e.Source(byNamespace("a")).Start(context.Background(), mineQ); err != nil {
		t.Fatal(err)
	}
	if err := e.Source(byNamespace("z")).Start(context.Background(), otherQ); err != nil {
		t.Fatal(err)
	}

	k := keyOf("a", "evt-1")
	var runs atomic.Int32
	run := func(context.Context) attempt {
		runs.Add(1)
		return attempt{retryable: true, err: "HTTP 503 Service Unavailable", code: 503}
	}
	if st := e.attempt(k, objectOf(k), run); st.done || st.submitted.IsZero() {
		t.Fatalf("first ask: %+v", st)
	}
	req, _ := mineQ.Get()
	if req.NamespacedName != k.Event {
		t.Errorf("woke %v, want %v", req, k.Event)
	}
	mineQ.Done(req)
	if otherQ.Len() != 0 {
		t.Errorf("another controller was woken")
	}
	st := e.attempt(k, objectOf(k), run)
	if !st.done || st.outcome.code != 503 {
		t.Fatalf("second ask: %+v", st)
	}
	// A pass whose write failed asks again: the same outcome, no second call.
	clk := e.clock.(*clocktesting.FakeClock)
	clk.Step(handedKeep / 2)
	e.sweep()
	if st := e.attempt(k, objectOf(k), run); !st.done || st.outcome.code != 503 || runs.Load() != 1 {
		t.Fatalf("third ask: %+v, %d runs", st, runs.Load())
	}
	// Long after it was handed over, it is forgotten: asking again makes a new attempt.
	clk.Step(handedKeep)
	e.sweep()
	if st := e.attempt(k, objectOf(k), run); st.done {
		t.Fatalf("ask after the outcome was forgotten: %+v", st)
	}
	waitDone(t, e, k)
	if runs.Load() != 2 {
		t.Errorf("runs = %d, want 2", runs.Load())
	}
}

// TestExecutorStopsAttemptsAndForgets: stopping cancels attempts in flight, waits for
// them, and keeps no outcome a later leader could not record anyway.
func TestExecutorStopsAttemptsAndForgets(t *testing.T) {
	e := NewExecutor(2, 2, clocktesting.NewFakeClock(time.Now()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Start(ctx) }()
	running := make(chan struct{})
	var finished bool
	k := keyOf("a", "evt-1")
	e.attempt(k, objectOf(k), func(ctx context.Context) attempt {
		close(running)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		finished = true
		return attempt{err: "canceled"}
	})
	<-running
	cancel()
	<-done
	if !finished {
		t.Error("Start returned before the attempt in flight did")
	}
	if len(e.tasks) != 0 || len(e.queues) != 0 || len(e.turns) != 0 || e.running != 0 {
		t.Errorf("state kept after stop: %d tasks, %d queues, %d turns, %d running", len(e.tasks), len(e.queues), len(e.turns), e.running)
	}
}

// TestExecutorForgetsUnclaimedOutcomes: an outcome no pass asks for (the event was
// deleted) does not stay forever.
func TestExecutorForgetsUnclaimedOutcomes(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	e := NewExecutor(1, 1, clk)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Start(ctx) }()
	defer func() { cancel(); <-done }()
	k := keyOf("a", "evt-1")
	e.attempt(k, objectOf(k), func(context.Context) attempt { return attempt{succeeded: true} })
	for {
		e.mu.Lock()
		ended := e.tasks[k].done
		e.mu.Unlock()
		if ended {
			break
		}
		time.Sleep(time.Millisecond)
	}
	clk.Step(outcomeKeep - time.Second)
	e.sweep()
	e.mu.Lock()
	kept := len(e.tasks)
	e.mu.Unlock()
	if kept != 1 {
		t.Fatalf("outcome dropped before its time")
	}
	clk.Step(2 * time.Second)
	e.sweep()
	if st := e.attempt(k, objectOf(k), func(context.Context) attempt { return attempt{} }); st.done {
		t.Errorf("an outcome older than %s was still handed over", outcomeKeep)
	}
}

// TestExecutorBoundsASubscription: a subscription's maxInFlight bounds its attempts
// running at once; the next waits its turn while another subscription of the same
// namespace goes ahead.
func TestExecutorBoundsASubscription(t *testing.T) {
	e := startExecutor(t, 8, 8)
	release := make(chan struct{})
	var mu sync.Mutex
	running, most := 0, 0
	hang := func(context.Context) attempt {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		<-release
		mu.Lock()
		running--
		mu.Unlock()
		return attempt{succeeded: true}
	}
	var keys []AttemptKey
	for i := range 6 {
		k := keyOf("ns", fmt.Sprint("evt-", i))
		keys = append(keys, k)
		e.attemptWithin(k, 2, objectOf(k), hang)
	}
	other := AttemptKey{Event: types.NamespacedName{Namespace: "ns", Name: "evt-x"}, Subscription: "other", Number: 1}
	e.attemptWithin(other, 2, objectOf(other), func(context.Context) attempt { return attempt{succeeded: true, code: 200} })
	if st := waitDone(t, e, other); st.outcome.code != 200 {
		t.Fatalf("the other subscription's attempt: %+v", st.outcome)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		n := running
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts of the bounded subscription run, want 2", n)
		}
	}
	close(release)
	for _, k := range keys {
		waitDone(t, e, k)
	}
	if most != 2 {
		t.Errorf("at most %d ran at once, want 2", most)
	}
}
