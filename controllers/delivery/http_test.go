package delivery

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// leak is what hostile targets put in their answers; it must never reach an outcome.
const leak = "SECRET-FROM-THE-TARGET"

// rawServer answers every connection with handle, below HTTP.
func rawServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				handle(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestOutcomes: every answer and failure is recorded as its code and a fixed reason,
// never with what the target wrote.
func TestOutcomes(t *testing.T) {
	hc := NewHTTPClient(NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil))
	answer := func(code int, header ...string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(header); i += 2 {
				w.Header().Set(header[i], header[i+1])
			}
			w.WriteHeader(code)
			_, _ = w.Write([]byte(leak))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + closed.Addr().String()
	_ = closed.Close()
	tlsTarget := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(tlsTarget.Close)

	for _, tc := range []struct {
		name      string
		url       string
		timeout   time.Duration
		code      int32
		reason    string
		ok, retry bool
	}{
		{"2xx", answer(http.StatusAccepted), 0, 202, "", true, false},
		{"5xx", answer(http.StatusInternalServerError), 0, 500, "HTTP 500 Internal Server Error", false, true},
		{"429", answer(http.StatusTooManyRequests), 0, 429, "HTTP 429 Too Many Requests", false, true},
		{"408", answer(http.StatusRequestTimeout), 0, 408, "HTTP 408 Request Timeout", false, true},
		{"permanent 4xx", answer(http.StatusForbidden), 0, 403, "HTTP 403 Forbidden", false, false},
		{"unknown code", answer(599), 0, 599, "HTTP 599", false, true},
		{"redirect, location not quoted", answer(http.StatusFound, "Location", "http://"+leak), 0, 302,
			"HTTP 302 Found: redirects are not followed", false, false},
		{"connection refused", closedURL, 0, 0, "connection refused", false, true},
		{"no answer", rawServer(t, func(net.Conn) { <-hang }), 100 * time.Millisecond, 0, "no answer within 100ms", false, true},
		{"closed without answer", rawServer(t, func(c net.Conn) { _, _ = bufio.NewReader(c).ReadString('\n') }), 0, 0,
			"connection closed before an answer", false, true},
		{"not HTTP", rawServer(t, func(c net.Conn) {
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte(leak + " 200 OK\r\n\r\n"))
		}), 0, 0,
			"malformed HTTP answer", false, true},
		{"untrusted certificate", tlsTarget.URL, 0, 0, "TLS: certificate not trusted", false, true},
		{"TLS to a plain server", "https" + strings.TrimPrefix(answer(200), "http"), 0, 0, "TLS: the target does not speak TLS", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action := &funnelv1.HTTPAction{URL: tc.url}
			if tc.timeout > 0 {
				action.Timeout = &metav1.Duration{Duration: tc.timeout}
			}
			req, err := newRequest(context.Background(), nil, "ns", action, []byte(`{}`), nil)
			if err != nil {
				t.Fatal(err)
			}
			a := req.do(context.Background(), hc, time.Now())
			if a.code != tc.code || a.err != tc.reason || a.succeeded != tc.ok || a.retryable != tc.retry {
				t.Errorf("got %+v, want code %d, reason %q, succeeded %v, retryable %v", a, tc.code, tc.reason, tc.ok, tc.retry)
			}
		})
	}
}

func TestTimeoutIsCapped(t *testing.T) {
	for _, tc := range []struct {
		set  *metav1.Duration
		want time.Duration
	}{
		{nil, funnelv1.DefaultHTTPTimeout},
		{&metav1.Duration{Duration: 3 * time.Second}, 3 * time.Second},
		{&metav1.Duration{Duration: time.Hour}, funnelv1.MaxHTTPTimeout}, // stored before the schema capped it
		{&metav1.Duration{}, funnelv1.DefaultHTTPTimeout},
	} {
		if got := timeout(&funnelv1.HTTPAction{Timeout: tc.set}); got != tc.want {
			t.Errorf("timeout(%v) = %s, want %s", tc.set, got, tc.want)
		}
	}
}

// TestReservedHeadersNeverWin: a subscription stored before the schema refused them still
// cannot replace the idempotency key, the signature or the event's identity, and its
// reserved headersFrom are not even read.
func TestReservedHeadersNeverWin(t *testing.T) {
	c := fake.NewClientBuilder().WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"},
		Data:       map[string][]byte{"key": []byte("k"), "token": []byte("Bearer t")},
	}).Build()
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "evt-1"},
		Spec: funnelv1.FunnelEventSpec{Type: "lease.move_in", EventID: "1"}}
	a := &funnelv1.HTTPAction{URL: "http://pms.example",
		Headers: []funnelv1.HTTPHeader{
			{Name: "idempotency-key", Value: "forged"}, {Name: "X-FUNNEL-EVENT-NAME", Value: "forged"},
			{Name: "X-Funnel-Operator-Signature", Value: "sha256=forged"}, {Name: "Content-Type", Value: "text/plain"},
			{Name: "webhook-signature", Value: "forged"}, {Name: "X-Source", Value: "funnel"},
			{Name: "Traceparent", Value: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		},
		HeadersFrom: []funnelv1.HTTPHeaderFromSecret{
			{Name: "Authorization", SecretRef: funnelv1.SecretKeyRef{Name: "s", Key: "token"}},
			{Name: "x-funnel-delivery-attempt", SecretRef: funnelv1.SecretKeyRef{Name: "missing", Key: "x"}},
		},
		SigningSecretRef: &funnelv1.SecretKeyRef{Name: "s", Key: "key"},
	}
	body, headers, err := message(ev, "", "sub", a, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := newRequest(context.Background(), c, "ns", a, body, headers)
	if err != nil {
		t.Fatalf("a reserved headersFrom must be skipped, not read: %v", err)
	}
	h := req.header(time.Now())
	for name, want := range map[string]string{
		"Idempotency-Key":     "ns/evt-1/sub",
		"X-Funnel-Event-Name": "evt-1",
		"Content-Type":        "application/json",
		"X-Source":            "funnel",
		"Authorization":       "Bearer t",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := h.Get(funnelv1.SignatureHeader); !strings.HasPrefix(got, "sha256=") || got == "sha256=forged" {
		t.Errorf("signature = %q", got)
	}
	if got := h.Get(HeaderWebhookSignature); !strings.HasPrefix(got, "v1,") || strings.Contains(got, "forged") {
		t.Errorf("webhook-signature = %q", got)
	}
	if got := h.Get("X-Funnel-Delivery-Attempt"); got != "1" {
		t.Errorf("attempt = %q", got)
	}
	// With tracing off the operator sends no trace context: a forged one must not join the
	// target's spans to someone else's trace.
	if got := h.Get("traceparent"); got != "" {
		t.Errorf("traceparent = %q, want none", got)
	}
	for name, values := range h {
		if len(values) != 1 {
			t.Errorf("%s sent %d times: %v", name, len(values), values)
		}
	}
}

func TestIsReservedHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Idempotency-Key": true, "IDEMPOTENCY-KEY": true, "content-type": true, "X-Funnel-Anything": true,
		"webhook-id": true, "Ce-Id": true, "User-Agent": true, "Host": true, "Traceparent": true, "TRACESTATE": true,
		"Authorization": false, "X-Source": false, "X-Funnel": false, "Content-Language": false, "Cert": false,
	} {
		if got := funnelv1.IsReservedHeader(name); got != want {
			t.Errorf("IsReservedHeader(%q) = %v, want %v", name, got, want)
		}
	}
}
