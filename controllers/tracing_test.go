package controllers_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/delivery"
)

// traceOf lists the spans the manager ended in one trace.
func traceOf(id string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanContext().TraceID().String() == id {
			out = append(out, s)
		}
	}
	return out
}

// named keeps the spans whose name starts with prefix.
func named(ss []sdktrace.ReadOnlySpan, prefix string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range ss {
		if strings.HasPrefix(s.Name(), prefix) {
			out = append(out, s)
		}
	}
	return out
}

// attr is a span's attribute, as a string ("" when it has none).
func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// childrenOf keeps the spans whose parent is the span id.
func childrenOf(ss []sdktrace.ReadOnlySpan, id string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range ss {
		if s.Parent().SpanID().String() == id {
			out = append(out, s)
		}
	}
	return out
}

// requestSteps are the names of a stored event's request steps, in order.
var requestSteps = []string{"authenticate", "parse", "create FunnelEvent"}

// stepNames are the names of spans.
func stepNames(ss []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name())
	}
	return out
}

// spanIDs are the ids of spans.
func spanIDs(ss []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.SpanContext().SpanID().String())
	}
	return out
}

// funnelTraceparent is a traceparent as a tracing proxy in front of the receiver sends it:
// a new trace each time, and the id of the sender's span.
func funnelTraceparent() (header, traceID, spanID string) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	traceID, spanID = hex.EncodeToString(b[:16]), hex.EncodeToString(b[16:])
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

var _ = Describe("Tracing", func() {
	var ns, path string
	BeforeEach(func() { ns, path = openReceiverNamespace("trace") })
	approved := exampleName("classic-lease_transaction.status_updated.json")

	// The span tree of one event: the sender's span → the webhook request → each pass of
	// the event's controller → each delivery attempt the pass handed over → the target.
	It("follows an event from the request through its passes and attempts to the target, in the sender's trace", func() {
		target := newSink(http.StatusServiceUnavailable, http.StatusOK)
		retries := int32(2)
		subscribeReady(ns, "pms-sync", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"lease_transaction.*"},
			Action:   funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}},
			Delivery: funnelv1.DeliveryPolicy{Retries: &retries, BackoffDelay: funnelv1.NewDuration(100 * time.Millisecond)}})
		traceparent, traceID, funnelSpan := funnelTraceparent()
		a := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), map[string]string{"traceparent": traceparent})
		Expect(a.code).To(Equal(http.StatusOK), a.body)
		Eventually(getEvent(ns, approved)).Should(finished(funnelv1.PhaseSucceeded))

		By("the request's span: the sender's child, with the receiver, the answer and the event")
		requests := named(traceOf(traceID), "POST /webhooks/")
		Expect(requests).To(HaveLen(1))
		request := requests[0]
		Expect(request.SpanKind()).To(Equal(trace.SpanKindServer))
		Expect(request.Parent().SpanID().String()).To(Equal(funnelSpan))
		Expect(attr(request, "funnel.receiver")).To(Equal(ns + "/funnel"))
		Expect(attr(request, "http.response.status_code")).To(Equal("200"))
		Expect(attr(request, "funnel.event.name")).To(Equal(approved))
		requestSpan := request.SpanContext().SpanID().String()

		By("the request's steps: authenticate, parse and create, each the request's child with what it learnt")
		steps := childrenOf(traceOf(traceID), requestSpan)
		Expect(stepNames(named(steps, ""))).To(ContainElements(requestSteps))
		for _, name := range requestSteps {
			step := named(steps, name)
			Expect(step).To(HaveLen(1), name)
			Expect(attr(step[0], "funnel.receiver")).To(Equal(ns+"/funnel"), name)
			Expect(step[0].Status().Code).To(Equal(codes.Unset), name)
			Expect(step[0].EndTime()).NotTo(BeTemporally(">", request.EndTime()), name)
		}
		parse, create := named(steps, "parse")[0], named(steps, "create FunnelEvent")[0]
		Expect(attr(parse, "funnel.event.type")).To(Equal("lease_transaction.status_updated"))
		Expect(attr(parse, "funnel.event.id")).To(Equal("8932127"))
		Expect(attr(parse, "funnel.event.format")).To(Equal("Classic"))
		Expect(attr(create, "funnel.event.name")).To(Equal(approved))
		Expect(attr(create, "funnel.receipt")).To(Equal("created"))
		Expect(attr(create, "http.response.status_code")).To(Equal("200"))

		By("the event keeps the request's trace context, so kubectl leads to the trace")
		ev := getEvent(ns, approved)(Default)
		Expect(ev.Annotations).To(HaveKeyWithValue(funnelv1.AnnotationTraceparent, "00-"+traceID+"-"+requestSpan+"-01"))

		By("every pass is the request's child; the last one left the event Succeeded")
		var passes []sdktrace.ReadOnlySpan
		Eventually(func(g Gomega) {
			passes = named(traceOf(traceID), "process ")
			g.Expect(passes).NotTo(BeEmpty())
			g.Expect(attr(passes[len(passes)-1], "funnel.event.phase")).To(Equal(string(funnelv1.PhaseSucceeded)))
		}).Should(Succeed())
		for _, p := range passes {
			Expect(p.Name()).To(Equal("process lease_transaction"))
			Expect(p.Parent().SpanID().String()).To(Equal(requestSpan))
			Expect(attr(p, "funnel.event.name")).To(Equal(approved))
		}

		By("each attempt is the child of the pass that handed it over, with its number and outcome")
		attempts := named(traceOf(traceID), "deliver ")
		Expect(attempts).To(HaveLen(2))
		Expect(attempts[0].SpanKind()).To(Equal(trace.SpanKindClient))
		for i, want := range []struct{ number, code, outcome string }{{"1", "503", "retryable"}, {"2", "200", "succeeded"}} {
			Expect(attempts[i].Name()).To(Equal("deliver pms-sync"))
			Expect(attr(attempts[i], "funnel.subscription")).To(Equal("pms-sync"))
			Expect(attr(attempts[i], "funnel.delivery.attempt")).To(Equal(want.number))
			Expect(attr(attempts[i], "http.response.status_code")).To(Equal(want.code))
			Expect(attr(attempts[i], "funnel.delivery.outcome")).To(Equal(want.outcome))
			Expect(spanIDs(passes)).To(ContainElement(attempts[i].Parent().SpanID().String()))
		}

		By("the target receives each attempt's traceparent, so its own spans join the trace")
		got := target.got()
		Expect(got).To(HaveLen(2))
		for i := range got {
			Expect(got[i].header.Get("traceparent")).To(Equal("00-" + traceID + "-" + attempts[i].SpanContext().SpanID().String() + "-01"))
		}
	})

	It("starts a trace for a request that carries none, and records a refusal with its reason", func() {
		a := post(webhookURL, path, []byte(`{"not": "an envelope"`), nil)
		Expect(a.code).To(Equal(http.StatusBadRequest))
		a = post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil)
		Expect(a.code).To(Equal(http.StatusOK), a.body)

		ev := getEvent(ns, approved)(Default)
		parts := strings.Split(ev.Annotations[funnelv1.AnnotationTraceparent], "-")
		Expect(parts).To(HaveLen(4), "the event keeps its request's traceparent")
		requests := named(traceOf(parts[1]), "POST /webhooks/")
		Expect(requests).To(HaveLen(1))
		Expect(requests[0].Parent().IsValid()).To(BeFalse(), "a trace of its own")
		Expect(requests[0].SpanContext().SpanID().String()).To(Equal(parts[2]))

		var refused []sdktrace.ReadOnlySpan
		for _, s := range named(spans.Ended(), "POST /webhooks/") {
			if attr(s, "funnel.receiver") == ns+"/funnel" && attr(s, "http.response.status_code") == "400" {
				refused = append(refused, s)
			}
		}
		Expect(refused).To(HaveLen(1))
		Expect(attr(refused[0], "funnel.reason")).NotTo(BeEmpty())

		By("the parse step failed, with the parser's reason; nothing was created")
		steps := childrenOf(spans.Ended(), refused[0].SpanContext().SpanID().String())
		Expect(stepNames(steps)).To(ConsistOf("authenticate", "parse"))
		parse := named(steps, "parse")[0]
		Expect(parse.Status().Code).To(Equal(codes.Error))
		Expect(parse.Status().Description).To(HavePrefix("invalid JSON"))
		Expect(attr(parse, "http.response.status_code")).To(Equal("400"))
		Expect(named(steps, "authenticate")[0].Status().Code).To(Equal(codes.Unset))
	})

	It("marks a failed authentication with its reason, and never records the credentials or the body", func() {
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-token"},
			Data: map[string][]byte{"token": []byte(token)}})).To(Succeed())
		Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guarded"},
			Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
				SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "token"}}}}})).To(Succeed())
		awaitReceiverNamed(ns, "guarded", funnelv1.ReasonAccepting)
		traceparent, traceID, _ := funnelTraceparent()
		a := post(webhookURL, "/webhooks/"+ns+"/guarded", example("classic-lease_transaction.status_updated.json"),
			map[string]string{"traceparent": traceparent, "Authorization": "Bearer forged-guess"})
		Expect(a.code).To(Equal(http.StatusUnauthorized))

		requests := named(traceOf(traceID), "POST /webhooks/")
		Expect(requests).To(HaveLen(1))
		steps := childrenOf(traceOf(traceID), requests[0].SpanContext().SpanID().String())
		Expect(stepNames(steps)).To(Equal([]string{"authenticate"}), "no parse, no create")
		Expect(steps[0].Status().Code).To(Equal(codes.Error))
		Expect(steps[0].Status().Description).To(Equal("missing or invalid credentials"))
		Expect(attr(steps[0], "http.response.status_code")).To(Equal("401"))
		Expect(attr(steps[0], "funnel.receiver")).To(Equal(ns + "/guarded"))
		for _, s := range traceOf(traceID) {
			recorded := s.Status().Description
			for _, kv := range s.Attributes() {
				recorded += " " + kv.Value.Emit()
			}
			Expect(recorded).NotTo(SatisfyAny(ContainSubstring("forged-guess"), ContainSubstring(token), ContainSubstring("74824")), s.Name())
		}
	})

	// Funnel retries a delivery it thinks failed; a tracing proxy gives the retry a trace of
	// its own. Its request span links to the request that stored the event, whose trace
	// holds the processing.
	It("links a duplicate receipt's request to the trace of the request that stored the event", func() {
		first, firstTrace, _ := funnelTraceparent()
		Expect(post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), map[string]string{"traceparent": first}).code).
			To(Equal(http.StatusOK))
		retry, retryTrace, _ := funnelTraceparent()
		a := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), map[string]string{"traceparent": retry})
		Expect(a.code).To(Equal(http.StatusOK), a.body)
		Expect(a.header.Get("X-Funnel-Event-Name")).To(Equal(approved))

		stored := getEvent(ns, approved)(Default).Annotations[funnelv1.AnnotationTraceparent]
		Expect(strings.Split(stored, "-")).To(HaveLen(4))
		Expect(strings.Split(stored, "-")[1]).To(Equal(firstTrace), "the event keeps the first receipt's trace")

		requests := named(traceOf(retryTrace), "POST /webhooks/")
		Expect(requests).To(HaveLen(1))
		Expect(attr(requests[0], "funnel.receipt")).To(Equal("duplicate"))
		Expect(requests[0].Links()).To(HaveLen(1))
		link := requests[0].Links()[0].SpanContext
		Expect("00-" + link.TraceID().String() + "-" + link.SpanID().String() + "-01").To(Equal(stored))
		create := named(childrenOf(traceOf(retryTrace), requests[0].SpanContext().SpanID().String()), "create FunnelEvent")
		Expect(create).To(HaveLen(1))
		Expect(attr(create[0], "funnel.receipt")).To(Equal("duplicate"))
		Expect(attr(create[0], "funnel.event.name")).To(Equal(approved))
		Expect(named(traceOf(retryTrace), "process ")).To(BeEmpty(), "the processing stays in the first trace")
	})

	It("puts the trace context in the environment of a delivery's Job", func() {
		serviceAccount(ns, actionsAccount, actionRules...)
		subscribeReady(ns, "job", funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, ServiceAccountName: actionsAccount, Action: jobAction()})
		traceparent, traceID, _ := funnelTraceparent()
		a := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), map[string]string{"traceparent": traceparent})
		Expect(a.code).To(Equal(http.StatusOK), a.body)

		var job batchv1.Job
		Eventually(func(g Gomega) {
			var jobs batchv1.JobList
			g.Expect(k8s.List(ctx, &jobs, client.InNamespace(ns), client.MatchingLabels{delivery.LabelSubscription: "job"})).To(Succeed())
			g.Expect(jobs.Items).To(HaveLen(1))
			job = jobs.Items[0]
		}).Should(Succeed())
		var value string
		for _, e := range job.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "TRACEPARENT" {
				value = e.Value
			}
		}
		parts := strings.Split(value, "-")
		Expect(parts).To(HaveLen(4), "TRACEPARENT in the Job's environment")
		Expect(parts[1]).To(Equal(traceID))
		Eventually(func() []string { return spanIDs(named(traceOf(traceID), "process ")) }).Should(ContainElement(parts[2]),
			"the Job's parent is the pass that created it")
	})
})
