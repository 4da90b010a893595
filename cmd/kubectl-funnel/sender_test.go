package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// recorded is one request a test server received.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// recorder is a test receiver: it records every request and answers with
// answer (ackBody with 200 when nil).
type recorder struct {
	mu       sync.Mutex
	requests []recorded
	answer   func(w http.ResponseWriter, r *http.Request, body []byte)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.requests = append(rec.requests, recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	rec.mu.Unlock()
	if rec.answer != nil {
		rec.answer(w, r, body)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, ackBody)
}

func (rec *recorder) all() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]recorded(nil), rec.requests...)
}

func newRecorder(t *testing.T, answer func(http.ResponseWriter, *http.Request, []byte)) (*recorder, *httptest.Server) {
	t.Helper()
	rec := &recorder{answer: answer}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, srv
}

func hexMAC(newHash func() hash.Hash, key, body []byte) string {
	m := hmac.New(newHash, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestPostAuthenticates(t *testing.T) {
	body := []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":null,"event_data":{}}`)
	key := []byte("hmac-key\n") // used verbatim, newline included
	tests := []struct {
		name string
		auth requestAuth
		want map[string]string // header → value; "" means absent
	}{
		{
			name: "none",
			auth: requestAuth{},
			want: map[string]string{"Authorization": "", "X-Funnel-Signature": ""},
		},
		{
			name: "token",
			auth: requestAuth{TokenHeader: "Authorization", Token: "s3cret"},
			want: map[string]string{"Authorization": "Bearer s3cret", "X-Funnel-Signature": ""},
		},
		{
			name: "token in a custom header",
			auth: requestAuth{TokenHeader: "X-Funnel-Token", Token: "s3cret"},
			want: map[string]string{"X-Funnel-Token": "Bearer s3cret", "Authorization": ""},
		},
		{
			name: "hmac sha256",
			auth: requestAuth{HMACHeader: "X-Funnel-Signature", HMACKey: key, HMACAlgorithm: funnelv1.HMACSHA256},
			want: map[string]string{"X-Funnel-Signature": "sha256=" + hexMAC(sha256.New, key, body), "Authorization": ""},
		},
		{
			name: "hmac sha512 in a custom header",
			auth: requestAuth{HMACHeader: "X-Sig", HMACKey: key, HMACAlgorithm: funnelv1.HMACSHA512},
			want: map[string]string{"X-Sig": "sha512=" + hexMAC(sha512.New, key, body)},
		},
		{
			name: "hmac without algorithm is sha256",
			auth: requestAuth{HMACHeader: "X-Funnel-Signature", HMACKey: key},
			want: map[string]string{"X-Funnel-Signature": "sha256=" + hexMAC(sha256.New, key, body)},
		},
		{
			name: "both",
			auth: requestAuth{TokenHeader: "Authorization", Token: "tok", HMACHeader: "X-Funnel-Signature", HMACKey: key, HMACAlgorithm: funnelv1.HMACSHA256},
			want: map[string]string{"Authorization": "Bearer tok", "X-Funnel-Signature": "sha256=" + hexMAC(sha256.New, key, body)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, srv := newRecorder(t, nil)
			s := &sender{client: srv.Client(), url: srv.URL + "/webhooks/default/funnel", auth: tt.auth, timeout: 5 * time.Second}
			res := s.post(context.Background(), body)
			if !res.acknowledged() {
				t.Fatalf("not acknowledged: %+v", res)
			}
			reqs := rec.all()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			got := reqs[0]
			if got.Method != http.MethodPost || got.Path != "/webhooks/default/funnel" {
				t.Errorf("request %s %s, want POST /webhooks/default/funnel", got.Method, got.Path)
			}
			if ct := got.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if !bytes.Equal(got.Body, body) {
				t.Errorf("body changed in transit:\n%s\n%s", got.Body, body)
			}
			for h, want := range tt.want {
				if v := got.Header.Get(h); v != want {
					t.Errorf("header %s = %q, want %q", h, v, want)
				}
			}
		})
	}
}

func TestWebhookURL(t *testing.T) {
	const path = "/webhooks/default/funnel"
	tests := []struct {
		base, path, want, wantErr string
	}{
		{base: "http://127.0.0.1:8080", path: path, want: "http://127.0.0.1:8080/webhooks/default/funnel"},
		{base: "http://127.0.0.1:8080/", path: path, want: "http://127.0.0.1:8080/webhooks/default/funnel"},
		{base: "https://funnel.example.com/hooks/x", path: path, want: "https://funnel.example.com/hooks/x"},
		{base: "https://funnel.example.com?probe=1", path: path, want: "https://funnel.example.com/webhooks/default/funnel?probe=1"},
		{base: "http://localhost:8080/webhooks/prod/leasing", path: "", want: "http://localhost:8080/webhooks/prod/leasing"},
		{base: "http://localhost:8080", path: "", wantErr: "has no path"},
		{base: "127.0.0.1:8080", path: path, wantErr: "e.g. http://127.0.0.1:8080"},
		{base: "localhost:8080", path: path, wantErr: "must be absolute"},
		{base: "ftp://example.com", path: path, wantErr: "must be absolute"},
		{base: "/webhooks/default/funnel", path: path, wantErr: "must be absolute"},
		{base: "http://[::1", path: path, wantErr: "invalid URL"},
	}
	for _, tt := range tests {
		got, err := webhookURL(tt.base, tt.path)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("webhookURL(%q, %q) error = %v, want one containing %q", tt.base, tt.path, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("webhookURL(%q, %q) = %q, %v; want %q", tt.base, tt.path, got, err, tt.want)
		}
	}
}

// numbered returns a Next that makes bodies {"n":1}, {"n":2}, ...
func numbered() func() ([]byte, error) {
	n := 0
	return func() ([]byte, error) {
		n++
		return fmt.Appendf(nil, `{"n":%d}`, n), nil
	}
}

func TestRunLoadCounts(t *testing.T) {
	var inFlight, maxInFlight atomic.Int64
	rec, srv := newRecorder(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		n := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		inFlight.Add(-1)
		_, _ = io.WriteString(w, ackBody)
	})
	const count, concurrency, duplicate = 40, 4, 3
	s := &sender{client: newHTTPClient(concurrency * duplicate), url: srv.URL, timeout: 5 * time.Second}
	defer s.client.CloseIdleConnections()
	rep, err := runLoad(context.Background(), s, load{Count: count, Concurrency: concurrency, Duplicate: duplicate, Next: numbered()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != count*duplicate || rep.Acknowledged != count*duplicate || rep.Events != count || rep.NotAcknowledged() != 0 {
		t.Errorf("report sent %d, acknowledged %d, events %d; want %d, %d, %d", rep.Sent, rep.Acknowledged, rep.Events, count*duplicate, count*duplicate, count)
	}
	if rep.ByStatus[200] != count*duplicate || len(rep.Latencies) != count*duplicate {
		t.Errorf("ByStatus %v, %d latencies", rep.ByStatus, len(rep.Latencies))
	}
	perBody := map[string]int{}
	for _, r := range rec.all() {
		perBody[string(r.Body)]++
	}
	if len(perBody) != count {
		t.Errorf("%d distinct bodies, want %d", len(perBody), count)
	}
	for body, n := range perBody {
		if n != duplicate {
			t.Errorf("body %s sent %d times, want %d", body, n, duplicate)
		}
	}
	if m := maxInFlight.Load(); m > concurrency*duplicate {
		t.Errorf("%d requests in flight at once, want at most %d", m, concurrency*duplicate)
	}
}

// TestAcknowledgedOnlyExactBody: Funnel's contract is 200 with the exact
// body; anything else would be retried, so it is a failure.
func TestAcknowledgedOnlyExactBody(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		ack    bool
		reason string
	}{
		{"exact", 200, ackBody, true, ""},
		{"trailing newline", 200, ackBody + "\n", false, "200 but the body is"},
		{"other body", 200, "ok", false, `200 but the body is "ok"`},
		{"empty", 200, "", false, "200 but the body is"},
		{"created", 201, ackBody, false, "201 Created: Funnel Event Received"},
		{"redirect", 302, "", false, "302 Found"},
		{"unauthorized", 401, "invalid credentials\n", false, "401 Unauthorized: invalid credentials"},
		{"unavailable", 503, "receiver not ready", false, "503 Service Unavailable: receiver not ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newRecorder(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			s := &sender{client: newHTTPClient(1), url: srv.URL, timeout: 5 * time.Second}
			defer s.client.CloseIdleConnections()
			rep, err := runLoad(context.Background(), s, load{Count: 3, Concurrency: 1, Duplicate: 1, Next: numbered()})
			if err != nil {
				t.Fatal(err)
			}
			wantAck := 0
			if tt.ack {
				wantAck = 3
			}
			if rep.Acknowledged != wantAck || rep.ByStatus[tt.status] != 3 || rep.Errors != 0 {
				t.Errorf("acknowledged %d, by status %v, errors %d; want %d acknowledged, 3×%d", rep.Acknowledged, rep.ByStatus, rep.Errors, wantAck, tt.status)
			}
			var out strings.Builder
			if err := rep.write(&out, srv.URL, 1); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), fmt.Sprintf("%d×3", tt.status)) {
				t.Errorf("summary has no %d×3:\n%s", tt.status, out.String())
			}
			if tt.reason != "" {
				if rep.Failures[failureReason(result{Status: tt.status, Body: tt.body})] != 3 || !strings.Contains(out.String(), tt.reason) {
					t.Errorf("summary does not give the reason %q three times:\n%s", tt.reason, out.String())
				}
			}
		})
	}
}

func TestSummary(t *testing.T) {
	rep := newReport()
	rep.add([]result{{Status: 200, Body: ackBody, Latency: 10 * time.Millisecond}, {Status: 200, Body: ackBody, Latency: 30 * time.Millisecond}})
	rep.add([]result{{Status: 409, Body: "conflict", Latency: 20 * time.Millisecond}, {Err: fmt.Errorf("connection refused"), Latency: time.Millisecond}})
	rep.Elapsed = 2 * time.Second
	var out strings.Builder
	if err := rep.write(&out, "http://x/webhooks/a/b", 2); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Target:", "http://x/webhooks/a/b",
		"Sent:", "4 requests (2 events × 2 copies)",
		"Acknowledged:", "Not acknowledged:",
		"200×2  409×1",
		"Errors (no answer):",
		"1.0 events/s, 2.0 requests/s over 2s",
		"p50 20ms  p95 30ms  p99 30ms  max 30ms",
		"Failures:", "409 Conflict: conflict", "connection refused",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if rep.Acknowledged != 2 || rep.NotAcknowledged() != 2 || rep.Errors != 1 {
		t.Errorf("acknowledged %d, not %d, errors %d; want 2, 2, 1", rep.Acknowledged, rep.NotAcknowledged(), rep.Errors)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 95: 95 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%.0f = %s, want %s", p, got, want)
		}
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one = %s", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %s", got)
	}
}

func TestPostTimeout(t *testing.T) {
	release := make(chan struct{})
	_, srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	s := &sender{client: newHTTPClient(1), url: srv.URL, timeout: 50 * time.Millisecond}
	defer s.client.CloseIdleConnections()
	res := s.post(context.Background(), []byte(`{}`))
	if res.Err == nil || !strings.Contains(res.Err.Error(), "no answer within --timeout 50ms") {
		t.Errorf("error = %v, want a timeout naming --timeout", res.Err)
	}
	if res.acknowledged() {
		t.Error("a timed out request counts as acknowledged")
	}
}

// TestRunLoadCancel: cancelling stops the run promptly, aborts requests in
// flight and leaves no goroutine behind.
func TestRunLoadCancel(t *testing.T) {
	started := make(chan struct{}, 100)
	_, srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		started <- struct{}{}
		<-r.Context().Done() // never answers on its own
	})
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{client: newHTTPClient(4), url: srv.URL, timeout: time.Minute}
	done := make(chan struct{})
	var rep *report
	go func() {
		defer close(done)
		rep, _ = runLoad(ctx, s, load{Count: 1000, Concurrency: 2, Duplicate: 2, Next: numbered()})
	}()
	<-started
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("runLoad did not return after cancel")
	}
	if !rep.Interrupted || rep.Events >= 1000 || rep.Acknowledged != 0 {
		t.Errorf("interrupted %v, events %d, acknowledged %d", rep.Interrupted, rep.Events, rep.Acknowledged)
	}
	s.client.CloseIdleConnections()
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

func TestRunLoadStopsOnGeneratorError(t *testing.T) {
	rec, srv := newRecorder(t, nil)
	s := &sender{client: newHTTPClient(1), url: srv.URL, timeout: 5 * time.Second}
	defer s.client.CloseIdleConnections()
	next := numbered()
	calls := 0
	_, err := runLoad(context.Background(), s, load{Count: 10, Concurrency: 1, Duplicate: 1, Next: func() ([]byte, error) {
		calls++
		if calls == 4 {
			return nil, fmt.Errorf("boom")
		}
		return next()
	}})
	if err == nil || !strings.Contains(err.Error(), "making event 4: boom") {
		t.Errorf("error = %v", err)
	}
	if n := len(rec.all()); n != 3 {
		t.Errorf("%d requests, want the 3 made before the error", n)
	}
}
