// Package tracing follows one Funnel event through the operator with OpenTelemetry: a span
// for the webhook request that stores it (with a child for each of its steps:
// authenticate, parse, create), one for each processing pass and one for each delivery
// attempt, all in the request's trace; a duplicate receipt's request links to it. The trace context travels on the
// FunnelEvent (annotation funnel.leasing.dev/traceparent), so passes on another replica or
// after a restart continue the trace, and on to targets as W3C traceparent (an HTTP header,
// or TRACEPARENT in a Job's environment).
//
// Tracing is off unless the OTEL_* environment configures an exporter (FromEnvironment). A
// nil *Tracing is tracing off: every method is then a no-op that stores and sends nothing.
package tracing

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// instrumentation is the name the operator's tracer reports.
const instrumentation = "github.com/funnel-operator/funnel-operator"

// Attribute keys of the operator's spans, beside OpenTelemetry's semantic conventions.
const (
	AttrReceiver     = attribute.Key("funnel.receiver")
	AttrEventName    = attribute.Key("funnel.event.name")
	AttrEventType    = attribute.Key("funnel.event.type")
	AttrEventID      = attribute.Key("funnel.event.id")
	AttrFormat       = attribute.Key("funnel.event.format")
	AttrReceipt      = attribute.Key("funnel.receipt")
	AttrEventPhase   = attribute.Key("funnel.event.phase")
	AttrFamily       = attribute.Key("funnel.family")
	AttrSubscription = attribute.Key("funnel.subscription")
	AttrAttempt      = attribute.Key("funnel.delivery.attempt")
	AttrDeadLetter   = attribute.Key("funnel.delivery.dead_letter")
	AttrOutcome      = attribute.Key("funnel.delivery.outcome")
	AttrReason       = attribute.Key("funnel.reason")
)

// W3C Trace Context: what the operator honours from Funnel, stores and sends on.
var w3c = propagation.TraceContext{}

// Tracing makes the operator's spans with one TracerProvider.
type Tracing struct {
	tracer   trace.Tracer
	shutdown func(context.Context) error
}

// New traces with tp (tests pass an SDK provider with an in-memory exporter).
func New(tp trace.TracerProvider) *Tracing {
	return &Tracing{tracer: tp.Tracer(instrumentation)}
}

// Shutdown flushes the spans not exported yet; a no-op for tracing off or a provider the
// caller owns.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Request starts the span of one webhook request to receiver, continuing the sender's
// trace when the request carries a traceparent. The returned context carries the span and
// a logger with its trace id.
func (t *Tracing) Request(ctx context.Context, r *http.Request, receiver types.NamespacedName) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noop.Span{}
	}
	ctx = w3c.Extract(ctx, propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, r.Method+" /webhooks/{namespace}/{receiver}", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.HTTPRoute("/webhooks/{namespace}/{receiver}"),
			semconv.K8SNamespaceName(receiver.Namespace), AttrReceiver.String(receiver.String())))
	return withTraceID(ctx, span), span
}

// Answered records the answer to a webhook request and ends its span: the code, the event
// a 200 stands for, and the reason of a refusal. Only 5xx answers are errors: a 4xx is the
// sender's mistake, answered as it should be.
func Answered(span trace.Span, code int, event, reason string) {
	// Not recording (tracing off): the attributes would be built for nothing.
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(code))
		switch {
		case code == http.StatusOK:
			span.SetAttributes(AttrEventName.String(event))
		case code >= 500:
			span.SetStatus(codes.Error, reason)
		default:
			span.SetAttributes(AttrReason.String(reason))
		}
	}
	span.End()
}

// The steps of a webhook request, each a child span of the request's.
const (
	// StepAuthenticate checks who sent the request: its source address, its token, and
	// the HMAC signature of its body (read under the receiver's limit).
	StepAuthenticate = "authenticate"
	// StepParse reads Funnel's envelope from the body.
	StepParse = "parse"
	// StepCreate stores the event, or finds it stored (a duplicate).
	StepCreate = "create FunnelEvent"
)

// Receipts: what a create step made of the request, for the funnel.receipt attribute.
const (
	ReceiptCreated   = "created"
	ReceiptVariant   = "variant"
	ReceiptDuplicate = "duplicate"
)

// Step starts the span of one step of a webhook request to receiver, a child of the
// request's span in ctx; EndStep ends it. A step is a leaf: ctx keeps the request's span,
// the one the stored event records, so that processing continues the request.
func (t *Tracing) Step(ctx context.Context, name string, receiver types.NamespacedName) trace.Span {
	if t == nil {
		return noop.Span{}
	}
	_, span := t.tracer.Start(ctx, name, trace.WithAttributes(AttrReceiver.String(receiver.String())))
	return span
}

// Parsed records on a parse step's span the event the body holds. id is "" when it is
// too long to be an attribute (the create step records its stored form).
func Parsed(span trace.Span, format, eventType, id string) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrFormat.String(format), AttrEventType.String(eventType))
	if id != "" {
		span.SetAttributes(AttrEventID.String(id))
	}
}

// Stored records on a create step's span the event the request stands for and the
// receipt it was. A duplicate's request span (in ctx) links to the trace of the request
// that stored ev, so a person following Funnel's retry finds the original processing.
func Stored(ctx context.Context, span trace.Span, ev *funnelv1.FunnelEvent, receipt string) {
	if !span.IsRecording() || ev == nil {
		return
	}
	span.SetAttributes(AttrEventName.String(ev.Name), AttrEventType.String(ev.Spec.Type), AttrEventID.String(ev.Spec.EventID), AttrReceipt.String(receipt))
	if receipt != ReceiptDuplicate {
		return
	}
	request := trace.SpanFromContext(ctx)
	request.SetAttributes(AttrReceipt.String(receipt))
	if original := trace.SpanContextFromContext(EventContext(context.Background(), ev)); original.IsValid() {
		request.AddLink(trace.Link{SpanContext: original, Attributes: []attribute.KeyValue{AttrEventName.String(ev.Name)}})
	}
}

// EndStep ends a step's span. code is the answer when the step decided it, 0 when the
// request went on: a refusal (any code but 200) is the step's error, with its short
// reason, never the body or a secret.
func EndStep(span trace.Span, code int, reason string) {
	if code != 0 && span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(code))
		if code != http.StatusOK {
			span.SetStatus(codes.Error, reason)
		}
	}
	span.End()
}

// Annotate records the trace context of ctx (the webhook request's span) on an event
// about to be stored, so that its processing continues the request's trace. Nothing is
// recorded when tracing is off.
func Annotate(ctx context.Context, ev *funnelv1.FunnelEvent) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if ev.Annotations == nil {
		ev.Annotations = map[string]string{}
	}
	w3c.Inject(ctx, annotations(ev.Annotations))
}

// EventContext is the trace context stored on ev, as a remote parent in ctx; ctx as it is
// when ev has none.
func EventContext(ctx context.Context, ev *funnelv1.FunnelEvent) context.Context {
	return w3c.Extract(ctx, annotations(ev.Annotations))
}

// Pass starts the span of one processing pass of ev by the family's controller, a child of
// the request that stored ev (a new trace for an event stored with tracing off). The
// returned context carries the span and a logger with its trace id; EndPass ends it.
func (t *Tracing) Pass(ctx context.Context, ev *funnelv1.FunnelEvent, family string) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noop.Span{}
	}
	parent := EventContext(ctx, ev)
	ctx, span := t.tracer.Start(parent, "process "+family, trace.WithAttributes(
		semconv.K8SNamespaceName(ev.Namespace), AttrEventName.String(ev.Name), AttrEventType.String(ev.Spec.Type),
		AttrEventID.String(ev.Spec.EventID), AttrFamily.String(family)))
	return withTraceID(ctx, span), span
}

// EndPass records the phase the pass left ev in, or its error, and ends its span.
func EndPass(span trace.Span, ev *funnelv1.FunnelEvent, err error) {
	span.SetAttributes(AttrEventPhase.String(string(ev.Status.Phase)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Attempt starts the span of one delivery attempt of ev to subscription: a child of the
// span in ctx (the pass that handed the attempt over), or else of the request that stored
// ev. Inject then carries it to the target; EndAttempt ends it.
func (t *Tracing) Attempt(ctx context.Context, ev *funnelv1.FunnelEvent, subscription string, number int32, deadLetter bool) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noop.Span{}
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = EventContext(ctx, ev)
	}
	name := "deliver"
	if deadLetter {
		name = "dead letter"
	}
	return t.tracer.Start(ctx, name+" "+subscription, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.K8SNamespaceName(ev.Namespace), AttrEventName.String(ev.Name), AttrEventType.String(ev.Spec.Type),
		AttrSubscription.String(subscription), AttrAttempt.Int(int(number)), AttrDeadLetter.Bool(deadLetter)))
}

// Outcomes of one attempt, for EndAttempt: whether the subscription retries a retryable
// failure is its policy's call, recorded in the event's status.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeRetryable = "retryable"
	OutcomeFailed    = "failed"
)

// EndAttempt records an attempt's outcome and ends its span: the target's status code (0
// without an answer) and, for a failure, its fixed reason (never the target's words).
func EndAttempt(span trace.Span, code int32, outcome, reason string) {
	span.SetAttributes(AttrOutcome.String(outcome))
	if code != 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(int(code)))
	}
	if outcome != OutcomeSucceeded {
		span.SetStatus(codes.Error, reason)
	}
	span.End()
}

// Inject sets traceparent (and tracestate) on h from the span in ctx, so the target's own
// spans join the trace. Nothing is set when tracing is off.
func Inject(ctx context.Context, h http.Header) {
	w3c.Inject(ctx, propagation.HeaderCarrier(h))
}

// JobEnv is the trace context of ctx for a Job's containers, as the OpenTelemetry
// environment carrier names it (TRACEPARENT, TRACESTATE); nil when tracing is off.
func JobEnv(ctx context.Context) []corev1.EnvVar {
	carrier := propagation.MapCarrier{}
	w3c.Inject(ctx, carrier)
	var env []corev1.EnvVar
	for _, k := range []string{"traceparent", "tracestate"} {
		if v := carrier.Get(k); v != "" {
			env = append(env, corev1.EnvVar{Name: strings.ToUpper(k), Value: v})
		}
	}
	return env
}

// TraceID is the trace id of ctx's span, "" without one.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// withTraceID puts the span's trace id on ctx's logger, so log lines lead to the trace.
func withTraceID(ctx context.Context, span trace.Span) context.Context {
	sc := span.SpanContext()
	if !sc.IsValid() {
		return ctx
	}
	return ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues("traceID", sc.TraceID().String()))
}

// annotations carries the W3C fields in a FunnelEvent's annotations.
type annotations map[string]string

var annotationOf = map[string]string{
	"traceparent": funnelv1.AnnotationTraceparent,
	"tracestate":  funnelv1.AnnotationTracestate,
}

func (a annotations) Get(key string) string { return a[annotationOf[key]] }

func (a annotations) Set(key, value string) {
	if k, ok := annotationOf[key]; ok {
		a[k] = value
	}
}

func (a annotations) Keys() []string {
	var keys []string
	for k, ann := range annotationOf {
		if _, ok := a[ann]; ok {
			keys = append(keys, k)
		}
	}
	return keys
}
