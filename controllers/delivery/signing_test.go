package delivery

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// capture is a target that records the last request it got.
type capture struct {
	mu     sync.Mutex
	header http.Header
	body   []byte
}

func newCapture(t *testing.T) (*capture, string) {
	t.Helper()
	c := &capture{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.header, c.body = r.Header.Clone(), body
		c.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func (c *capture) last() (http.Header, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header, c.body
}

func whsec(key string) string {
	return SigningKeyPrefix + base64.StdEncoding.EncodeToString([]byte(key))
}

// TestStandardWebhooks: a target that verifies with the specification's reference
// library accepts the operator's requests, with every key while one is rotated, and
// refuses a tampered body, another key and a request replayed later.
func TestStandardWebhooks(t *testing.T) {
	const (
		current  = "the-current-key-of-32-bytes-long"
		previous = "the-previous-key-of-32-bytes-lng"
		raw      = "sign-me"
	)
	secrets := fake.NewClientBuilder().WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "keys"},
		Data: map[string][]byte{
			"current":  []byte(whsec(current) + "\n"), // as kubectl create secret --from-file leaves it
			"previous": []byte(whsec(previous)),
			"raw":      []byte(raw),
		},
	}).Build()
	ref := func(key string) funnelv1.SecretKeyRef { return funnelv1.SecretKeyRef{Name: "keys", Key: key} }
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "evt-8932127"},
		Spec: funnelv1.FunnelEventSpec{Type: "lease_transaction.status_updated", EventID: "8932127", Format: funnelv1.FormatClassic,
			Data: runtime.RawExtension{Raw: []byte(`{"lease_transaction_id":74824,"current_status":"Approved"}`)}}}
	target, url := newCapture(t)
	hc := NewHTTPClient(NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil))

	// send makes one attempt of a to the target at now, and returns what the target got.
	send := func(t *testing.T, a *funnelv1.HTTPAction, now time.Time) (http.Header, []byte) {
		t.Helper()
		a.URL = url
		body, headers, err := message(ev, "Application 74824: Submitted → Approved", "pms-sync", a, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		req, err := newRequest(context.Background(), secrets, "ns", a, body, headers)
		if err != nil {
			t.Fatal(err)
		}
		if out := req.do(context.Background(), hc, now); !out.succeeded {
			t.Fatalf("attempt: %+v", out)
		}
		return target.last()
	}
	verifier := func(t *testing.T, secret string) *standardwebhooks.Webhook {
		t.Helper()
		wh, err := standardwebhooks.NewWebhook(secret)
		if strings.HasPrefix(secret, "raw:") {
			wh, err = standardwebhooks.NewWebhookRaw([]byte(strings.TrimPrefix(secret, "raw:")))
		}
		if err != nil {
			t.Fatal(err)
		}
		return wh
	}

	for _, tc := range []struct {
		name       string
		action     funnelv1.HTTPAction
		verifyWith []string // whsec_… or raw:…
		refusedBy  []string
		signatures int
		legacy     string // the former header's key, when it is sent
	}{
		{name: "one whsec_ key", action: funnelv1.HTTPAction{Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{ref("current")}}},
			verifyWith: []string{whsec(current)}, refusedBy: []string{whsec(previous), "raw:" + whsec(current)}, signatures: 1},
		{name: "rotation: both keys sign", action: funnelv1.HTTPAction{Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{ref("current"), ref("previous")}}},
			verifyWith: []string{whsec(current), whsec(previous)}, refusedBy: []string{whsec("another-key")}, signatures: 2},
		{name: "a raw key", action: funnelv1.HTTPAction{Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{ref("raw")}}},
			verifyWith: []string{"raw:" + raw}, refusedBy: []string{"raw:" + raw + "\n"}, signatures: 1},
		{name: "deprecated signingSecretRef: both headers", action: funnelv1.HTTPAction{SigningSecretRef: &funnelv1.SecretKeyRef{Name: "keys", Key: "raw"}},
			verifyWith: []string{"raw:" + raw}, signatures: 1, legacy: raw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			h, body := send(t, &tc.action, now)
			if got := h.Get(HeaderWebhookTimestamp); got != strconv.FormatInt(now.Unix(), 10) {
				t.Errorf("webhook-timestamp = %q, want the attempt's time %d", got, now.Unix())
			}
			if got := strings.Fields(h.Get(HeaderWebhookSignature)); len(got) != tc.signatures {
				t.Errorf("webhook-signature has %d signatures, want %d: %q", len(got), tc.signatures, got)
			}
			for _, key := range tc.verifyWith {
				wh := verifier(t, key)
				if err := wh.Verify(body, h); err != nil {
					t.Errorf("verifying with %s: %v", key, err)
				}
				tampered := []byte(strings.Replace(string(body), "Approved", "Denied", 1))
				if err := wh.Verify(tampered, h); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
					t.Errorf("a tampered body verified with %s: %v", key, err)
				}
				forged := h.Clone()
				forged.Set(HeaderWebhookID, "msg_forged")
				if err := wh.Verify(body, forged); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
					t.Errorf("another webhook-id verified with %s: %v", key, err)
				}
			}
			for _, key := range tc.refusedBy {
				if err := verifier(t, key).Verify(body, h); !errors.Is(err, standardwebhooks.ErrNoMatchingSignature) {
					t.Errorf("%s verified: %v", key, err)
				}
			}
			want := ""
			if tc.legacy != "" {
				want = funnel.Signature(funnel.HMACSHA256, []byte(tc.legacy), body)
			}
			if got := h.Get(funnelv1.SignatureHeader); got != want {
				t.Errorf("%s = %q, want %q", funnelv1.SignatureHeader, got, want)
			}

			// The same request captured and sent again later is refused for its age, though
			// its signature is still good.
			old := now.Add(-10 * time.Minute)
			h, body = send(t, &tc.action, old)
			wh := verifier(t, tc.verifyWith[0])
			if err := wh.Verify(body, h); !errors.Is(err, standardwebhooks.ErrMessageTooOld) {
				t.Errorf("signed 10 minutes ago: %v, want %v", err, standardwebhooks.ErrMessageTooOld)
			}
			if err := wh.VerifyIgnoringTimestamp(body, h); err != nil {
				t.Errorf("signed 10 minutes ago, ignoring its age: %v", err)
			}
		})
	}

	t.Run("unsigned: dated and identified, not signed", func(t *testing.T) {
		h, _ := send(t, &funnelv1.HTTPAction{}, time.Now())
		if h.Get(HeaderWebhookID) == "" || h.Get(HeaderWebhookTimestamp) == "" {
			t.Errorf("webhook-id %q, webhook-timestamp %q", h.Get(HeaderWebhookID), h.Get(HeaderWebhookTimestamp))
		}
		if got := h.Get(HeaderWebhookSignature) + h.Get(funnelv1.SignatureHeader); got != "" {
			t.Errorf("signed without a key: %q", got)
		}
	})
}

// TestSigningKeyErrors: a key the operator cannot use fails the attempt with a reason
// that names the Secret, never with the value, and is retried (the Secret may be fixed).
func TestSigningKeyErrors(t *testing.T) {
	secrets := fake.NewClientBuilder().WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "keys"},
		Data:       map[string][]byte{"bad": []byte("whsec_not*base64"), "good": []byte(whsec("k"))},
	}).Build()
	for _, tc := range []struct {
		ref  funnelv1.SecretKeyRef
		want string
	}{
		{funnelv1.SecretKeyRef{Name: "keys", Key: "bad"}, `signing key in Secret ns/keys, key "bad": invalid signing key: it starts with whsec_ but the rest is not base64`},
		{funnelv1.SecretKeyRef{Name: "keys", Key: "absent"}, `signing key: Secret ns/keys has no non-empty key "absent"`},
		{funnelv1.SecretKeyRef{Name: "gone", Key: "k"}, `signing key: reading Secret ns/gone`},
	} {
		a := &funnelv1.HTTPAction{URL: "http://pms.example", Signing: &funnelv1.HTTPSigning{
			SecretRefs: []funnelv1.SecretKeyRef{{Name: "keys", Key: "good"}, tc.ref}}}
		_, err := newRequest(context.Background(), secrets, "ns", a, []byte(`{}`), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "not*base64") {
			t.Errorf("%s: %v, want %q…", tc.ref.Key, err, tc.want)
		}
	}
}

func TestSigningKey(t *testing.T) {
	for _, tc := range []struct {
		value, want string
		err         bool
	}{
		{whsec("0123456789abcdef"), "0123456789abcdef", false},
		{" " + whsec("k") + "\n", "k", false},
		{"plain key\n", "plain key\n", false}, // raw keys are used byte for byte
		{"whsec", "whsec", false},
		{"whsec_", "", true},
		{"whsec_a-b_", "", true}, // URL-safe alphabet: not the spec's
		{"whsec_YWJj", "abc", false},
		{"whsec_YWJjZA", "", true}, // padding is part of standard base64
	} {
		got, err := SigningKey([]byte(tc.value))
		if (err != nil) != tc.err || string(got) != tc.want {
			t.Errorf("SigningKey(%q) = %q, %v; want %q, error %v", tc.value, got, err, tc.want, tc.err)
		}
		if err != nil && !errors.Is(err, ErrInvalidSigningKey) {
			t.Errorf("SigningKey(%q): %v is not ErrInvalidSigningKey", tc.value, err)
		}
	}
}

// TestWebhookID: one id per message, the same for each of its attempts; a dead letter is
// another message.
func TestWebhookID(t *testing.T) {
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "evt-1"}, Spec: funnelv1.FunnelEventSpec{Type: "lease.move_in"}}
	a := &funnelv1.HTTPAction{URL: "http://pms.example"}
	id := func(subscription string, attemptNo int32, deadLetter bool) string {
		var f *failureContext
		if deadLetter {
			f = &failureContext{Subscription: subscription, Attempts: 3}
		}
		_, h, err := message(ev, "", subscription, a, attemptNo, f)
		if err != nil {
			t.Fatal(err)
		}
		return h.Get(HeaderWebhookID)
	}
	first := id("pms", 1, false)
	if len(first) != len("msg_")+32 || !strings.HasPrefix(first, "msg_") {
		t.Errorf("webhook-id %q: want msg_ and 32 characters", first)
	}
	if got := id("pms", 7, false); got != first {
		t.Errorf("attempt 7 has webhook-id %q, attempt 1 %q", got, first)
	}
	if got := id("crm", 1, false); got == first {
		t.Errorf("two subscriptions share webhook-id %q", got)
	}
	if dl := id("pms", 1, true); dl == first || dl != id("pms", 2, true) {
		t.Errorf("dead letter webhook-id %q (delivery's %q) is not its own, stable id", dl, first)
	}
}

// TestSecretsReadOnce: a Secret that holds a header and two signing keys is read once per
// request, not three times.
func TestSecretsReadOnce(t *testing.T) {
	gets := 0
	c := fake.NewClientBuilder().WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pms"},
		Data:       map[string][]byte{"auth": []byte("Bearer t"), "k1": []byte(whsec("one")), "k2": []byte("two")},
	}).WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		gets++
		return c.Get(ctx, key, obj, opts...)
	}}).Build()
	a := &funnelv1.HTTPAction{URL: "http://pms.example",
		HeadersFrom: []funnelv1.HTTPHeaderFromSecret{{Name: "Authorization", SecretRef: funnelv1.SecretKeyRef{Name: "pms", Key: "auth"}}},
		Signing:     &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "pms", Key: "k1"}, {Name: "pms", Key: "k2"}}}}
	req, err := newRequest(context.Background(), c, "ns", a, []byte(`{}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if gets != 1 {
		t.Errorf("Secret read %d times, want once", gets)
	}
	if len(req.signer.keys) != 2 || string(req.signer.keys[0]) != "one" || string(req.signer.keys[1]) != "two" {
		t.Errorf("keys %q", req.signer.keys)
	}
}
