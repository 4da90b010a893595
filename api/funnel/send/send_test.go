package send

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	"github.com/funnel-operator/funnel-operator/api/funnel/send/sendtest"
)

func TestPostAuthenticates(t *testing.T) {
	body := []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":null,"event_data":{}}`)
	key := []byte("hmac-key\n") // used verbatim, newline included
	for _, tc := range []struct {
		name string
		auth Auth
		want map[string]string // header → value; "" means absent
	}{
		{"none", Auth{}, map[string]string{"Authorization": "", "X-Funnel-Signature": ""}},
		{"token in the default header", Auth{Token: "s3cret"}, map[string]string{"Authorization": "Bearer s3cret", "X-Funnel-Signature": ""}},
		{"token in a custom header", Auth{Token: "s3cret", TokenHeader: "X-Funnel-Token"}, map[string]string{"X-Funnel-Token": "Bearer s3cret", "Authorization": ""}},
		{"hmac, default header and algorithm", Auth{HMACKey: key}, map[string]string{"X-Funnel-Signature": funnel.Signature("sha256", key, body), "Authorization": ""}},
		{"hmac sha512 in a custom header", Auth{HMACKey: key, HMACHeader: "X-Sig", HMACAlgorithm: funnel.HMACSHA512}, map[string]string{"X-Sig": funnel.Signature("sha512", key, body), "X-Funnel-Signature": ""}},
		{"both", Auth{Token: "tok", HMACKey: key}, map[string]string{"Authorization": "Bearer tok", "X-Funnel-Signature": funnel.Signature("sha256", key, body)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := sendtest.NewReceiver(t, nil)
			s := &Sender{URLs: []string{rec.URL + "/webhooks/default/funnel"}, Auth: tc.auth, UserAgent: "test-agent"}
			if res := s.Send(t.Context(), body); !res.Acknowledged() || len(res.Attempts) != 1 {
				t.Fatalf("not acknowledged at once: %v", res.Attempts)
			}
			got := rec.Requests()[0]
			if got.Method != http.MethodPost || got.Path != "/webhooks/default/funnel" {
				t.Errorf("request %s %s, want POST /webhooks/default/funnel", got.Method, got.Path)
			}
			if ct, ua := got.Header.Get("Content-Type"), got.Header.Get("User-Agent"); ct != "application/json" || ua != "test-agent" {
				t.Errorf("Content-Type %q, User-Agent %q", ct, ua)
			}
			if !bytes.Equal(got.Body, body) {
				t.Errorf("body changed in transit:\n%s\n%s", got.Body, body)
			}
			for h, want := range tc.want {
				if v := got.Header.Get(h); v != want {
					t.Errorf("header %s = %q, want %q", h, v, want)
				}
			}
		})
	}
}

// TestAcknowledgedOnlyExactBody: Funnel's criterion is 200 with the exact body; anything
// else is retried, so it is a failure, and Failure says why.
func TestAcknowledgedOnlyExactBody(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		ack     bool
		failure string
	}{
		{"exact", 200, funnel.AckBody, true, ""},
		{"trailing newline", 200, funnel.AckBody + "\n", false, `200 but the body is "Funnel Event Received", not exactly "Funnel Event Received"`},
		{"other body", 200, "ok", false, `200 but the body is "ok"`},
		{"empty", 200, "", false, `200 but the body is ""`},
		{"created", 201, funnel.AckBody, false, "201 Created: Funnel Event Received"},
		{"redirect, not followed", 302, "", false, "302 Found: "},
		{"unauthorized", 401, "invalid credentials\n", false, "401 Unauthorized: invalid credentials"},
		{"unavailable", 503, "receiver not ready", false, "503 Service Unavailable: receiver not ready"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := sendtest.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			s := &Sender{URLs: []string{srv.URL}}
			a := s.Send(t.Context(), []byte(`{}`)).Attempts[0]
			if a.Acknowledged() != tc.ack || a.Code != tc.status {
				t.Errorf("acknowledged %v, code %d; want %v, %d", a.Acknowledged(), a.Code, tc.ack, tc.status)
			}
			if f := a.Failure(); !strings.HasPrefix(f, tc.failure) || (tc.failure == "") != (f == "") {
				t.Errorf("Failure() = %q, want %q", f, tc.failure)
			}
		})
	}
}

// TestRetriesLikeFunnel: an event not acknowledged is tried again, up to Retries more
// times, round the URLs, after RetryDelay; an acknowledged one is not.
func TestRetriesLikeFunnel(t *testing.T) {
	var n atomic.Int32
	rec := sendtest.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) < 3 {
			w.Header().Set("Retry-After", "7")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, funnel.AckBody)
	})
	var delays []string
	var seen []string
	s := &Sender{URLs: []string{rec.URL + "/a", rec.URL + "/b"}, Retries: FunnelRetries,
		RetryDelay: func(n int, last Attempt) time.Duration {
			delays = append(delays, fmt.Sprintf("%d:%s", n, last.RetryAfter))
			return time.Millisecond
		},
		OnAttempt: func(_ string, a Attempt) { seen = append(seen, fmt.Sprint(a.Code)) }}
	res := s.Send(t.Context(), []byte(`{}`))
	if !res.Acknowledged() || len(res.Attempts) != 3 {
		t.Fatalf("acknowledged %v after %d attempts, want true after 3", res.Acknowledged(), len(res.Attempts))
	}
	var paths []string
	for _, r := range rec.Requests() {
		paths = append(paths, r.Path)
	}
	if got := strings.Join(paths, ","); got != "/a,/b,/a" {
		t.Errorf("attempts went to %s, want round-robin /a,/b,/a", got)
	}
	if got := strings.Join(delays, ","); got != "1:7,2:7" {
		t.Errorf("RetryDelay calls %s, want 1:7,2:7", got)
	}
	if got := strings.Join(seen, ","); got != "503,503,200" {
		t.Errorf("OnAttempt saw %s", got)
	}

	n.Store(-100) // never acknowledges from now on
	if res := s.Send(t.Context(), []byte(`{}`)); res.Acknowledged() || len(res.Attempts) != 1+FunnelRetries {
		t.Errorf("a refused event: %d attempts, want %d", len(res.Attempts), 1+FunnelRetries)
	}
}

func TestRetryAfterOrBackoff(t *testing.T) {
	for _, tc := range []struct {
		n          int
		retryAfter string
		want       time.Duration
	}{
		{1, "", time.Second}, {2, "", 2 * time.Second}, {3, "", 4 * time.Second},
		{1, "3", 3 * time.Second}, {2, "0", 2 * time.Second}, {1, "soon", time.Second},
	} {
		if got := RetryAfterOrBackoff(tc.n, Attempt{RetryAfter: tc.retryAfter}); got != tc.want {
			t.Errorf("retry %d, Retry-After %q: %s, want %s", tc.n, tc.retryAfter, got, tc.want)
		}
	}
}

func TestPostTimeoutAndHeaderOverride(t *testing.T) {
	release := make(chan struct{})
	rec := sendtest.NewReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	s := &Sender{Auth: Auth{Token: "t"}, Timeout: 50 * time.Millisecond}
	a := s.Post(t.Context(), rec.URL, []byte(`{}`), http.Header{"Authorization": nil, "X-Extra": {"1"}})
	if a.Code != 0 || !errors.Is(a.Err, context.DeadlineExceeded) || !strings.Contains(a.Err.Error(), "no answer within 50ms") {
		t.Errorf("attempt %v, want no answer within 50ms", a)
	}
	if a.Acknowledged() || a.Failure() == "" {
		t.Error("a timed out attempt counts as acknowledged")
	}
	h := rec.Requests()[0].Header
	if h.Get("Authorization") != "" || h.Get("X-Extra") != "1" {
		t.Errorf("header overrides not applied: %v", h)
	}
}

// numbered makes bodies {"n":1}, {"n":2}, …
func numbered() func() ([]byte, error) {
	n := 0
	return func() ([]byte, error) {
		n++
		return fmt.Appendf(nil, `{"n":%d}`, n), nil
	}
}

func TestRunClosedLoopCountsAndCopies(t *testing.T) {
	var inFlight, peak atomic.Int64
	rec := sendtest.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		_, _ = io.WriteString(w, funnel.AckBody)
	})
	const count, concurrency, copies = 40, 4, 3
	s := &Sender{URLs: []string{rec.URL}, Client: NewClient(concurrency * copies)}
	rep := NewReport()
	st, err := Run(t.Context(), Load{Concurrency: concurrency, Count: count}, numbered(), func(ctx context.Context, body []byte) {
		for _, r := range s.SendCopies(ctx, body, copies) {
			rep.Add(r)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Started != count || rep.Sent != count*copies || rep.Acknowledged != count*copies || rep.ByStatus[200] != count*copies || len(rep.Latencies) != count*copies {
		t.Errorf("started %d, sent %d, acknowledged %d, by status %v", st.Started, rep.Sent, rep.Acknowledged, rep.ByStatus)
	}
	perBody := map[string]int{}
	for _, r := range rec.Requests() {
		perBody[string(r.Body)]++
	}
	if len(perBody) != count {
		t.Errorf("%d distinct bodies, want %d", len(perBody), count)
	}
	for body, n := range perBody {
		if n != copies {
			t.Errorf("body %s sent %d times, want %d", body, n, copies)
		}
	}
	if p := peak.Load(); p > concurrency*copies {
		t.Errorf("%d requests in flight at once, want at most %d", p, concurrency*copies)
	}
}

func TestRunClosedLoopStopsAfterDuration(t *testing.T) {
	start := time.Now()
	var calls atomic.Int64
	st, err := Run(t.Context(), Load{Concurrency: 3, Duration: 200 * time.Millisecond}, func() (int, error) { return 0, nil },
		func(context.Context, int) { calls.Add(1); time.Sleep(10 * time.Millisecond) })
	if err != nil {
		t.Fatal(err)
	}
	// 3 workers × 200 ms / 10 ms: about 60.
	if el := time.Since(start); el < 200*time.Millisecond || el > 2*time.Second || st.Started < 20 || int64(st.Started) != calls.Load() {
		t.Errorf("took %s, started %d (do ran %d times)", el, st.Started, calls.Load())
	}
}

func TestRunOpenLoopKeepsTheRate(t *testing.T) {
	var inFlight, peak atomic.Int32
	start := time.Now()
	st, err := Run(t.Context(), Load{Rate: 200, Duration: 500 * time.Millisecond, Concurrency: 5}, func() (int, error) { return 0, nil },
		func(context.Context, int) {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(20 * time.Millisecond)
			inFlight.Add(-1)
		})
	if err != nil {
		t.Fatal(err)
	}
	// 100 arrivals in 0.5 s, each busy 20 ms: about 4 in flight, so the bound of 5 drops few.
	if st.Started+st.Dropped != 100 || st.Started < 50 {
		t.Errorf("started %d + dropped %d, want 100 arrivals, most started", st.Started, st.Dropped)
	}
	if peak.Load() > 5 {
		t.Errorf("%d in flight, above the bound of 5", peak.Load())
	}
	if el := time.Since(start); el < 450*time.Millisecond || el > 2*time.Second {
		t.Errorf("took %s for 0.5 s of arrivals", el)
	}
}

// TestRunCancel: cancelling stops the run promptly, aborts requests in flight and leaves
// no goroutine behind.
func TestRunCancel(t *testing.T) {
	started := make(chan struct{}, 100)
	srv := sendtest.NewReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done() // never answers on its own
	})
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(t.Context())
	s := &Sender{URLs: []string{srv.URL}, Timeout: time.Minute, Client: NewClient(4)}
	rep := NewReport()
	done := make(chan Stats)
	go func() {
		st, _ := Run(ctx, Load{Concurrency: 2, Count: 1000}, numbered(), func(ctx context.Context, body []byte) {
			for _, r := range s.SendCopies(ctx, body, 2) {
				rep.Add(r)
			}
		})
		done <- st
	}()
	<-started
	cancel()
	var st Stats
	select {
	case st = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !st.Interrupted || st.Started >= 1000 || rep.Acknowledged != 0 || rep.NoAnswer == 0 {
		t.Errorf("interrupted %v, started %d, acknowledged %d, no answer %d", st.Interrupted, st.Started, rep.Acknowledged, rep.NoAnswer)
	}
	s.Client.CloseIdleConnections()
	srv.CloseClientConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after the run, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestRunStopsOnAMakingError(t *testing.T) {
	next := numbered()
	calls := 0
	var done []string
	_, err := Run(t.Context(), Load{Concurrency: 1, Count: 10}, func() ([]byte, error) {
		calls++
		if calls == 4 {
			return nil, errors.New("boom")
		}
		return next()
	}, func(_ context.Context, b []byte) { done = append(done, string(b)) })
	if err == nil || err.Error() != "making event 4: boom" {
		t.Errorf("error = %v", err)
	}
	if len(done) != 3 {
		t.Errorf("%d events done, want the 3 made before the error", len(done))
	}
}

func TestReport(t *testing.T) {
	a, b := NewReport(), NewReport()
	a.Add(Result{Attempts: []Attempt{{Code: 200, Body: funnel.AckBody, Duration: 10 * time.Millisecond}, {Code: 200, Body: funnel.AckBody, Duration: 30 * time.Millisecond}}})
	b.Add(Result{Attempts: []Attempt{{Code: 503, Body: "overloaded", Duration: 20 * time.Millisecond}, {Err: errors.New("connection refused")}}})
	b.Add(Result{Attempts: []Attempt{{Code: 503, Body: "overloaded", Duration: 20 * time.Millisecond}}})
	a.Merge(b)
	if a.Sent != 5 || a.Acknowledged != 2 || a.NotAcknowledged() != 3 || a.NoAnswer != 1 || a.ByStatus[200] != 2 || a.ByStatus[503] != 2 || len(a.Latencies) != 4 {
		t.Errorf("report %+v", a)
	}
	if got := strings.Join(a.TopFailures(5), " | "); got != "2× 503 Service Unavailable: overloaded | 1× connection refused" {
		t.Errorf("TopFailures = %s", got)
	}
	if got := len(a.TopFailures(1)); got != 1 {
		t.Errorf("TopFailures(1) gave %d", got)
	}
}

func TestLatencyOf(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if got, want := LatencyOf(ds), (Latency{P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}); got != want {
		t.Errorf("LatencyOf(1..100 ms) = %+v, want %+v", got, want)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("LatencyOf sorted its argument")
	}
	if got := LatencyOf([]time.Duration{7}); got.P50 != 7 || got.P99 != 7 || got.Max != 7 {
		t.Errorf("one value: %+v", got)
	}
	if got := LatencyOf(nil); got != (Latency{}) {
		t.Errorf("none: %+v", got)
	}
}

func TestEventName(t *testing.T) {
	body := []byte(`{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{}}`)
	want, err := funnel.EventName("funnel", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := EventName("http://127.0.0.1:8080/webhooks/ns/funnel", body); got == "" || got != want {
		t.Errorf("EventName = %q, want %q", got, want)
	}
	if got := EventName("http://127.0.0.1:8080/webhooks/ns/funnel", []byte(`not json`)); got != "" {
		t.Errorf("EventName(garbage) = %q", got)
	}
}
