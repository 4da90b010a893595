package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// answerTimeout is how long the bench waits for an answer: longer than the 4 s the
// receiver promises, so a late answer is seen and counted rather than cut off.
const answerTimeout = 10 * time.Second

// outcome is what happened to one request (an HTTP POST, or a direct create).
type outcome struct {
	it item
	// status is the HTTP status (for creates: 201, or the API error's code); 0 when no
	// answer came.
	status  int
	ack     bool
	err     error
	start   time.Time
	latency time.Duration
}

// poster POSTs webhook bodies the way Funnel does (api/funnel/send), without retries.
type poster struct{ s *send.Sender }

func newPoster(url, token string, conns int) *poster {
	return &poster{s: &send.Sender{URLs: []string{url}, Auth: send.Auth{Token: token}, Timeout: answerTimeout, Client: send.NewClient(conns)}}
}

func (p *poster) close() { p.s.Client.CloseIdleConnections() }

// post sends one body and reads the answer.
func (p *poster) post(ctx context.Context, it item) outcome {
	a := p.s.Post(ctx, p.s.URLs[0], it.body, nil)
	o := outcome{it: it, status: a.Code, ack: a.Acknowledged(), err: a.Err, start: a.Start, latency: a.Duration}
	if !o.ack && o.err == nil {
		o.err = errors.New(a.Failure())
	}
	return o
}

// tally sums up the outcomes of a run.
type tally struct {
	mu sync.Mutex

	sent, acked, ackedDups int
	byStatus               map[int]int
	noAnswer               int
	// reasons counts failures by reason (a few examples of each kind).
	reasons   map[string]int
	latencies []time.Duration
	// ackedNames are the FunnelEvent names of acknowledged requests, in order.
	ackedNames []string
	elapsed    time.Duration
	// onAck, when set, is called for every acknowledged outcome (under the lock).
	onAck func(o outcome)
}

func newTally() *tally { return &tally{byStatus: map[int]int{}, reasons: map[string]int{}} }

func (t *tally) add(o outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent++
	if o.status != 0 {
		t.byStatus[o.status]++
		t.latencies = append(t.latencies, o.latency)
	} else {
		t.noAnswer++
	}
	if o.ack {
		t.acked++
		if o.it.dup {
			t.ackedDups++
		}
		t.ackedNames = append(t.ackedNames, o.it.name)
		if t.onAck != nil {
			t.onAck(o)
		}
		return
	}
	reason := "unknown"
	if o.err != nil {
		reason = o.err.Error()
	}
	if len(t.reasons) < 50 || t.reasons[reason] > 0 {
		t.reasons[reason]++
	}
}

// merge adds the counts of o, a later run of the same level, to t.
func (t *tally) merge(o *tally) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent, t.acked, t.ackedDups, t.noAnswer = t.sent+o.sent, t.acked+o.acked, t.ackedDups+o.ackedDups, t.noAnswer+o.noAnswer
	for k, v := range o.byStatus {
		t.byStatus[k] += v
	}
	for k, v := range o.reasons {
		t.reasons[k] += v
	}
	t.latencies = append(t.latencies, o.latencies...)
	t.ackedNames = append(t.ackedNames, o.ackedNames...)
	t.elapsed += o.elapsed
}

// latencyStats are percentiles of answer times, in seconds.
type latencyStats struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func statsOf(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return latencyStats{
		P50: percentile(s, 50).Seconds(),
		P95: percentile(s, 95).Seconds(),
		P99: percentile(s, 99).Seconds(),
		Max: s[len(s)-1].Seconds(),
	}
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted))*p/100)) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// runClosed runs conc workers that each do one request after the other for dur (a
// closed loop: the next request starts when the previous answer came), and returns the
// tally. Requests in flight at the end finish and count.
func runClosed(ctx context.Context, conc int, dur time.Duration, items <-chan item, do func(context.Context, item) outcome, t *tally) error {
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				it, ok := <-items
				if !ok {
					return
				}
				t.add(do(ctx, it))
			}
		})
	}
	wg.Wait()
	t.elapsed = time.Since(start)
	return ctx.Err()
}

// runOpen sends at a fixed arrival rate for dur, whatever the answers (an open loop):
// arrival i is due at start + i/rate. At most maxInFlight requests are in flight; an
// arrival past that is not sent and counted in dropped. Returns after every request
// has been answered.
func runOpen(ctx context.Context, rate float64, dur time.Duration, maxInFlight int, items <-chan item, do func(context.Context, item) outcome, t *tally) (dropped int, err error) {
	start := time.Now()
	n := int(math.Round(rate * dur.Seconds()))
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	for i := range n {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			break
		}
		it, ok := <-items
		if !ok {
			break
		}
		select {
		case sem <- struct{}{}:
		default:
			dropped++
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			t.add(do(ctx, it))
		})
	}
	wg.Wait()
	t.elapsed = time.Since(start)
	return dropped, ctx.Err()
}

// topReasons returns up to n failure reasons, most frequent first, as "count× reason".
func topReasons(m map[string]int, n int) []string {
	keys := sortedKeys(m)
	slices.SortStableFunc(keys, func(a, b string) int { return m[b] - m[a] })
	var out []string
	for i, k := range keys {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", m[k], k))
	}
	return out
}
