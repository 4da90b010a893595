package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// attempt is the outcome of one try of an action.
type attempt struct {
	succeeded bool
	// retryable failures (HTTP 408, 429, 5xx, timeouts, connection errors) are retried;
	// the rest fail the delivery at once.
	retryable bool
	code      int32
	// err is a fixed reason ("connection refused", "HTTP 500 Internal Server Error"),
	// never the target's words: it is copied into status, Events and dead letters that
	// the subscription's owner reads.
	err string
	// retryAfter is the target's Retry-After, when it sent one.
	retryAfter time.Duration
	// running: under way. A Job (job names it), or an HTTP call handed to the executor
	// at submitted.
	running   bool
	job       string
	submitted time.Time
	// at is when an HTTP call was made, took how long it took.
	at   time.Time
	took time.Duration
}

// since is when the attempt began, as far as is known: now when not.
func (a attempt) since(now time.Time) time.Time {
	switch {
	case !a.at.IsZero():
		return a.at
	case !a.submitted.IsZero():
		return a.submitted
	}
	return now
}

// recheck is the safety-net wait of an attempt under way: its end wakes the event (a
// Job's changes, an HTTP call's outcome), this is in case that wake is missed.
func (a attempt) recheck() time.Duration {
	if a.job != "" {
		return jobRecheck
	}
	return httpRecheck
}

// maxResponseHeaderBytes bounds what a target may send as headers.
const maxResponseHeaderBytes = 64 << 10

// NewHTTPClient is the client HTTP actions use. It connects only where policy allows
// (checked on the address dialled, after DNS), never through a proxy from the
// environment (the proxy would connect on our behalf, past the check), and never
// follows redirects (a POST must not silently turn into a GET elsewhere, nor reach an
// address the check would refuse). Per-request timeouts come from the action.
func NewHTTPClient(policy *AddressPolicy) *http.Client {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: policy.control}
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            dialer.DialContext,
			ForceAttemptHTTP2:      true,
			MaxIdleConnsPerHost:    32,
			IdleConnTimeout:        90 * time.Second,
			TLSHandshakeTimeout:    10 * time.Second,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
		},
	}
}

// request is everything one HTTP call needs, resolved before it is made.
type request struct {
	action  *funnelv1.HTTPAction
	body    []byte
	headers http.Header
	signer  *signer
}

// newRequest resolves an HTTP action for one call: body, static and Secret headers,
// signing keys and the idempotency key. Headers the operator sets (extra among them)
// always win: a subscription cannot replace the idempotency key, the signature or the
// event's identity headers, even one stored before the schema refused them. Each Secret
// is read once, however many of its keys the action names.
func newRequest(ctx context.Context, c client.Reader, ns string, a *funnelv1.HTTPAction, body []byte, extra http.Header) (*request, error) {
	c = &secretsOnce{Reader: c}
	h := http.Header{}
	for _, hd := range a.Headers {
		if !funnelv1.IsReservedHeader(string(hd.Name)) {
			h.Set(string(hd.Name), hd.Value)
		}
	}
	for _, hf := range a.HeadersFrom {
		if funnelv1.IsReservedHeader(string(hf.Name)) {
			continue
		}
		v, err := SecretValue(ctx, c, ns, hf.SecretRef)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", hf.Name, err)
		}
		h.Set(string(hf.Name), strings.TrimSpace(string(v)))
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "funnel-operator")
	for k, vs := range extra {
		h[k] = vs
	}
	s, err := newSigner(ctx, c, ns, a)
	if err != nil {
		return nil, err
	}
	return &request{action: a, body: body, headers: h, signer: s}, nil
}

// header is what a call made at now sends: the resolved headers, dated and signed.
func (r *request) header(now time.Time) http.Header {
	h := r.headers.Clone()
	stamp(h, r.body, now, r.signer)
	return h
}

// timeout is the action's per-request timeout: its own (at most MaxHTTPTimeout, also for
// objects stored before the schema capped it) or the default.
func timeout(a *funnelv1.HTTPAction) time.Duration {
	if a.Timeout == nil || a.Timeout.Duration <= 0 {
		return funnelv1.DefaultHTTPTimeout
	}
	return min(a.Timeout.Duration, funnelv1.MaxHTTPTimeout)
}

// do makes one call and classifies the answer. The target's body is drained (to reuse
// the connection), never read into the outcome.
func (r *request) do(ctx context.Context, hc *http.Client, now time.Time) attempt {
	limit := timeout(r.action)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	method := r.action.Method
	if method == "" {
		method = http.MethodPost
	}
	req, err := http.NewRequestWithContext(ctx, method, r.action.URL, bytes.NewReader(r.body))
	if err != nil {
		return attempt{err: "invalid request URL"}
	}
	req.Header = r.header(now)
	resp, err := hc.Do(req)
	if err != nil {
		return connectionFailure(err, limit)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	a := attempt{code: int32(resp.StatusCode), err: httpReason(resp.StatusCode)}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		a.succeeded, a.err = true, ""
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		a.retryable = true
		a.retryAfter, _ = retryAfter(resp.Header.Get("Retry-After"), now)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		a.err += ": redirects are not followed"
	}
	return a
}

// httpReason is the fixed reason of an answer: its code and the code's standard text.
func httpReason(code int) string {
	if text := http.StatusText(code); text != "" {
		return fmt.Sprintf("HTTP %d %s", code, text)
	}
	return fmt.Sprintf("HTTP %d", code)
}

// connectionFailure classifies a call that got no answer, with a fixed reason: error
// texts of the network and TLS layers can quote what the far end sent (a malformed
// status line, a certificate's names), and that is not for the subscription's owner to
// read. A refused address fails the delivery at once; everything else is retried.
func connectionFailure(err error, limit time.Duration) attempt {
	var refused *AddressNotAllowedError
	if errors.As(err, &refused) {
		return attempt{err: refused.Error()}
	}
	var dns *net.DNSError
	var cert *tls.CertificateVerificationError
	var notTLS tls.RecordHeaderError
	var alert tls.AlertError
	reason := "connection failed"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		reason = fmt.Sprintf("no answer within %s", limit)
	case errors.As(err, &dns) && dns.IsNotFound:
		reason = "DNS: no such host"
	case errors.As(err, &dns):
		reason = "DNS lookup failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		reason = "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		reason = "host unreachable"
	case errors.Is(err, syscall.ETIMEDOUT):
		reason = "connection timed out"
	case errors.As(err, &cert):
		reason = "TLS: certificate not trusted"
	case errors.As(err, &notTLS) || strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		reason = "TLS: the target does not speak TLS"
	case errors.As(err, &alert):
		reason = "TLS handshake failed"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		reason = "connection closed before an answer"
	case strings.Contains(err.Error(), "malformed HTTP"):
		reason = "malformed HTTP answer"
	}
	return attempt{retryable: true, err: reason}
}

// ErrSecretKeyMissing: the Secret exists but lacks the key, or its value is empty.
var ErrSecretKeyMissing = errors.New("no non-empty key")

// SecretValue reads one key of a Secret in ns with c, the subscription's ServiceAccount.
// It is served from the API server's watch cache (resourceVersion "0"): no etcd read per
// delivery, and a rotated value is seen within moments. Deliveries and the subscription's
// Ready condition both read through it.
func SecretValue(ctx context.Context, c client.Reader, ns string, ref funnelv1.SecretKeyRef) ([]byte, error) {
	var s corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &s, fromWatchCache()); err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s: %w", ns, ref.Name, err)
	}
	v, ok := s.Data[ref.Key]
	if !ok || len(v) == 0 {
		return nil, fmt.Errorf("Secret %s/%s has %w %q", ns, ref.Name, ErrSecretKeyMissing, ref.Key)
	}
	return v, nil
}

// secretsOnce reads each Secret once, for the Secret keys one request needs.
type secretsOnce struct {
	client.Reader
	read map[types.NamespacedName]*corev1.Secret
}

func (r *secretsOnce) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return r.Reader.Get(ctx, key, obj, opts...)
	}
	if got, ok := r.read[key]; ok {
		got.DeepCopyInto(s)
		return nil
	}
	if err := r.Reader.Get(ctx, key, s, opts...); err != nil {
		return err
	}
	if r.read == nil {
		r.read = map[types.NamespacedName]*corev1.Secret{}
	}
	r.read[key] = s.DeepCopy()
	return nil
}

// envelope is the normalised event body (BodyEnvelope), the same for every format.
type envelope struct {
	Name       string          `json:"name"`
	Namespace  string          `json:"namespace"`
	Receiver   string          `json:"receiver"`
	ID         string          `json:"id,omitempty"`
	Type       string          `json:"type"`
	Format     string          `json:"format"`
	OccurredAt *time.Time      `json:"occurredAt,omitempty"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Summary    string          `json:"summary,omitempty"`
	Data       json.RawMessage `json:"data"`
}

func envelopeOf(ev *funnelv1.FunnelEvent, summary string) envelope {
	e := envelope{
		Name: ev.Name, Namespace: ev.Namespace, Receiver: ev.Spec.Receiver, ID: ev.Spec.EventID,
		Type: ev.Spec.Type, Format: string(ev.Spec.Format), ReceivedAt: ev.Spec.ReceivedAt.UTC(),
		Summary: summary, Data: dataOf(ev),
	}
	if ev.Spec.OccurredAt != nil {
		t := ev.Spec.OccurredAt.UTC()
		e.OccurredAt = &t
	}
	return e
}

func dataOf(ev *funnelv1.FunnelEvent) json.RawMessage {
	if len(ev.Spec.Data.Raw) == 0 {
		return json.RawMessage("{}")
	}
	return ev.Spec.Data.Raw
}

// eventBody is the body an HTTP action sends for an event.
func eventBody(ev *funnelv1.FunnelEvent, summary string, kind funnelv1.HTTPBody) ([]byte, error) {
	if kind == funnelv1.BodyOriginal {
		return originalBody(ev)
	}
	return json.Marshal(envelopeOf(ev, summary))
}

// originalBody rebuilds the envelope Funnel sent, in its format, with data verbatim.
func originalBody(ev *funnelv1.FunnelEvent) ([]byte, error) {
	data := dataOf(ev)
	switch ev.Spec.Format {
	case funnelv1.FormatClassic:
		var key any
		if ev.Spec.IdempotencyKey != "" {
			key = ev.Spec.IdempotencyKey
		}
		var ts any
		if ev.Spec.OccurredAt != nil {
			ts = ev.Spec.OccurredAt.Unix()
		}
		return json.Marshal(struct {
			ID             json.Number     `json:"id"`
			EventType      string          `json:"event_type"`
			EventTimestamp any             `json:"event_timestamp"`
			IdempotencyKey any             `json:"idempotency_key"`
			EventData      json.RawMessage `json:"event_data"`
		}{json.Number(ev.Spec.EventID), ev.Spec.Type, ts, key, data})
	case funnelv1.FormatV3:
		var ts any
		if ev.Spec.OccurredAt != nil {
			ts = ev.Spec.OccurredAt.UTC().Format("2006-01-02T15:04:05.000000+00:00")
		}
		return json.Marshal(struct {
			ID        string          `json:"id"`
			Event     string          `json:"event"`
			Timestamp any             `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}{ev.Spec.EventID, ev.Spec.Type, ts, data})
	default:
		return json.Marshal(struct {
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}{ev.Spec.Type, data})
	}
}

// failureContext is what a dead letter learns about the failed delivery.
type failureContext struct {
	Subscription    string     `json:"subscription"`
	Attempts        int32      `json:"attempts"`
	LastError       string     `json:"lastError,omitempty"`
	ResponseCode    int32      `json:"responseCode,omitempty"`
	LastAttemptTime *time.Time `json:"lastAttemptTime,omitempty"`
}

func failureOf(d *funnelv1.DeliveryStatus) failureContext {
	f := failureContext{Subscription: d.Subscription, Attempts: d.Attempts, LastError: d.LastError, ResponseCode: d.ResponseCode}
	if d.LastAttemptTime != nil {
		t := d.LastAttemptTime.UTC()
		f.LastAttemptTime = &t
	}
	return f
}

// deadLetterBody is what an HTTP dead letter receives.
func deadLetterBody(ev *funnelv1.FunnelEvent, summary string, f failureContext) ([]byte, error) {
	return json.Marshal(struct {
		Event        envelope       `json:"event"`
		Subscription string         `json:"subscription"`
		Failure      failureContext `json:"failure"`
	}{envelopeOf(ev, summary), f.Subscription, f})
}

// IdempotencyKey is the stable key of a delivery: the same for every attempt and
// operator restart, so targets can de-duplicate at-least-once deliveries. A replay is a
// new delivery, asked for by a person: its key ends in /replay-<n>.
func IdempotencyKey(ev *funnelv1.FunnelEvent, subscription string) string {
	return ev.Namespace + "/" + ev.Name + "/" + subscription + replaySuffix(ev)
}

// replaySuffix marks what a replay sends as new to targets that de-duplicate: "/replay-<n>"
// for the event's nth replay, nothing before the first.
func replaySuffix(ev *funnelv1.FunnelEvent) string {
	if ev.Status.Replays == 0 {
		return ""
	}
	return "/replay-" + strconv.Itoa(int(ev.Status.Replays))
}

// message is what one attempt of a delivery sends: the body and the headers that say
// what it is (the event, the delivery, the attempt). With failure, it is the attempt of the
// delivery's dead letter, which receives the failure document, or with body CloudEvent the
// event's CloudEvent with the failure in extension attributes.
func message(ev *funnelv1.FunnelEvent, summary, subscription string, a *funnelv1.HTTPAction, attemptNo int32, failure *failureContext) ([]byte, http.Header, error) {
	var body []byte
	var err error
	h := http.Header{}
	switch {
	case a.Body == funnelv1.BodyCloudEvent:
		body = dataOf(ev)
		setCloudEvent(h, ev, failure)
	case failure != nil:
		body, err = deadLetterBody(ev, summary, *failure)
	default:
		body, err = eventBody(ev, summary, a.Body)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("building the body: %w", err)
	}
	key := IdempotencyKey(ev, subscription)
	h.Set(funnelv1.IdempotencyKeyHeader, key)
	h.Set(HeaderWebhookID, webhookID(key, failure != nil))
	h.Set("X-Funnel-Event-Name", ev.Name)
	h.Set("X-Funnel-Event-Type", ev.Spec.Type)
	if ev.Spec.EventID != "" {
		h.Set("X-Funnel-Event-ID", ev.Spec.EventID)
	}
	h.Set("X-Funnel-Delivery-Attempt", strconv.Itoa(int(attemptNo)))
	if failure != nil {
		h.Set("X-Funnel-Dead-Letter", "true")
	}
	return body, h, nil
}

// trim bounds an error message to what status.deliveries[].lastError holds.
func trim(s string) string { return Truncate(s, 1000) }

// Truncate shortens s to at most n bytes, on a rune boundary, marking the cut with "…",
// so messages written to status always fit the field's bound.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// SecretRefs lists the Secret keys an action needs (headers and signing key of an HTTP
// action), so readiness checks and Secret watches agree with what deliveries read.
func SecretRefs(a *funnelv1.Action) []funnelv1.SecretKeyRef {
	if a == nil || a.HTTP == nil {
		return nil
	}
	var refs []funnelv1.SecretKeyRef
	for _, h := range a.HTTP.HeadersFrom {
		refs = append(refs, h.SecretRef)
	}
	return append(refs, SigningRefs(a)...)
}
