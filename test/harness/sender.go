package harness

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
)

// FunnelTimeout is how long Funnel waits for an answer.
const FunnelTimeout = 5 * time.Second

// Events returns n realistic bodies, cycling through the documented event types in their
// natural envelopes; the same seed gives the same bodies (times aside).
func Events(seed uint64, n int) ([][]byte, error) {
	g := synth.New(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
	types := synth.Types()
	out := make([][]byte, 0, n)
	for i := range n {
		b, err := g.Event(types[i%len(types)], "")
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// EventName is the FunnelEvent name the receiver gives body ("" if it does not parse).
func EventName(body []byte) string {
	env, err := funnel.Parse(body)
	if err != nil {
		return ""
	}
	return env.ObjectName(body)
}

// Attempt is one HTTP request of a send.
type Attempt struct {
	// URL the request went to.
	URL string
	// Code is the status code (0 when there was no answer: Err says why).
	Code int
	Err  error
	// Start and Duration: when it was sent and how long the answer took.
	Start    time.Time
	Duration time.Duration
	// RetryAfter is the answer's Retry-After header, if any.
	RetryAfter string
	Body       string
}

// Result is everything that happened to one event.
type Result struct {
	// Event is the FunnelEvent name the body maps to.
	Event    string
	Attempts []Attempt
}

// Acked reports whether some attempt got the 200.
func (r Result) Acked() bool {
	return slices.ContainsFunc(r.Attempts, func(a Attempt) bool { return a.Code == http.StatusOK })
}

// Sender posts events to receivers like Funnel does: the receiver's token (Authorization:
// Bearer) and HMAC (X-Funnel-Signature: sha256=<hex>), a 5 s timeout, and up to Retries
// more attempts on anything but 200, after RetryDelay(n) (by default the answer's
// Retry-After, else 1 s, 2 s, 4 s).
type Sender struct {
	// URLs are the receiver URLs; attempts go round-robin over them (one replica per URL).
	URLs []string
	// Token and HMACKey authenticate; empty ones are not sent.
	Token   string
	HMACKey []byte
	// Retries after the first attempt (Funnel: 3); 0 means none.
	Retries int
	// RetryDelay is the wait before retry n (1-based), given the last attempt.
	RetryDelay func(n int, last Attempt) time.Duration
	// Timeout per attempt; FunnelTimeout when 0.
	Timeout time.Duration
	// Client is the HTTP client; a fresh one with keep-alives when nil.
	Client *http.Client
	// OnAttempt, when set, is called after every attempt (from the sending goroutine).
	OnAttempt func(event string, a Attempt)

	once sync.Once
	next uint64
	mu   sync.Mutex
}

// FunnelRetries is how many times Funnel retries an event that was not acknowledged.
const FunnelRetries = 3

func (s *Sender) init() {
	s.once.Do(func() {
		if s.Client == nil {
			s.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 0}}
		}
		if s.Timeout == 0 {
			s.Timeout = FunnelTimeout
		}
		if s.RetryDelay == nil {
			s.RetryDelay = DefaultRetryDelay
		}
	})
}

// DefaultRetryDelay honours Retry-After (in seconds), else waits 1 s, 2 s, 4 s.
func DefaultRetryDelay(n int, last Attempt) time.Duration {
	if s, err := strconv.Atoi(last.RetryAfter); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Second << (n - 1)
}

func (s *Sender) url() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.URLs[s.next%uint64(len(s.URLs))]
	s.next++
	return u
}

// Send posts body until it is acknowledged or the retries are used up.
func (s *Sender) Send(ctx context.Context, body []byte) Result {
	s.init()
	res := Result{Event: EventName(body)}
	for n := 0; ; n++ {
		a := s.Post(ctx, s.url(), body, nil)
		res.Attempts = append(res.Attempts, a)
		if s.OnAttempt != nil {
			s.OnAttempt(res.Event, a)
		}
		if a.Code == http.StatusOK || n >= s.Retries || ctx.Err() != nil {
			return res
		}
		select {
		case <-ctx.Done():
			return res
		case <-time.After(s.RetryDelay(n+1, a)):
		}
	}
}

// Post makes one authenticated attempt to url; header adds or overrides headers.
func (s *Sender) Post(ctx context.Context, url string, body []byte, header http.Header) Attempt {
	s.init()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	a := Attempt{URL: url, Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.Err = err
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	if len(s.HMACKey) > 0 {
		req.Header.Set("X-Funnel-Signature", "sha256="+Sign(s.HMACKey, body))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		a.Duration, a.Err = time.Since(a.Start), err
		return a
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	a.Duration, a.Code, a.RetryAfter, a.Body = time.Since(a.Start), resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
	return a
}

// Sign is the hex HMAC-SHA256 of body.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// SendAll sends every body with up to concurrency sends at once and returns the results
// in the order of bodies.
func (s *Sender) SendAll(ctx context.Context, bodies [][]byte, concurrency int) []Result {
	out := make([]Result, len(bodies))
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(concurrency, 1) {
		wg.Go(func() {
			for i := range work {
				out[i] = s.Send(ctx, bodies[i])
			}
		})
	}
	for i := range bodies {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return out
}

// Acknowledged returns the names of the events that got a 200.
func Acknowledged(results []Result) map[string]bool {
	out := map[string]bool{}
	for _, r := range results {
		if r.Acked() {
			out[r.Event] = true
		}
	}
	return out
}

// Requests counts the HTTP requests made.
func Requests(results []Result) int {
	n := 0
	for _, r := range results {
		n += len(r.Attempts)
	}
	return n
}

// Percentile returns the p-th percentile (0 < p <= 100, nearest rank) of ds.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Codes counts the attempts per status code ("error" for no answer).
func Codes(results []Result) map[string]int {
	out := map[string]int{}
	for _, r := range results {
		for _, a := range r.Attempts {
			k := strconv.Itoa(a.Code)
			if a.Code == 0 {
				k = "error"
			}
			out[k]++
		}
	}
	return out
}

// String summarises an attempt for failure messages.
func (a Attempt) String() string {
	if a.Code == 0 {
		return fmt.Sprintf("%s after %s: %v", a.Start.Format("15:04:05.000"), a.Duration.Round(time.Millisecond), a.Err)
	}
	return fmt.Sprintf("%s after %s: %d %s", a.Start.Format("15:04:05.000"), a.Duration.Round(time.Millisecond), a.Code, bytes.TrimSpace([]byte(a.Body)))
}
