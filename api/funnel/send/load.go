package send

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load shapes a load run.
type Load struct {
	// Concurrency is how many events are in flight at once: in a closed loop each of
	// Concurrency workers starts its next event when the last one is done; in an open loop
	// (Rate > 0) it bounds the events in flight, and an arrival beyond it is dropped.
	// At least 1.
	Concurrency int
	// Rate, when positive, makes an open loop: event i starts i/Rate seconds after the
	// start, whatever the answers.
	Rate float64
	// Count ends the run after Count events, Duration once Duration has passed (the events
	// in flight then finish); 0 is no bound. A run with neither ends with ctx or the
	// values.
	Count    int
	Duration time.Duration
}

// Stats say how a run went.
type Stats struct {
	// Started counts the events handed over; Dropped the open loop's arrivals that found
	// Concurrency events in flight.
	Started, Dropped int
	// Elapsed is from the start until the last event was done.
	Elapsed time.Duration
	// Interrupted is set when ctx ended the run.
	Interrupted bool
}

// lookahead is how many values are made ahead of the workers, so that what a run measures
// is the sending, not the making.
const lookahead = 1024

// Run hands the values of next to do, in the shape of l, and returns once every do has
// returned. next is called from one goroutine, in order (a seeded generator gives the
// same run every time); its first error ends the run and is returned, after the values
// made before it were handed over. Cancelling ctx ends the run early: no event is started
// after it, and do should abort what is in flight.
func Run[T any](ctx context.Context, l Load, next func() (T, error), do func(context.Context, T)) (Stats, error) {
	n := l.Count
	if l.Rate > 0 && l.Duration > 0 {
		if arrivals := int(math.Round(l.Rate * l.Duration.Seconds())); n <= 0 || arrivals < n {
			n = arrivals
		}
	}
	makeCtx, stop := context.WithCancel(ctx)
	defer stop()
	values := make(chan T, lookahead)
	var makeErr error
	made := make(chan struct{})
	go func() {
		defer close(made)
		defer close(values)
		for i := 0; n <= 0 || i < n; i++ {
			v, err := next()
			if err != nil {
				makeErr = fmt.Errorf("making event %d: %w", i+1, err)
				return
			}
			select {
			case values <- v:
			case <-makeCtx.Done():
				return
			}
		}
	}()

	var st Stats
	start := time.Now()
	if l.Rate > 0 {
		st.Started, st.Dropped = openLoop(ctx, l, start, values, do)
	} else {
		st.Started = closedLoop(ctx, l, start, values, do)
	}
	st.Elapsed = time.Since(start)
	st.Interrupted = ctx.Err() != nil
	stop()
	<-made
	return st, makeErr
}

// closedLoop runs l.Concurrency workers that each take the next value once the last is
// done, until the values end, l.Duration passes or ctx ends.
func closedLoop[T any](ctx context.Context, l Load, start time.Time, values <-chan T, do func(context.Context, T)) int {
	var started atomic.Int64
	var wg sync.WaitGroup
	for range max(l.Concurrency, 1) {
		wg.Go(func() {
			for ctx.Err() == nil && (l.Duration <= 0 || time.Since(start) < l.Duration) {
				select {
				case v, ok := <-values:
					if !ok || ctx.Err() != nil {
						return
					}
					started.Add(1)
					do(ctx, v)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	wg.Wait()
	return int(started.Load())
}

// openLoop starts value i at start + i/l.Rate, at most l.Concurrency at once.
func openLoop[T any](ctx context.Context, l Load, start time.Time, values <-chan T, do func(context.Context, T)) (started, dropped int) {
	inFlight := make(chan struct{}, max(l.Concurrency, 1))
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return started, dropped
			case <-t.C:
			}
		}
		var v T
		var ok bool
		select {
		case v, ok = <-values:
		case <-ctx.Done():
		}
		if !ok || ctx.Err() != nil {
			return started, dropped
		}
		select {
		case inFlight <- struct{}{}:
		default:
			dropped++
			continue
		}
		started++
		wg.Go(func() {
			defer func() { <-inFlight }()
			do(ctx, v)
		})
	}
}

// Report sums up the attempts of a run. Add and Merge are safe for concurrent use; read
// the fields once the run is over.
type Report struct {
	mu sync.Mutex
	// Sent counts attempts, Acknowledged those answered 200 with exactly funnel.AckBody.
	Sent, Acknowledged int
	// ByStatus counts attempts per HTTP status, NoAnswer those that got none.
	ByStatus map[int]int
	NoAnswer int
	// Failures counts the attempts not acknowledged per reason (Attempt.Failure); past
	// maxReasons distinct reasons, only those already seen are counted.
	Failures map[string]int
	// Latencies are those of the attempts that were answered.
	Latencies []time.Duration
}

const maxReasons = 50

// NewReport returns an empty report.
func NewReport() *Report {
	return &Report{ByStatus: map[int]int{}, Failures: map[string]int{}}
}

// Add counts the attempts of res.
func (r *Report) Add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range res.Attempts {
		r.Sent++
		if a.Code != 0 {
			r.ByStatus[a.Code]++
			r.Latencies = append(r.Latencies, a.Duration)
		} else {
			r.NoAnswer++
		}
		if a.Acknowledged() {
			r.Acknowledged++
		} else if reason := a.Failure(); len(r.Failures) < maxReasons || r.Failures[reason] > 0 {
			r.Failures[reason]++
		}
	}
}

// Merge adds the counts of o.
func (r *Report) Merge(o *Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Sent, r.Acknowledged, r.NoAnswer = r.Sent+o.Sent, r.Acknowledged+o.Acknowledged, r.NoAnswer+o.NoAnswer
	for k, v := range o.ByStatus {
		r.ByStatus[k] += v
	}
	for k, v := range o.Failures {
		r.Failures[k] += v
	}
	r.Latencies = append(r.Latencies, o.Latencies...)
}

// NotAcknowledged counts the attempts Funnel would have retried.
func (r *Report) NotAcknowledged() int { return r.Sent - r.Acknowledged }

// TopFailures returns up to n failure reasons, most frequent first, as "count× reason".
func (r *Report) TopFailures(n int) []string {
	reasons := make([]string, 0, len(r.Failures))
	for reason := range r.Failures {
		reasons = append(reasons, reason)
	}
	slices.SortFunc(reasons, func(a, b string) int {
		if d := r.Failures[b] - r.Failures[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	out := make([]string, 0, min(n, len(reasons)))
	for _, reason := range reasons[:min(n, len(reasons))] {
		out = append(out, fmt.Sprintf("%d× %s", r.Failures[reason], reason))
	}
	return out
}

// Latency are nearest-rank percentiles of durations.
type Latency struct {
	P50, P95, P99, Max time.Duration
}

// LatencyOf returns the percentiles of ds (zero when ds is empty).
func LatencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration {
		return s[min(max(int(math.Ceil(float64(len(s))*p/100))-1, 0), len(s)-1)]
	}
	return Latency{P50: at(50), P95: at(95), P99: at(99), Max: s[len(s)-1]}
}
