package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// ackBody is the answer that acknowledges an event (design.md §4). Funnel
// treats anything else as a failure and retries, so only this counts.
const ackBody = "Funnel Event Received"

const (
	// maxAnswerBytes bounds how much of an answer is kept: the receiver's
	// answers are one short line.
	maxAnswerBytes = 4 << 10
	// maxDrainBytes is how much of a longer answer is read and dropped so
	// that the connection can be reused.
	maxDrainBytes = 64 << 10
	userAgent     = "kubectl-funnel"
)

// requestAuth is how a receiver authenticates requests, with the secrets
// resolved: a token, an HMAC key, both or neither.
type requestAuth struct {
	// TokenHeader carries "Bearer <Token>" when Token is set.
	TokenHeader string
	Token       string
	// HMACHeader carries "<algorithm>=<hex HMAC of the body>" when HMACKey
	// is set.
	HMACHeader    string
	HMACKey       []byte
	HMACAlgorithm funnelv1.HMACAlgorithm
}

// apply sets the authentication headers of a request carrying body.
func (a requestAuth) apply(h http.Header, body []byte) {
	if a.Token != "" {
		h.Set(a.TokenHeader, "Bearer "+a.Token)
	}
	if a.HMACKey != nil {
		h.Set(a.HMACHeader, signature(a.HMACAlgorithm, a.HMACKey, body))
	}
}

// signature is "sha256=<hex>" (or sha512) of the exact body, the form
// GitHub-style senders use and the receiver accepts.
func signature(algo funnelv1.HMACAlgorithm, key, body []byte) string {
	newHash := sha256.New
	if algo == funnelv1.HMACSHA512 {
		newHash = sha512.New
	} else {
		algo = funnelv1.HMACSHA256
	}
	return string(algo) + "=" + hex.EncodeToString(mac(newHash, key, body))
}

func mac(newHash func() hash.Hash, key, body []byte) []byte {
	m := hmac.New(newHash, key)
	m.Write(body)
	return m.Sum(nil)
}

// webhookURL returns base with path appended when base has no path of its
// own, so that --url can be just the receiver's address. path "" means no
// default is known, and base must then name the endpoint in full.
func webhookURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("invalid URL %q (want an absolute http:// or https:// URL, e.g. http://127.0.0.1:8080): %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("URL %q must be absolute, http:// or https://, e.g. http://127.0.0.1:8080", base)
	}
	if u.Path == "" || u.Path == "/" {
		if path == "" {
			return "", fmt.Errorf("URL %q has no path and no FunnelReceiver gives one: add the webhook path, e.g. %s/webhooks/default/funnel", base, strings.TrimSuffix(base, "/"))
		}
		u.Path, u.RawPath = path, ""
	}
	return u.String(), nil
}

// sender posts webhook bodies the way Funnel does: POST, JSON, one event per
// request, a deadline per request.
type sender struct {
	client  *http.Client
	url     string
	auth    requestAuth
	timeout time.Duration
}

// newHTTPClient returns a client that keeps up to conns connections alive,
// so a load run measures the receiver rather than TCP set-up, and that does
// not follow redirects: a 3xx is an answer to report, and following it would
// turn the POST into a GET.
func newHTTPClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = conns
	t.MaxIdleConnsPerHost = conns
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// result is the outcome of one request.
type result struct {
	// Status is the HTTP status, 0 when no answer came (Err is then set).
	Status int
	// Body is the start of the answer, at most maxAnswerBytes.
	Body    string
	Latency time.Duration
	Err     error
}

// acknowledged reports whether the receiver confirmed the event: 200 with
// exactly ackBody.
func (r result) acknowledged() bool {
	return r.Err == nil && r.Status == http.StatusOK && r.Body == ackBody
}

// post sends body once.
func (s *sender) post(ctx context.Context, body []byte) result {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return result{Err: fmt.Errorf("building the request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	s.auth.apply(req.Header, body)

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return result{Latency: time.Since(start), Err: s.requestError(ctx, err)}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	latency := time.Since(start)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBytes))
	if err != nil {
		return result{Status: resp.StatusCode, Latency: latency, Err: fmt.Errorf("reading the answer: %w", s.requestError(ctx, err))}
	}
	return result{Status: resp.StatusCode, Body: string(answer), Latency: latency}
}

// requestError makes a transport error short and precise: without the
// "Post <url>:" prefix every error repeats, and a timeout says which.
func (s *sender) requestError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("no answer within --timeout %s: %w", s.timeout, context.DeadlineExceeded)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// sendCopies sends body k times at once, as a retrying Funnel or two
// replicas of a load balancer might, and returns the results in order.
func (s *sender) sendCopies(ctx context.Context, body []byte, k int) []result {
	if k <= 1 {
		return []result{s.post(ctx, body)}
	}
	results := make([]result, k)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = s.post(ctx, body) })
	}
	wg.Wait()
	return results
}

// load describes a load run.
type load struct {
	// Count events are sent, each Duplicate times concurrently, by
	// Concurrency workers.
	Count, Concurrency, Duplicate int
	// Next returns the next event's body. It is called from one goroutine
	// only, in order, so a seeded generator gives the same run every time.
	Next func() ([]byte, error)
}

// runLoad sends l.Count events and returns what happened. Cancelling ctx
// stops it: no new event is started, requests in flight are aborted, and
// the report (Interrupted set) covers what was sent. It returns only once
// every goroutine it started has finished. The error is a failure to make a
// body; HTTP failures are in the report.
func runLoad(ctx context.Context, s *sender, l load) (*report, error) {
	jobs := make(chan []byte)
	rep := newReport()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	start := time.Now()
	for range max(l.Concurrency, 1) {
		wg.Go(func() {
			for body := range jobs {
				results := s.sendCopies(ctx, body, l.Duplicate)
				mu.Lock()
				rep.add(results)
				mu.Unlock()
			}
		})
	}

	var genErr error
produce:
	for i := range l.Count {
		if ctx.Err() != nil {
			break
		}
		body, err := l.Next()
		if err != nil {
			genErr = fmt.Errorf("making event %d: %w", i+1, err)
			break
		}
		select {
		case jobs <- body:
		case <-ctx.Done():
			break produce
		}
	}
	close(jobs)
	wg.Wait()
	rep.Elapsed = time.Since(start)
	rep.Interrupted = ctx.Err() != nil
	return rep, genErr
}

// report sums up the results of a run.
type report struct {
	// Events counts events whose copies have all been answered or failed.
	Events int
	// Sent counts requests, Acknowledged those answered 200 with exactly
	// ackBody.
	Sent, Acknowledged int
	// ByStatus counts requests per HTTP status.
	ByStatus map[int]int
	// Errors counts requests that got no HTTP answer.
	Errors int
	// Failures counts requests that were not acknowledged, per reason.
	Failures map[string]int
	// Latencies are those of requests that were answered.
	Latencies   []time.Duration
	Elapsed     time.Duration
	Interrupted bool
}

func newReport() *report {
	return &report{ByStatus: map[int]int{}, Failures: map[string]int{}}
}

// add records the results of the copies of one event.
func (r *report) add(results []result) {
	r.Events++
	for _, res := range results {
		r.Sent++
		if res.Status != 0 {
			r.ByStatus[res.Status]++
			r.Latencies = append(r.Latencies, res.Latency)
		}
		if res.Err != nil && res.Status == 0 {
			r.Errors++
		}
		if res.acknowledged() {
			r.Acknowledged++
		} else {
			r.Failures[failureReason(res)]++
		}
	}
}

// NotAcknowledged counts requests that Funnel would have retried.
func (r *report) NotAcknowledged() int { return r.Sent - r.Acknowledged }

// failureReason says in one line why a request was not acknowledged.
func failureReason(res result) string {
	switch {
	case res.Err != nil && res.Status == 0:
		return res.Err.Error()
	case res.Err != nil:
		return fmt.Sprintf("%d, then %v", res.Status, res.Err)
	case res.Status == http.StatusOK:
		return fmt.Sprintf("200 but the body is %q, not exactly %q", snippet(res.Body), ackBody)
	default:
		return fmt.Sprintf("%d %s: %s", res.Status, http.StatusText(res.Status), snippet(res.Body))
	}
}

// snippet makes an answer body fit one line of a summary.
func snippet(s string) string {
	const maxRunes = 120
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	if r := []rune(s); len(r) > maxRunes {
		return string(r[:maxRunes-1]) + "…"
	}
	return s
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// roundDuration keeps three significant digits or so, for tables.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// maxFailureLines bounds the distinct failure reasons a summary lists.
const maxFailureLines = 5

// write prints the summary table of a run against target.
func (r *report) write(w io.Writer, target string, duplicate int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }

	row("Target:", "%s", target)
	if duplicate > 1 {
		row("Sent:", "%d requests (%d events × %d copies)", r.Sent, r.Events, duplicate)
	} else {
		row("Sent:", "%d requests", r.Sent)
	}
	row("Acknowledged:", "%d", r.Acknowledged)
	row("Not acknowledged:", "%d", r.NotAcknowledged())
	codes := make([]int, 0, len(r.ByStatus))
	for code := range r.ByStatus {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	var byCode []string
	for _, code := range codes {
		byCode = append(byCode, fmt.Sprintf("%d×%d", code, r.ByStatus[code]))
	}
	if len(byCode) == 0 {
		byCode = []string{"none"}
	}
	row("Status codes:", "%s", strings.Join(byCode, "  "))
	row("Errors (no answer):", "%d", r.Errors)
	secs := r.Elapsed.Seconds()
	if secs > 0 {
		row("Rate:", "%.1f events/s, %.1f requests/s over %s", float64(r.Events)/secs, float64(r.Sent)/secs, roundDuration(r.Elapsed))
	}
	lat := slices.Clone(r.Latencies)
	slices.Sort(lat)
	if len(lat) > 0 {
		row("Latency:", "p50 %s  p95 %s  p99 %s  max %s",
			roundDuration(percentile(lat, 50)), roundDuration(percentile(lat, 95)),
			roundDuration(percentile(lat, 99)), roundDuration(lat[len(lat)-1]))
	}
	if r.Interrupted {
		row("Interrupted:", "yes, before every event was sent")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(r.Failures) == 0 {
		return nil
	}
	reasons := make([]string, 0, len(r.Failures))
	for reason := range r.Failures {
		reasons = append(reasons, reason)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if ci, cj := r.Failures[reasons[i]], r.Failures[reasons[j]]; ci != cj {
			return ci > cj
		}
		return reasons[i] < reasons[j]
	})
	fmt.Fprintln(w, "Failures:")
	for i, reason := range reasons {
		if i == maxFailureLines {
			fmt.Fprintf(w, "  … and %d more reasons\n", len(reasons)-maxFailureLines)
			break
		}
		fmt.Fprintf(w, "  %6d×  %s\n", r.Failures[reason], reason)
	}
	return nil
}
