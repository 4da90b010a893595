package v1alpha1_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// newObject builds an unstructured object of one of our kinds, so specs can carry values
// the typed structs cannot express (wrong types, unknown enum values).
func newObject(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(funnelv1.GroupVersion.String())
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// validEventSpec is a classic lease_transaction.status_updated event as the receiver stores it.
func validEventSpec() map[string]any {
	return map[string]any{
		"receiver":   "funnel",
		"format":     "Classic",
		"eventID":    "8932127",
		"type":       "lease_transaction.status_updated",
		"occurredAt": "2023-03-29T04:27:08.000000Z",
		"receivedAt": "2023-03-29T04:27:09.123456Z",
		"data": map[string]any{
			"lease_transaction_id":   int64(74824),
			"lease_transaction_type": "Application",
			"current_status":         "Approved",
			"previous_status":        "Submitted",
			"client_id":              int64(12453),
			"community_id":           int64(43522),
		},
	}
}

// validReceiverSpec is a receiver authenticated with a token.
func validReceiverSpec() map[string]any {
	return map[string]any{
		"auth": map[string]any{
			"token": map[string]any{"secretRef": map[string]any{"name": "funnel-token", "key": "token"}},
		},
	}
}

// set assigns value at a dotted path inside spec ("auth.token.header"), creating maps on the
// way; a nil value deletes the field.
func set(spec map[string]any, path string, value any) map[string]any {
	keys := strings.Split(path, ".")
	m := spec
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	if value == nil {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = value
	}
	return spec
}

var _ = Describe("FunnelEvent schema", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "fev")
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("create",
		func(mutate func(map[string]any), wantErr string) {
			spec := validEventSpec()
			mutate(spec)
			err := k8s.Create(ctx, newObject("FunnelEvent", ns, "evt-1", spec))
			if wantErr == "" {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(ContainSubstring(wantErr)))
			}
		},
		Entry("classic event", func(map[string]any) {}, ""),
		Entry("V3 event with microseconds", func(s map[string]any) {
			set(s, "format", "V3")
			set(s, "eventID", "8cc87045-1111-4a16-a882-454044e6762a")
			set(s, "occurredAt", "2024-10-09T13:49:31.658518Z")
		}, ""),
		Entry("PartnerV2 event without id and time", func(s map[string]any) {
			set(s, "format", "PartnerV2")
			set(s, "eventID", nil)
			set(s, "occurredAt", nil)
			set(s, "type", "renter.status-change")
		}, ""),
		Entry("unknown event type and nested data", func(s map[string]any) {
			set(s, "type", "brand_new.thing")
			set(s, "data", map[string]any{"nested": map[string]any{"list": []any{int64(1), "two", nil}}})
		}, ""),
		Entry("empty data object", func(s map[string]any) { set(s, "data", map[string]any{}) }, ""),
		Entry("unknown format", func(s map[string]any) { set(s, "format", "XML") }, `spec.format: Unsupported value: "XML"`),
		Entry("missing format", func(s map[string]any) { set(s, "format", nil) }, "spec.format: Required value"),
		Entry("missing type", func(s map[string]any) { set(s, "type", nil) }, "spec.type: Required value"),
		Entry("empty type", func(s map[string]any) { set(s, "type", "") }, "spec.type: Invalid value"),
		Entry("type over 253 characters", func(s map[string]any) { set(s, "type", strings.Repeat("a", 254)) }, "spec.type: Too long"),
		Entry("missing receiver", func(s map[string]any) { set(s, "receiver", nil) }, "spec.receiver: Required value"),
		Entry("receiver over 253 characters", func(s map[string]any) { set(s, "receiver", strings.Repeat("r", 254)) }, "spec.receiver: Too long"),
		Entry("eventID over 253 characters", func(s map[string]any) { set(s, "eventID", strings.Repeat("1", 254)) }, "spec.eventID: Too long"),
		Entry("idempotencyKey over 512 characters", func(s map[string]any) { set(s, "idempotencyKey", strings.Repeat("k", 513)) }, "spec.idempotencyKey: Too long"),
		Entry("missing receivedAt", func(s map[string]any) { set(s, "receivedAt", nil) }, "spec.receivedAt: Required value"),
		Entry("occurredAt not a time", func(s map[string]any) { set(s, "occurredAt", "yesterday") }, "spec.occurredAt"),
		Entry("missing data", func(s map[string]any) { set(s, "data", nil) }, "spec.data: Required value"),
		Entry("data is a string", func(s map[string]any) { set(s, "data", "payload") }, "spec.data: Invalid value"),
		Entry("data is a list", func(s map[string]any) { set(s, "data", []any{int64(1)}) }, "spec.data: Invalid value"),
	)

	It("keeps integers in data exact, beyond float64 precision", func() {
		spec := validEventSpec()
		set(spec, "data.lease_transaction_id", int64(9007199254740993)) // 2^53 + 1
		Expect(k8s.Create(ctx, newObject("FunnelEvent", ns, "evt-big", spec))).To(Succeed())
		var got funnelv1.FunnelEvent
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "evt-big"}, &got)).To(Succeed())
		Expect(string(got.Spec.Data.Raw)).To(ContainSubstring(`"lease_transaction_id":9007199254740993`))
	})

	Describe("immutability", func() {
		var event *funnelv1.FunnelEvent
		BeforeEach(func() {
			Expect(k8s.Create(ctx, newObject("FunnelEvent", ns, "evt-1", validEventSpec()))).To(Succeed())
			event = &funnelv1.FunnelEvent{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "evt-1"}, event)).To(Succeed())
		})

		DescribeTable("spec changes are refused",
			func(mutate func(*funnelv1.FunnelEvent)) {
				mutate(event)
				Expect(k8s.Update(ctx, event)).To(MatchError(ContainSubstring("spec is immutable")))
			},
			Entry("type", func(e *funnelv1.FunnelEvent) { e.Spec.Type = "quote.created" }),
			Entry("eventID", func(e *funnelv1.FunnelEvent) { e.Spec.EventID = "1" }),
			Entry("receiver", func(e *funnelv1.FunnelEvent) { e.Spec.Receiver = "other" }),
			Entry("format", func(e *funnelv1.FunnelEvent) { e.Spec.Format = funnelv1.FormatV3 }),
			Entry("occurredAt", func(e *funnelv1.FunnelEvent) { e.Spec.OccurredAt = nil }),
			Entry("data", func(e *funnelv1.FunnelEvent) {
				e.Spec.Data = runtime.RawExtension{Raw: []byte(`{"lease_transaction_id":1}`)}
			}),
			Entry("a value inside data", func(e *funnelv1.FunnelEvent) {
				e.Spec.Data = runtime.RawExtension{Raw: []byte(strings.Replace(string(e.Spec.Data.Raw), "Approved", "Denied", 1))}
			}),
		)

		It("allows label, annotation and status changes", func() {
			event.Labels = map[string]string{"team": "leasing"}
			event.Annotations = map[string]string{funnelv1.AnnotationReplay: "1"}
			Expect(k8s.Update(ctx, event)).To(Succeed())
			event.Status.Phase = funnelv1.PhaseSucceeded
			event.Status.Summary = "Application 74824: Submitted → Approved"
			Expect(k8s.Status().Update(ctx, event)).To(Succeed())
		})

		DescribeTable("status is validated",
			func(mutate func(*funnelv1.FunnelEventStatus), wantErr string) {
				mutate(&event.Status)
				Expect(k8s.Status().Update(ctx, event)).To(MatchError(ContainSubstring(wantErr)))
			},
			Entry("unknown phase", func(s *funnelv1.FunnelEventStatus) { s.Phase = "Done" }, `status.phase: Unsupported value: "Done"`),
			Entry("summary over 256 characters", func(s *funnelv1.FunnelEventStatus) { s.Summary = strings.Repeat("s", 257) }, "status.summary: Too long"),
			Entry("unknown delivery phase", func(s *funnelv1.FunnelEventStatus) {
				s.Deliveries = []funnelv1.DeliveryStatus{{Subscription: "pms", AttemptStatus: funnelv1.AttemptStatus{Phase: "Lost"}}}
			}, `status.deliveries[0].phase: Unsupported value: "Lost"`),
			Entry("negative duplicates", func(s *funnelv1.FunnelEventStatus) { s.Duplicates = -1 }, "status.duplicates: Invalid value"),
			Entry("duplicate delivery entries", func(s *funnelv1.FunnelEventStatus) {
				s.Deliveries = []funnelv1.DeliveryStatus{{Subscription: "pms", AttemptStatus: funnelv1.AttemptStatus{Phase: "Pending"}}, {Subscription: "pms", AttemptStatus: funnelv1.AttemptStatus{Phase: "Pending"}}}
			}, "Duplicate value"),
		)
	})
})

var _ = Describe("FunnelReceiver schema", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "frcv")
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("create",
		func(mutate func(map[string]any), wantErr string) {
			spec := validReceiverSpec()
			mutate(spec)
			err := k8s.Create(ctx, newObject("FunnelReceiver", ns, "funnel", spec))
			if wantErr == "" {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(ContainSubstring(wantErr)))
			}
		},
		Entry("token", func(map[string]any) {}, ""),
		Entry("token, HMAC and CIDRs", func(s map[string]any) {
			set(s, "auth.hmac", map[string]any{"secretRef": map[string]any{"name": "sig", "key": "key"}, "algorithm": "sha512", "header": "X-Signature"})
			set(s, "auth.allowedCIDRs", []any{"10.0.0.0/8", "2001:db8::/32"})
		}, ""),
		Entry("insecureSkipAuth alone", func(s map[string]any) {
			set(s, "auth", map[string]any{"insecureSkipAuth": true})
		}, ""),
		Entry("no auth at all (admitted; the controller reports it)", func(s map[string]any) { set(s, "auth", nil) }, ""),
		Entry("all limits at their bounds", func(s map[string]any) {
			set(s, "maxBodyBytes", int64(1048576))
			set(s, "retention.maxEvents", int64(10000000))
			set(s, "formats", []any{"Classic", "V3", "PartnerV2"})
		}, ""),
		Entry("insecureSkipAuth with a token", func(s map[string]any) {
			set(s, "auth.insecureSkipAuth", true)
		}, "insecureSkipAuth cannot be combined with token or hmac"),
		Entry("not a CIDR", func(s map[string]any) {
			set(s, "auth.allowedCIDRs", []any{"10.0.0.1"})
		}, "must be a CIDR"),
		Entry("duplicate CIDRs", func(s map[string]any) {
			set(s, "auth.allowedCIDRs", []any{"10.0.0.0/8", "10.0.0.0/8"})
		}, "Duplicate value"),
		Entry("unknown HMAC algorithm", func(s map[string]any) {
			set(s, "auth.hmac", map[string]any{"secretRef": map[string]any{"name": "sig", "key": "key"}, "algorithm": "md5"})
		}, `spec.auth.hmac.algorithm: Unsupported value: "md5"`),
		Entry("header with a space", func(s map[string]any) {
			set(s, "auth.token.header", "X Token")
		}, "spec.auth.token.header: Invalid value"),
		Entry("Secret key with a slash", func(s map[string]any) {
			set(s, "auth.token.secretRef.key", "a/b")
		}, "spec.auth.token.secretRef.key: Invalid value"),
		Entry("Secret without a name", func(s map[string]any) {
			set(s, "auth.token.secretRef.name", nil)
		}, "spec.auth.token.secretRef.name: Required value"),
		Entry("body limit above 1 MiB", func(s map[string]any) { set(s, "maxBodyBytes", int64(1048577)) }, "spec.maxBodyBytes: Invalid value"),
		Entry("body limit below 1 KiB", func(s map[string]any) { set(s, "maxBodyBytes", int64(100)) }, "spec.maxBodyBytes: Invalid value"),
		Entry("unknown format", func(s map[string]any) { set(s, "formats", []any{"SOAP"}) }, `Unsupported value: "SOAP"`),
		Entry("duplicate format", func(s map[string]any) { set(s, "formats", []any{"V3", "V3"}) }, "Duplicate value"),
		Entry("trusted proxy not a CIDR", func(s map[string]any) {
			set(s, "auth.trustedProxies", []any{"proxy.example.com"})
		}, "must be a CIDR"),
		Entry("rate limit zero", func(s map[string]any) { set(s, "rateLimit.requestsPerSecond", int64(0)) }, "spec.rateLimit.requestsPerSecond: Invalid value"),
		Entry("burst above the bound", func(s map[string]any) { set(s, "rateLimit.burst", int64(100001)) }, "spec.rateLimit.burst: Invalid value"),
		Entry("a rate limit without its rate", func(s map[string]any) { set(s, "rateLimit.burst", int64(10)) }, "spec.rateLimit.requestsPerSecond: Required value"),
		Entry("a rate limit of 1/s", func(s map[string]any) { set(s, "rateLimit.requestsPerSecond", int64(1)) }, ""),
		Entry("maxEvents zero: no cap", func(s map[string]any) { set(s, "retention.maxEvents", int64(0)) }, ""),
		Entry("maxEvents negative", func(s map[string]any) { set(s, "retention.maxEvents", int64(-1)) }, "spec.retention.maxEvents: Invalid value"),
		Entry("maxEvents above the bound", func(s map[string]any) { set(s, "retention.maxEvents", int64(10000001)) }, "spec.retention.maxEvents: Invalid value"),
		Entry("retention not a duration", func(s map[string]any) { set(s, "retention.succeeded", "a week") }, "spec.retention.succeeded"),
		Entry("dedupe window of a week", func(s map[string]any) { set(s, "dedupeWindow", "168h") }, ""),
		Entry("dedupe window shorter than an hour", func(s map[string]any) { set(s, "dedupeWindow", "30m") }, "must be between 1h and 8760h"),
		Entry("dedupe window longer than a year", func(s map[string]any) { set(s, "dedupeWindow", "8761h") }, "must be between 1h and 8760h"),
		Entry("dedupe window not a duration", func(s map[string]any) { set(s, "dedupeWindow", "a day") }, "spec.dedupeWindow"),
	)

	It("applies the documented defaults", func() {
		Expect(k8s.Create(ctx, newObject("FunnelReceiver", ns, "funnel", set(validReceiverSpec(), "auth.hmac",
			map[string]any{"secretRef": map[string]any{"name": "sig", "key": "key"}})))).To(Succeed())
		var got funnelv1.FunnelReceiver
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "funnel"}, &got)).To(Succeed())
		Expect(got.Spec.Auth.Token.Header).To(Equal(funnelv1.DefaultTokenHeader))
		Expect(got.Spec.Auth.HMAC.Header).To(Equal(funnelv1.DefaultHMACHeader))
		Expect(got.Spec.Auth.HMAC.Algorithm).To(Equal(funnelv1.HMACSHA256))
		Expect(*got.Spec.MaxBodyBytes).To(Equal(funnelv1.DefaultMaxBodyBytes))
		Expect(got.Spec.Retention.Succeeded).To(Equal(funnelv1.NewDuration(funnelv1.DefaultSucceededRetention)))
		Expect(got.Spec.Retention.Failed).To(Equal(funnelv1.NewDuration(funnelv1.DefaultFailedRetention)))
		Expect(got.Spec.Retention.MaxEvents).To(HaveValue(Equal(funnelv1.DefaultMaxEvents)), "bounded by default")
		Expect(got.Spec.DedupeWindow).To(Equal(funnelv1.NewDuration(24 * time.Hour)))
		Expect(got.Spec.RateLimit).To(BeNil(), "no rate limit by default")
	})
})

var _ = Describe("kubectl presentation", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "kubectl")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8s.Create(ctx, newObject("FunnelEvent", ns, "evt-8932127", validEventSpec()))).To(Succeed())
		Expect(k8s.Create(ctx, newObject("FunnelReceiver", ns, "funnel", validReceiverSpec()))).To(Succeed())
	})

	It("lists FunnelEvents by short name with the pinned columns", func() {
		out, err := testenv.Kubectl(env, "get", "fev", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(Equal([]string{"NAME", "TYPE", "PHASE", "SUMMARY", "OCCURRED", "AGE"}))
		Expect(out).To(ContainSubstring("evt-8932127"))
		Expect(out).To(ContainSubstring("lease_transaction.status_updated"))

		out, err = testenv.Kubectl(env, "get", "fev", "-n", ns, "-o", "wide")
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(ContainElements("ATTEMPTS", "SUMMARY"))
	})

	It("lists every kind in the funnel category", func() {
		out, err := testenv.Kubectl(env, "get", "funnel", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("funnelevent.funnel.leasing.dev/evt-8932127"))
		Expect(out).To(ContainSubstring("funnelreceiver.funnel.leasing.dev/funnel"))
	})

	It("lists FunnelReceivers by short name", func() {
		out, err := testenv.Kubectl(env, "get", "frcv", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(Equal([]string{"NAME", "READY", "REASON", "PATH", "AGE"}))
	})

	It("documents the FunnelEvent spec in kubectl explain", func() {
		out, err := testenv.Kubectl(env, "explain", "funnelevent.spec")
		Expect(err).NotTo(HaveOccurred())
		for _, field := range []string{"receiver", "format", "eventID", "type", "occurredAt", "idempotencyKey", "receivedAt", "data"} {
			Expect(out).To(MatchRegexp(`(?m)^\s+%s\s`, field))
		}
		Expect(out).To(ContainSubstring("immutable"))
	})
})

// validSubscriptionSpec is an HTTP subscription for approved applications.
func validSubscriptionSpec() map[string]any {
	return map[string]any{
		"eventTypes": []any{"lease_transaction.status_updated"},
		"filter":     "event.data.current_status == 'Approved'",
		"action":     map[string]any{"http": map[string]any{"url": "http://pms-sync.leasing.svc:8080/funnel"}},
	}
}

func keyRef(name, key string) map[string]any { return map[string]any{"name": name, "key": key} }

var jobTemplate = map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
	"restartPolicy": "Never",
	"containers":    []any{map[string]any{"name": "move-in", "image": "example.com/move-in:1"}},
}}}}

var _ = Describe("FunnelSubscription schema", func() {
	var ns string
	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "fsub")
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("create",
		func(mutate func(map[string]any), wantErr string) {
			spec := validSubscriptionSpec()
			mutate(spec)
			err := k8s.Create(ctx, newObject("FunnelSubscription", ns, "pms", spec))
			if wantErr == "" {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(ContainSubstring(wantErr)))
			}
		},
		Entry("HTTP action", func(map[string]any) {}, ""),
		Entry("Job action for every move-in", func(s map[string]any) {
			set(s, "eventTypes", []any{"lease.move_in", "lease.resident_move_in"})
			set(s, "action", map[string]any{"job": map[string]any{"template": jobTemplate}})
		}, ""),
		Entry("patterns and a full delivery policy", func(s map[string]any) {
			set(s, "eventTypes", []any{"lease_transaction.*", "renter.status-change", "*"})
			set(s, "receiver", "funnel")
			set(s, "action.http.method", "PUT")
			set(s, "action.http.headers", []any{map[string]any{"name": "X-Source", "value": "funnel"}})
			set(s, "action.http.headersFrom", []any{map[string]any{"name": "Authorization", "secretRef": map[string]any{"name": "pms", "key": "auth"}}})
			set(s, "action.http.signingSecretRef", map[string]any{"name": "pms", "key": "hmac"})
			set(s, "action.http.body", "Original")
			set(s, "delivery", map[string]any{"retries": int64(10), "backoffPolicy": "linear", "backoffDelay": "500ms",
				"maxBackoff": "1h", "timeout": "24h", "deadLetter": map[string]any{"http": map[string]any{"url": "https://log.example.com/dlq"}}})
		}, ""),
		Entry("no action", func(s map[string]any) { set(s, "action", map[string]any{}) }, "exactly one of http or job must be set"),
		Entry("both actions", func(s map[string]any) {
			set(s, "action.job", map[string]any{"template": jobTemplate})
		}, "exactly one of http or job must be set"),
		Entry("dead letter with both actions", func(s map[string]any) {
			set(s, "delivery.deadLetter", map[string]any{"http": map[string]any{"url": "http://a.b"}, "job": map[string]any{"template": jobTemplate}})
		}, "exactly one of http or job must be set"),
		Entry("no event types", func(s map[string]any) { set(s, "eventTypes", []any{}) }, "spec.eventTypes: Invalid value"),
		Entry("a pattern in the middle", func(s map[string]any) { set(s, "eventTypes", []any{"lease.*.move_in"}) }, "spec.eventTypes[0]: Invalid value"),
		Entry("a bare prefix pattern", func(s map[string]any) { set(s, "eventTypes", []any{"lease*"}) }, "spec.eventTypes[0]: Invalid value"),
		Entry("a relative URL", func(s map[string]any) { set(s, "action.http.url", "/funnel") }, "must be an absolute http or https URL"),
		Entry("an ftp URL", func(s map[string]any) { set(s, "action.http.url", "ftp://files.example.com/x") }, "must be an absolute http or https URL"),
		Entry("GET method", func(s map[string]any) { set(s, "action.http.method", "GET") }, `Unsupported value: "GET"`),
		Entry("unknown body", func(s map[string]any) { set(s, "action.http.body", "XML") }, `Unsupported value: "XML"`),
		Entry("header name with a colon", func(s map[string]any) {
			set(s, "action.http.headers", []any{map[string]any{"name": "X-A:", "value": "b"}})
		}, "spec.action.http.headers[0].name: Invalid value"),
		Entry("a timeout of a minute", func(s map[string]any) { set(s, "action.http.timeout", "1m") }, ""),
		Entry("a timeout past a minute", func(s map[string]any) { set(s, "action.http.timeout", "61s") }, "must be more than 0 and at most 60s"),
		Entry("a dead letter's timeout past a minute", func(s map[string]any) {
			set(s, "delivery.deadLetter", map[string]any{"http": map[string]any{"url": "http://a.b", "timeout": "2m"}})
		}, "must be more than 0 and at most 60s"),
		Entry("a zero timeout", func(s map[string]any) { set(s, "action.http.timeout", "0s") }, "must be more than 0 and at most 60s"),
		Entry("a header the operator does not set, in any case", func(s map[string]any) {
			set(s, "action.http.headers", []any{map[string]any{"name": "x-funnel", "value": "a"}, map[string]any{"name": "CONTENT-LANGUAGE", "value": "b"}})
		}, ""),
		Entry("traceparent: the operator sends the attempt's trace context", func(s map[string]any) {
			set(s, "action.http.headers", []any{map[string]any{"name": "Traceparent", "value": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})
		}, "header Traceparent is reserved"),
		Entry("tracestate from a Secret", func(s map[string]any) {
			set(s, "action.http.headersFrom", []any{map[string]any{"name": "tracestate", "secretRef": map[string]any{"name": "pms", "key": "state"}}})
		}, "header tracestate is reserved"),
		Entry("a header that only starts like the trace context", func(s map[string]any) {
			set(s, "action.http.headers", []any{map[string]any{"name": "traceparent-origin", "value": "funnel"}})
		}, ""),
		Entry("signed with two keys while one is rotated, and a signed dead letter", func(s map[string]any) {
			set(s, "action.http.signing.secretRefs", []any{keyRef("pms", "current"), keyRef("pms-next", "current")})
			set(s, "delivery.deadLetter", map[string]any{"http": map[string]any{"url": "http://a.b",
				"signing": map[string]any{"secretRefs": []any{keyRef("dlq", "key")}}}})
		}, ""),
		Entry("signing without keys", func(s map[string]any) { set(s, "action.http.signing.secretRefs", []any{}) },
			"spec.action.http.signing.secretRefs: Invalid value"),
		Entry("signing with five keys", func(s map[string]any) {
			set(s, "action.http.signing.secretRefs", []any{keyRef("a", "k"), keyRef("b", "k"), keyRef("c", "k"), keyRef("d", "k"), keyRef("e", "k")})
		}, "spec.action.http.signing.secretRefs: Too many"),
		Entry("the same signing key twice", func(s map[string]any) {
			set(s, "action.http.signing.secretRefs", []any{keyRef("pms", "k"), keyRef("other", "k"), keyRef("pms", "k")})
		}, "each Secret key may be listed once"),
		Entry("signing and the deprecated signingSecretRef", func(s map[string]any) {
			set(s, "action.http.signing.secretRefs", []any{keyRef("pms", "k")})
			set(s, "action.http.signingSecretRef", keyRef("pms", "hmac"))
		}, "signing replaces the deprecated signingSecretRef: set one of them"),
		Entry("negative retries", func(s map[string]any) { set(s, "delivery.retries", int64(-1)) }, "spec.delivery.retries: Invalid value"),
		Entry("too many retries", func(s map[string]any) { set(s, "delivery.retries", int64(101)) }, "spec.delivery.retries: Invalid value"),
		Entry("unknown backoff", func(s map[string]any) { set(s, "delivery.backoffPolicy", "random") }, `Unsupported value: "random"`),
		Entry("ordered by lease transaction", func(s map[string]any) { set(s, "ordering", map[string]any{"key": "lease-transaction"}) }, ""),
		Entry("ordered by an unknown subject", func(s map[string]any) { set(s, "ordering", map[string]any{"key": "building"}) }, `spec.ordering.key: Unsupported value: "building"`),
		Entry("ordering without a key", func(s map[string]any) { set(s, "ordering", map[string]any{}) }, "spec.ordering.key: Required value"),
		Entry("a circuit breaker", func(s map[string]any) {
			set(s, "delivery.circuitBreaker", map[string]any{"consecutiveFailures": int64(3), "probeInterval": "30s"})
		}, ""),
		Entry("maxInFlight", func(s map[string]any) { set(s, "delivery.maxInFlight", int64(4)) }, ""),
		Entry("maxInFlight 0", func(s map[string]any) { set(s, "delivery.maxInFlight", int64(0)) }, "spec.delivery.maxInFlight: Invalid value"),
		Entry("a circuit breaker turned off", func(s map[string]any) {
			set(s, "delivery.circuitBreaker", map[string]any{"consecutiveFailures": int64(0)})
		}, ""),
		Entry("negative breaker failures", func(s map[string]any) {
			set(s, "delivery.circuitBreaker", map[string]any{"consecutiveFailures": int64(-1)})
		},
			"spec.delivery.circuitBreaker.consecutiveFailures: Invalid value"),
		Entry("probe interval not a duration", func(s map[string]any) { set(s, "delivery.circuitBreaker", map[string]any{"probeInterval": "soon"}) },
			"spec.delivery.circuitBreaker.probeInterval"),
		Entry("delay not a duration", func(s map[string]any) { set(s, "delivery.backoffDelay", "soon") }, "spec.delivery.backoffDelay"),
		Entry("filter too long", func(s map[string]any) { set(s, "filter", strings.Repeat("x", 4097)) }, "spec.filter: Too long"),
		Entry("a ServiceAccount", func(s map[string]any) { set(s, "serviceAccountName", "funnel-actions") }, ""),
		Entry("a ServiceAccount name with capitals", func(s map[string]any) { set(s, "serviceAccountName", "Funnel") }, "spec.serviceAccountName: Invalid value"),
		Entry("a ServiceAccount in another namespace", func(s map[string]any) {
			set(s, "serviceAccountName", "system:serviceaccount:kube-system:admin")
		}, "spec.serviceAccountName: Invalid value"),
		Entry("an empty ServiceAccount name", func(s map[string]any) { set(s, "serviceAccountName", "") }, "spec.serviceAccountName: Invalid value"),
	)

	// Every header the operator sets (the Go list the delivery code follows) is refused by
	// the schema, in any letter case, as a static header and from a Secret: the two lists
	// cannot drift apart.
	It("refuses every reserved header name", func() {
		names, prefixes := funnelv1.ReservedHeaders()
		for _, p := range prefixes {
			names = append(names, p+"anything")
		}
		for _, name := range names {
			for _, spelled := range []string{name, strings.ToUpper(name)} {
				spec := set(validSubscriptionSpec(), "action.http.headers", []any{map[string]any{"name": spelled, "value": "x"}})
				Expect(k8s.Create(ctx, newObject("FunnelSubscription", ns, "pms", spec))).
					To(MatchError(ContainSubstring("header "+spelled+" is reserved")), spelled)
				spec = set(validSubscriptionSpec(), "delivery.deadLetter", map[string]any{"http": map[string]any{"url": "http://a.b",
					"headersFrom": []any{map[string]any{"name": spelled, "secretRef": map[string]any{"name": "s", "key": "k"}}}}})
				Expect(k8s.Create(ctx, newObject("FunnelSubscription", ns, "pms", spec))).
					To(MatchError(ContainSubstring("header "+spelled+" is reserved")), spelled)
			}
		}
	})

	It("applies the documented delivery defaults", func() {
		Expect(k8s.Create(ctx, newObject("FunnelSubscription", ns, "pms", validSubscriptionSpec()))).To(Succeed())
		var got funnelv1.FunnelSubscription
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pms"}, &got)).To(Succeed())
		Expect(*got.Spec.Delivery.Retries).To(Equal(funnelv1.DefaultRetries))
		Expect(got.Spec.Delivery.BackoffPolicy).To(Equal(funnelv1.BackoffExponential))
		Expect(got.Spec.Delivery.BackoffDelay).To(Equal(funnelv1.NewDuration(funnelv1.DefaultBackoffDelay)))
		Expect(got.Spec.Delivery.MaxBackoff).To(Equal(funnelv1.NewDuration(funnelv1.DefaultMaxBackoff)))
		Expect(got.Spec.Action.HTTP.Method).To(Equal("POST"))
		Expect(got.Spec.Action.HTTP.Body).To(Equal(funnelv1.BodyEnvelope))
		Expect(got.Spec.Action.HTTP.Timeout.Duration).To(Equal(funnelv1.DefaultHTTPTimeout))
	})

	It("is listed by short name and in the funnel category", func() {
		Expect(k8s.Create(ctx, newObject("FunnelSubscription", ns, "pms", validSubscriptionSpec()))).To(Succeed())
		out, err := testenv.Kubectl(env, "get", "fsub", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(strings.Fields(strings.SplitN(out, "\n", 2)[0])).To(Equal([]string{"NAME", "READY", "TYPES", "MATCHED", "SUCCEEDED", "FAILED", "AGE"}))
		out, err = testenv.Kubectl(env, "get", "funnel", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring("funnelsubscription.funnel.leasing.dev/pms"))
	})
})
