package send

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/funnel-operator/funnel-operator/api/funnel"
)

const (
	// FunnelTimeout is how long Funnel waits for an answer before it counts a failure.
	FunnelTimeout = 5 * time.Second
	// FunnelRetries is how many times Funnel retries an event that was not acknowledged
	// (4 attempts in all).
	FunnelRetries = 3

	// The FunnelReceiver's default headers (spec.auth.token.header, spec.auth.hmac.header).
	defaultTokenHeader = "Authorization"
	defaultHMACHeader  = "X-Funnel-Signature"

	// maxAnswerBytes bounds how much of an answer is kept: the receiver's answers are one
	// short line.
	maxAnswerBytes = 4 << 10
	// maxDrainBytes of a longer answer are read and dropped so that the connection can be
	// reused.
	maxDrainBytes = 64 << 10
)

// Auth is how a receiver authenticates requests, with the secrets resolved: a token, an
// HMAC key, both or neither.
type Auth struct {
	// Token, when set, is sent as "<TokenHeader>: Bearer <Token>".
	Token string
	// TokenHeader is Authorization when empty.
	TokenHeader string
	// HMACKey, when set, signs the exact body: "<HMACHeader>: <algorithm>=<hex HMAC>".
	HMACKey []byte
	// HMACHeader is X-Funnel-Signature when empty.
	HMACHeader string
	// HMACAlgorithm is funnel.HMACSHA256 (also when empty) or funnel.HMACSHA512.
	HMACAlgorithm string
}

// Apply sets the authentication headers of a request carrying body.
func (a Auth) Apply(h http.Header, body []byte) {
	if a.Token != "" {
		h.Set(or(a.TokenHeader, defaultTokenHeader), "Bearer "+a.Token)
	}
	if len(a.HMACKey) > 0 {
		h.Set(or(a.HMACHeader, defaultHMACHeader), funnel.Signature(a.HMACAlgorithm, a.HMACKey, body))
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// NewClient returns an HTTP client that keeps up to conns connections alive, so a load
// run measures the receiver rather than TCP set-up, and that does not follow redirects:
// a 3xx is an answer to report (never an acknowledgement), and following it would turn
// the POST into a GET.
func NewClient(conns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = conns, conns
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Sender posts webhook bodies like Funnel: POST, application/json, one event per request,
// a deadline per attempt, and up to Retries more attempts for an event that was not
// acknowledged. Use it by pointer; it is safe for concurrent use.
type Sender struct {
	// URLs are the receiver's webhook URLs; attempts go round-robin over them (one per
	// replica, say).
	URLs []string
	// Auth authenticates every attempt.
	Auth Auth
	// Timeout bounds each attempt; FunnelTimeout when 0.
	Timeout time.Duration
	// Retries are the attempts after a first one that was not acknowledged (Funnel makes
	// FunnelRetries); 0 means none.
	Retries int
	// RetryDelay is the wait before retry n (1-based) after the attempt last;
	// RetryAfterOrBackoff when nil.
	RetryDelay func(n int, last Attempt) time.Duration
	// Client sends the requests; NewClient(64) when nil.
	Client *http.Client
	// UserAgent, when set, is sent as User-Agent.
	UserAgent string
	// OnAttempt, when set, is called after every attempt, from the sending goroutine.
	OnAttempt func(event string, a Attempt)

	once sync.Once
	next atomic.Uint64
}

func (s *Sender) init() {
	s.once.Do(func() {
		if s.Client == nil {
			s.Client = NewClient(64)
		}
	})
}

// RetryAfterOrBackoff honours the answer's Retry-After (in seconds), else waits 1 s, 2 s,
// 4 s: Funnel documents its retry count, not its schedule.
func RetryAfterOrBackoff(n int, last Attempt) time.Duration {
	if s, err := strconv.Atoi(last.RetryAfter); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Second << (n - 1)
}

// Attempt is one HTTP request.
type Attempt struct {
	URL string
	// Code is the HTTP status, 0 when no answer came (Err says why).
	Code int
	// Body is the start of the answer (at most 4 KiB).
	Body string
	// RetryAfter is the answer's Retry-After header, if any.
	RetryAfter string
	// Err is why no answer, or no whole answer, came.
	Err error
	// Start is when the request was sent; Duration how long until the answer was read.
	Start    time.Time
	Duration time.Duration
	// Event is the FunnelEvent an acknowledgement stands for, as the receiver named it
	// (funnel.EventNameHeader).
	Event string
}

// Acknowledged reports whether the receiver confirmed the event: 200 with exactly
// funnel.AckBody.
func (a Attempt) Acknowledged() bool {
	return a.Err == nil && a.Code == http.StatusOK && a.Body == funnel.AckBody
}

// Failure says in one line why the attempt was not acknowledged ("" when it was).
func (a Attempt) Failure() string {
	switch {
	case a.Acknowledged():
		return ""
	case a.Code == 0:
		return fmt.Sprint(a.Err)
	case a.Err != nil:
		return fmt.Sprintf("%d, then %v", a.Code, a.Err)
	case a.Code == http.StatusOK:
		return fmt.Sprintf("200 but the body is %q, not exactly %q", Snippet(a.Body), funnel.AckBody)
	default:
		return fmt.Sprintf("%d %s: %s", a.Code, http.StatusText(a.Code), Snippet(a.Body))
	}
}

// String summarises the attempt for logs and failure messages.
func (a Attempt) String() string {
	at := a.Start.Format("15:04:05.000")
	if a.Code == 0 {
		return fmt.Sprintf("%s no answer after %s: %v", at, a.Duration.Round(time.Millisecond), a.Err)
	}
	return fmt.Sprintf("%s %d after %s: %s", at, a.Code, a.Duration.Round(time.Millisecond), Snippet(a.Body))
}

// Snippet makes an answer body fit one line of a summary.
func Snippet(s string) string {
	const maxRunes = 120
	s = strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ")
	if r := []rune(s); len(r) > maxRunes {
		return string(r[:maxRunes-1]) + "…"
	}
	return s
}

// Result is everything that happened to one event.
type Result struct {
	// Event is the FunnelEvent name of the body: the receiver's once acknowledged, until
	// then as EventName predicts it ("" when the body is not a Funnel envelope).
	Event    string
	Attempts []Attempt
}

// Acknowledged reports whether some attempt was acknowledged.
func (r Result) Acknowledged() bool {
	for _, a := range r.Attempts {
		if a.Acknowledged() {
			return true
		}
	}
	return false
}

// EventName is the FunnelEvent name the receiver at url gives body when it stores it now
// ("" if it does not parse); an acknowledgement says the name it used.
func EventName(url string, body []byte) string {
	name, err := funnel.EventName(path.Base(url), body, time.Now())
	if err != nil {
		return ""
	}
	return name
}

// Post makes one attempt to url with the Sender's authentication; header adds or
// overrides headers (a nil value removes one).
func (s *Sender) Post(ctx context.Context, url string, body []byte, header http.Header) Attempt {
	s.init()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = FunnelTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a := Attempt{URL: url, Start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.Err = fmt.Errorf("building the request: %w", err)
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	if s.UserAgent != "" {
		req.Header.Set("User-Agent", s.UserAgent)
	}
	s.Auth.Apply(req.Header, body)
	for k, vs := range header {
		if vs == nil {
			req.Header.Del(k)
		} else {
			req.Header[http.CanonicalHeaderKey(k)] = vs
		}
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		a.Duration, a.Err = time.Since(a.Start), requestError(ctx, err, timeout)
		return a
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	a.Duration, a.Code, a.RetryAfter, a.Body = time.Since(a.Start), resp.StatusCode, resp.Header.Get("Retry-After"), string(answer)
	a.Event = resp.Header.Get(funnel.EventNameHeader)
	if err != nil {
		a.Err = fmt.Errorf("reading the answer: %w", requestError(ctx, err, timeout))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainBytes))
	return a
}

// requestError makes a transport error short and precise: without the "Post <url>:"
// prefix every error repeats, and a timeout says which.
func requestError(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("no answer within %s: %w", timeout, context.DeadlineExceeded)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// Send posts body until it is acknowledged or the retries are used up, going round the
// URLs; it stops early when ctx ends.
func (s *Sender) Send(ctx context.Context, body []byte) Result {
	res := Result{Event: EventName(s.URLs[0], body)}
	for n := 0; ; n++ {
		a := s.Post(ctx, s.URLs[(s.next.Add(1)-1)%uint64(len(s.URLs))], body, nil)
		res.Attempts = append(res.Attempts, a)
		if a.Acknowledged() && a.Event != "" {
			res.Event = a.Event
		}
		if s.OnAttempt != nil {
			s.OnAttempt(res.Event, a)
		}
		if a.Acknowledged() || n >= s.Retries || ctx.Err() != nil {
			return res
		}
		delay := RetryAfterOrBackoff
		if s.RetryDelay != nil {
			delay = s.RetryDelay
		}
		t := time.NewTimer(delay(n+1, a))
		select {
		case <-ctx.Done():
			t.Stop()
			return res
		case <-t.C:
		}
	}
}

// SendCopies sends body n times at once, as a retrying Funnel or two replicas of a load
// balancer might, and returns the results in order.
func (s *Sender) SendCopies(ctx context.Context, body []byte, n int) []Result {
	if n <= 1 {
		return []Result{s.Send(ctx, body)}
	}
	out := make([]Result, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i] = s.Send(ctx, body) })
	}
	wg.Wait()
	return out
}

// SendAll sends every body, concurrency at a time, and returns the results in the order
// of bodies (those not sent because ctx ended have no attempts).
func (s *Sender) SendAll(ctx context.Context, bodies [][]byte, concurrency int) []Result {
	out := make([]Result, len(bodies))
	i := 0
	_, _ = Run(ctx, Load{Concurrency: concurrency, Count: len(bodies)}, func() (int, error) {
		i++
		return i - 1, nil
	}, func(ctx context.Context, i int) { out[i] = s.Send(ctx, bodies[i]) })
	return out
}

// Acknowledged returns the names of the events that were acknowledged.
func Acknowledged(results []Result) map[string]bool {
	out := map[string]bool{}
	for _, r := range results {
		if r.Acknowledged() {
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
