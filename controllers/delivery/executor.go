package delivery

import (
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Executor defaults.
const (
	// DefaultExecutorWorkers bounds the attempts in flight at once: each holds a goroutine
	// and a connection for at most its timeout (60s).
	DefaultExecutorWorkers = 128
	// DefaultExecutorWorkersPerNamespace bounds one namespace's share, so one tenant's
	// hanging endpoints leave the rest to everybody else.
	DefaultExecutorWorkersPerNamespace = 16
	// outcomeKeep is how long a finished attempt's outcome waits for the pass that records
	// it (the event's controller may be busy); past it the attempt is made again, with the
	// same Idempotency-Key.
	outcomeKeep = 10 * time.Minute
	// handedKeep is how long an outcome is kept once a pass took it, in case that pass's
	// status write fails (a conflict) and the next pass asks again.
	handedKeep = 30 * time.Second
)

// AttemptKey names one attempt of one delivery: two passes that ask for the same key
// mean the same attempt.
type AttemptKey struct {
	Event types.NamespacedName
	// UID and Replays: a recreated or replayed event's attempts are other attempts.
	UID          types.UID
	Replays      int32
	Subscription string
	DeadLetter   bool
	Number       int32
}

// task is one attempt handed to the executor.
type task struct {
	key AttemptKey
	// wake is what the controllers are told about when the attempt ends.
	wake client.Object
	run  func(context.Context) attempt

	// limit bounds the attempts of the task's subscription running at once (0: none).
	limit int

	submitted, started, ended time.Time
	done                      bool
	outcome                   attempt
	// handed is when a pass first took the outcome.
	handed time.Time
}

// attemptState is what the executor knows of an attempt.
type attemptState struct {
	// done: the outcome is here, handed over once.
	done    bool
	outcome attempt
	// submitted is when the attempt was handed over.
	submitted time.Time
}

// Executor runs delivery attempts outside the event controllers' workers, so that a
// processing pass never waits for a target: the pass hands an attempt over and returns,
// and the attempt's end wakes the event, whose next pass records the outcome. At most
// Workers attempts run at once and at most PerNamespace of one namespace; namespaces with
// attempts waiting are served in turn, each in submission order. Nothing of an attempt
// survives the leader: an attempt in flight when the leader stops is made again by the
// next one, with the same Idempotency-Key. What it holds is small (keys and closures
// over names, not events or bodies) and bounded by the deliveries of unfinished events.
type Executor struct {
	workers, perNamespace int
	clock                 clock.PassiveClock

	mu      sync.Mutex
	ctx     context.Context // set by Start
	wg      sync.WaitGroup
	tasks   map[AttemptKey]*task
	queues  map[string][]*task // waiting attempts per namespace
	turns   []string           // namespaces with waiting attempts, served in turn
	next    int                // the namespace whose turn it is, in turns
	running int
	active  map[string]int // running attempts per namespace
	bySub   map[string]int // running attempts per subscription (namespace/name)
	wakes   []wakeTarget
}

// wakeTarget is one controller's queue and which events are its own.
type wakeTarget struct {
	mine  predicate.Predicate
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// NewExecutor returns an executor; workers and perNamespace default when not positive.
func NewExecutor(workers, perNamespace int, clk clock.PassiveClock) *Executor {
	if workers <= 0 {
		workers = DefaultExecutorWorkers
	}
	if perNamespace <= 0 {
		perNamespace = DefaultExecutorWorkersPerNamespace
	}
	return &Executor{workers: workers, perNamespace: min(perNamespace, workers), clock: clk,
		tasks: map[AttemptKey]*task{}, queues: map[string][]*task{}, active: map[string]int{}, bySub: map[string]int{}}
}

// NeedLeaderElection: attempts are made for the controllers, which run on the leader.
func (e *Executor) NeedLeaderElection() bool { return true }

// Start runs attempts until ctx ends, then waits for those in flight (ctx cancels them)
// and forgets everything: the next leader makes what was not recorded again.
func (e *Executor) Start(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	e.schedule()
	e.mu.Unlock()

	tick := time.NewTicker(handedKeep)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			e.sweep()
		case <-ctx.Done():
			e.wg.Wait()
			e.mu.Lock()
			e.tasks, e.queues, e.turns, e.next, e.active, e.bySub = map[AttemptKey]*task{}, map[string][]*task{}, nil, 0, map[string]int{}, map[string]int{}
			e.mu.Unlock()
			executorWaiting.Set(0)
			return nil
		}
	}
}

// attempt returns what is known of key: its outcome once it ended (kept handedKeep
// after a pass first took it; later the attempt is made again), or when it was handed
// over while it waits or runs. An unknown key is handed over now, to run as run; wake is
// the object whose controllers learn when it ends.
func (e *Executor) attempt(key AttemptKey, wake client.Object, run func(context.Context) attempt) attemptState {
	return e.attemptWithin(key, 0, wake, run)
}

// attemptWithin is attempt, with at most limit attempts of key's subscription running at
// once (0: no bound but the namespace's); the others wait their turn, in order.
func (e *Executor) attemptWithin(key AttemptKey, limit int, wake client.Object, run func(context.Context) attempt) attemptState {
	e.mu.Lock()
	defer e.mu.Unlock()
	if t, ok := e.tasks[key]; ok {
		if t.done {
			if t.handed.IsZero() {
				t.handed = e.clock.Now()
			}
			return attemptState{done: true, outcome: t.outcome, submitted: t.submitted}
		}
		return attemptState{submitted: t.submitted}
	}
	t := &task{key: key, wake: wake, run: run, limit: limit, submitted: e.clock.Now()}
	e.tasks[key] = t
	ns := key.Event.Namespace
	if len(e.queues[ns]) == 0 {
		e.turns = append(e.turns, ns)
	}
	e.queues[ns] = append(e.queues[ns], t)
	executorWaiting.Inc()
	e.schedule()
	return attemptState{submitted: t.submitted}
}

// schedule starts waiting attempts while there are free workers, namespace by namespace
// in turn, skipping those at their cap. e.mu is held.
func (e *Executor) schedule() {
	if e.ctx == nil || e.ctx.Err() != nil {
		return
	}
	for e.running < e.workers {
		t := e.pop()
		if t == nil {
			return
		}
		e.running++
		e.active[t.key.Event.Namespace]++
		e.bySub[subOf(t.key)]++
		t.started = e.clock.Now()
		executorWaiting.Dec()
		executorRunning.Inc()
		e.wg.Add(1)
		go e.execute(e.ctx, t)
	}
}

// subOf is the subscription of an attempt, namespace/name.
func subOf(k AttemptKey) string { return k.Event.Namespace + "/" + k.Subscription }

// pop takes the first waiting attempt of the next namespace in turn that is below its
// cap (whose subscription is below its own), and moves the turn past that namespace.
// e.mu is held.
func (e *Executor) pop() *task {
	for i := range e.turns {
		at := (e.next + i) % len(e.turns)
		ns := e.turns[at]
		if e.active[ns] >= e.perNamespace {
			continue
		}
		q := e.queues[ns]
		j := slices.IndexFunc(q, func(t *task) bool { return t.limit <= 0 || e.bySub[subOf(t.key)] < t.limit })
		if j < 0 {
			continue
		}
		t := q[j]
		if q = slices.Delete(q, j, j+1); len(q) == 0 {
			delete(e.queues, ns)
			e.turns = slices.Delete(e.turns, at, at+1)
			e.next = at // the namespace after it moved into its place
		} else {
			e.queues[ns] = q
			e.next = at + 1
		}
		if len(e.turns) == 0 {
			e.next = 0
		} else {
			e.next %= len(e.turns)
		}
		return t
	}
	return nil
}

// execute runs one attempt and keeps its outcome for the event's next pass, which it
// wakes. Once ctx ended the outcome can no longer be recorded and is dropped.
func (e *Executor) execute(ctx context.Context, t *task) {
	defer e.wg.Done()
	out := t.run(ctx)

	e.mu.Lock()
	e.running--
	ns := t.key.Event.Namespace
	if e.active[ns]--; e.active[ns] == 0 {
		delete(e.active, ns)
	}
	if sub := subOf(t.key); e.bySub[sub] <= 1 {
		delete(e.bySub, sub)
	} else {
		e.bySub[sub]--
	}
	executorRunning.Dec()
	stopped := ctx.Err() != nil
	if stopped {
		delete(e.tasks, t.key)
	} else {
		t.done, t.outcome, t.ended, t.run = true, out, e.clock.Now(), nil
	}
	e.schedule()
	wakes := slices.Clone(e.wakes)
	e.mu.Unlock()

	if stopped {
		return
	}
	wakeUp(wakes, t.wake)
}

// wake tells the controllers whose event obj is that it has work.
func (e *Executor) wake(obj client.Object) {
	e.mu.Lock()
	wakes := slices.Clone(e.wakes)
	e.mu.Unlock()
	wakeUp(wakes, obj)
}

func wakeUp(wakes []wakeTarget, obj client.Object) {
	for _, w := range wakes {
		if w.mine.Generic(event.GenericEvent{Object: obj}) {
			w.queue.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
		}
	}
}

// sweep forgets outcomes taken by a pass, and those no pass came for (the event was
// deleted, replayed or finished otherwise), so they do not pile up.
func (e *Executor) sweep() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	for k, t := range e.tasks {
		if t.done && (now.Sub(t.ended) > outcomeKeep || (!t.handed.IsZero() && now.Sub(t.handed) > handedKeep)) {
			delete(e.tasks, k)
		}
	}
}

// Source is a watch source for one event controller: it enqueues the events that mine
// admits when one of their attempts ends.
func (e *Executor) Source(mine predicate.Predicate) source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.wakes = append(e.wakes, wakeTarget{mine: mine, queue: q})
		return nil
	})
}
