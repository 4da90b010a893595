package delivery

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// ceTarget decodes every request with the CloudEvents SDK, as a Knative Broker, Argo
// Events or Dapr would, and keeps the last event, the decoding error and the raw request.
type ceTarget struct {
	mu     sync.Mutex
	event  *cloudevents.Event
	err    error
	header http.Header
	body   []byte
}

func newCETarget(t *testing.T) (*ceTarget, string) {
	t.Helper()
	c := &ceTarget{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Clone()
		e, err := cehttp.NewEventFromHTTPRequest(r)
		if err == nil {
			err = e.Validate()
		}
		var body []byte
		if e != nil {
			body = e.Data()
		}
		c.mu.Lock()
		c.event, c.err, c.header, c.body = e, err, header, body
		c.mu.Unlock()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return c, srv.URL
}

func (c *ceTarget) last() (*cloudevents.Event, http.Header, []byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.event, c.header, c.body, c.err
}

// TestCloudEvent: with body CloudEvent, the CloudEvents SDK decodes a valid 1.0 event in
// binary mode from every request, with every attribute as documented and the data
// verbatim (integers beyond float64's precision exact); dead letters are the same event
// with the failure in extension attributes; a Standard Webhooks signature covers the data.
func TestCloudEvent(t *testing.T) {
	occurred := time.Date(2023, 3, 29, 4, 27, 8, 0, time.UTC)
	received := metav1.NewMicroTime(time.Date(2026, 11, 30, 4, 0, 1, 0, time.UTC))
	classic := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "evt-8932127-3c1a9f0b2d"},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatClassic, EventID: "8932127",
			Type: "lease_transaction.status_updated", OccurredAt: &metav1.MicroTime{Time: occurred}, ReceivedAt: received,
			Data: runtime.RawExtension{Raw: []byte(`{"lease_transaction_id":74824,"current_status":"Approved","client_id":12453,` +
				`"community_id":43522,"unit_id":"B-204","deposit_cents":9007199254740993,"charges":[{"amount":250000}]}`)}}}
	prospect := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "evt-partner-91b2"},
		Spec: funnelv1.FunnelEventSpec{Receiver: "partners", Format: funnelv1.FormatPartnerV2, Type: "renter.created", ReceivedAt: received,
			Data: runtime.RawExtension{Raw: []byte(`{"funnel_renter_id":5501,"funnel_community_id":43522,"first_name":"Zoë"}`)}}}
	odd := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "evt-77"},
		Spec: funnelv1.FunnelEventSpec{Receiver: "funnel", Format: funnelv1.FormatV3, EventID: "77", Type: `custom "tour" 100% ✓`,
			ReceivedAt: received}}
	lastAttempt := time.Date(2026, 11, 30, 4, 12, 0, 0, time.UTC)

	const key = "the-key-of-the-knative-bridge-32"
	secrets := fake.NewClientBuilder().WithObjects(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "keys"},
		Data: map[string][]byte{"k": []byte(whsec(key))}}).Build()
	target, targetURL := newCETarget(t)
	hc := NewHTTPClient(NewAddressPolicy([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, nil))

	for _, tc := range []struct {
		name       string
		ev         *funnelv1.FunnelEvent
		failure    *failureContext
		source     string
		time       time.Time
		subject    string
		extensions map[string]string
		data       string
	}{{
		name: "lease transaction", ev: classic,
		source: "/apis/funnel.leasing.dev/v1alpha1/namespaces/leasing/funnelreceivers/funnel", time: occurred,
		subject:    "lease-transaction/74824",
		extensions: map[string]string{"leasetransactionid": "74824", "communityid": "43522", "clientid": "12453", "unitid": "B-204"},
		data:       string(classic.Spec.Data.Raw),
	}, {
		name: "prospect: no occurredAt, the renter is the subject", ev: prospect,
		source: "/apis/funnel.leasing.dev/v1alpha1/namespaces/leasing/funnelreceivers/partners", time: received.Time,
		subject:    "renter/5501",
		extensions: map[string]string{"renterid": "5501", "communityid": "43522"},
		data:       string(prospect.Spec.Data.Raw),
	}, {
		name: "no data, no subject, a type that needs percent-encoding", ev: odd,
		source: "/apis/funnel.leasing.dev/v1alpha1/namespaces/leasing/funnelreceivers/funnel", time: received.Time,
		extensions: map[string]string{}, data: "{}",
	}, {
		name: "dead letter", ev: classic,
		failure: &failureContext{Subscription: "pms-sync", Attempts: 6, LastError: "HTTP 503 Service Unavailable", ResponseCode: 503, LastAttemptTime: &lastAttempt},
		source:  "/apis/funnel.leasing.dev/v1alpha1/namespaces/leasing/funnelreceivers/funnel", time: occurred,
		subject: "lease-transaction/74824",
		extensions: map[string]string{"leasetransactionid": "74824", "communityid": "43522", "clientid": "12453", "unitid": "B-204",
			"funnelsubscription": "pms-sync", "funnelattempts": "6", "funnelerror": "HTTP 503 Service Unavailable",
			"funnelresponsecode": "503", "funnellastattempt": "2026-11-30T04:12:00Z"},
		data: string(classic.Spec.Data.Raw),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			a := &funnelv1.HTTPAction{URL: targetURL, Body: funnelv1.BodyCloudEvent,
				Signing: &funnelv1.HTTPSigning{SecretRefs: []funnelv1.SecretKeyRef{{Name: "keys", Key: "k"}}}}
			body, headers, err := message(tc.ev, "a summary the CloudEvent does not carry", "pms-sync", a, 3, tc.failure)
			if err != nil {
				t.Fatal(err)
			}
			req, err := newRequest(context.Background(), secrets, tc.ev.Namespace, a, body, headers)
			if err != nil {
				t.Fatal(err)
			}
			if out := req.do(context.Background(), hc, time.Now()); !out.succeeded {
				t.Fatalf("attempt: %+v", out)
			}
			e, h, data, err := target.last()
			if err != nil {
				t.Fatalf("the CloudEvents SDK refused the request: %v", err)
			}
			// The HTTP binding has receivers percent-decode header values; the Go SDK leaves it to them.
			decoded := func(s string) string {
				t.Helper()
				v, err := url.PathUnescape(s)
				if err != nil {
					t.Errorf("%q is not percent-encoded: %v", s, err)
				}
				return v
			}
			for attr, got := range map[string][2]string{
				"specversion":     {e.SpecVersion(), "1.0"},
				"id":              {e.ID(), tc.ev.Name},
				"source":          {e.Source(), tc.source},
				"type":            {decoded(e.Type()), tc.ev.Spec.Type},
				"subject":         {e.Subject(), tc.subject},
				"datacontenttype": {e.DataContentType(), "application/json"},
				"dataschema":      {e.DataSchema(), ""},
			} {
				if got[0] != got[1] {
					t.Errorf("%s = %q, want %q", attr, got[0], got[1])
				}
			}
			if !e.Time().Equal(tc.time) {
				t.Errorf("time = %s, want %s", e.Time(), tc.time)
			}
			ext := map[string]string{}
			for name, v := range e.Extensions() {
				s, _ := v.(string)
				ext[name] = decoded(s)
			}
			if len(ext) != len(tc.extensions) {
				t.Errorf("extensions %q, want %q", ext, tc.extensions)
			}
			for name, want := range tc.extensions {
				if ext[name] != want {
					t.Errorf("extension %s = %q, want %q", name, ext[name], want)
				}
			}
			if string(data) != tc.data {
				t.Errorf("data %s, want verbatim %s", data, tc.data)
			}
			var decodedData map[string]any
			if err := e.DataAs(&decodedData); err != nil {
				t.Errorf("data is not the JSON object: %v", err)
			}
			wh, err := standardwebhooks.NewWebhookRaw([]byte(key))
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(data, h); err != nil {
				t.Errorf("webhook-signature over the data: %v", err)
			}
			if got := h.Get("X-Funnel-Dead-Letter"); (got == "true") != (tc.failure != nil) {
				t.Errorf("X-Funnel-Dead-Letter = %q", got)
			}
		})
	}

	t.Run("the same ce-id for every subscription and attempt, a new one for a replay", func(t *testing.T) {
		a := &funnelv1.HTTPAction{Body: funnelv1.BodyCloudEvent}
		_, first, err := message(classic, "", "pms-sync", a, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, later, err := message(classic, "", "crm", a, 7, &failureContext{Subscription: "crm", Attempts: 7})
		if err != nil {
			t.Fatal(err)
		}
		if first.Get("Ce-Id") != classic.Name || later.Get("Ce-Id") != classic.Name {
			t.Errorf("ce-id %q and %q, want the event's name %q", first.Get("Ce-Id"), later.Get("Ce-Id"), classic.Name)
		}
		replayed := classic.DeepCopy()
		replayed.Status.Replays = 2
		_, h, err := message(replayed, "", "pms-sync", a, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := h.Get("Ce-Id"), classic.Name+"/replay-2"; got != want {
			t.Errorf("the second replay's ce-id = %q, want %q", got, want)
		}
	})

	t.Run("other bodies carry no CloudEvents attributes", func(t *testing.T) {
		for _, kind := range []funnelv1.HTTPBody{funnelv1.BodyEnvelope, funnelv1.BodyOriginal, ""} {
			_, h, err := message(classic, "", "pms-sync", &funnelv1.HTTPAction{Body: kind}, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			for name := range h {
				if strings.HasPrefix(strings.ToLower(name), "ce-") {
					t.Errorf("body %q sends %s", kind, name)
				}
			}
		}
	})
}

func TestCEHeaderValue(t *testing.T) {
	for in, want := range map[string]string{
		"lease_transaction.status_updated": "lease_transaction.status_updated",
		"HTTP 503 Service Unavailable":     "HTTP%20503%20Service%20Unavailable",
		`say "hi"`:                         "say%20%22hi%22",
		"100%":                             "100%25",
		"café":                             "caf%C3%A9",
		"tab\there":                        "tab%09here",
		"":                                 "",
	} {
		if got := ceHeaderValue(in); got != want {
			t.Errorf("ceHeaderValue(%q) = %q, want %q", in, got, want)
		}
		if back, err := url.PathUnescape(ceHeaderValue(in)); err != nil || back != in {
			t.Errorf("%q does not decode back: %q, %v", in, back, err)
		}
	}
}
