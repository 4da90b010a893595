package tracing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

func TestExporterFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name     string
		env      map[string]string
		protocol string
		err      string
	}{
		{name: "nothing set: off", env: nil},
		{name: "an endpoint turns it on, http/protobuf by default", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, protocol: "http/protobuf"},
		{name: "a traces endpoint too", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, protocol: "http/protobuf"},
		{name: "otlp exporter without endpoint: the exporter's default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, protocol: "http/protobuf"},
		{name: "grpc", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, protocol: "grpc"},
		{name: "the traces protocol wins", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, protocol: "http/protobuf"},
		{name: "none wins over an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}},
		{name: "the SDK disabled wins over everything", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{name: "an exporter the operator lacks", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: `OTEL_TRACES_EXPORTER="zipkin"`},
		{name: "a protocol the operator lacks", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, err: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tracing.ExporterFromEnvironment(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Protocol != tc.protocol || e.On() != (tc.protocol != "") {
				t.Fatalf("protocol %q (on %v), want %q", e.Protocol, e.On(), tc.protocol)
			}
		})
	}
}

// The operator configured only by OTEL_* variables exports its spans over OTLP/HTTP to the
// endpoint they name, with the service name they give.
func TestFromEnvironmentExportsToTheConfiguredCollector(t *testing.T) {
	got := make(chan *collectortrace.ExportTraceServiceRequest, 1)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		select {
		case got <- &req:
		default:
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(b)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "funnel-operator-staging")

	ctx := context.Background()
	tr, err := tracing.FromEnvironment(ctx, func(k string) string {
		return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}[k]
	})
	if err != nil || tr == nil {
		t.Fatalf("tracing %v, error %v: want tracing on", tr, err)
	}
	_, span := tr.Request(ctx, httptest.NewRequest(http.MethodPost, "/webhooks/leasing/funnel", nil), types.NamespacedName{Namespace: "leasing", Name: "funnel"})
	tracing.Answered(span, http.StatusOK, "evt-1", "")
	shutdownCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(shutdownCtx); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		rs := req.GetResourceSpans()
		if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
			t.Fatalf("exported %v, want the one span", req)
		}
		if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "POST /webhooks/{namespace}/{receiver}" {
			t.Errorf("span %q, want the webhook request's", name)
		}
		var service string
		for _, a := range rs[0].GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		if service != "funnel-operator-staging" {
			t.Errorf("service.name %q, want OTEL_SERVICE_NAME's", service)
		}
	default:
		t.Fatal("the collector received nothing")
	}
}

// What a request carries is what the event keeps, and what its processing continues:
// the request's span is the sender's child, the event's annotation names the request's
// span, a pass is that span's child, an attempt the pass's, and the target gets the
// attempt's traceparent.
func TestTraceContextTravelsThroughTheEvent(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	tr := tracing.New(tp)
	ctx := context.Background()

	const funnelTrace, funnelSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := httptest.NewRequest(http.MethodPost, "/webhooks/leasing/funnel", nil)
	r.Header.Set("traceparent", "00-"+funnelTrace+"-"+funnelSpan+"-01")
	reqCtx, reqSpan := tr.Request(ctx, r, types.NamespacedName{Namespace: "leasing", Name: "funnel"})
	ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "evt-1"}}
	tracing.Annotate(reqCtx, ev)
	tracing.Answered(reqSpan, http.StatusOK, ev.Name, "")

	want := "00-" + funnelTrace + "-" + reqSpan.SpanContext().SpanID().String() + "-01"
	if got := ev.Annotations[funnelv1.AnnotationTraceparent]; got != want {
		t.Fatalf("annotation %q, want %q", got, want)
	}

	passCtx, passSpan := tr.Pass(ctx, ev, "lease")
	ev.Status.Phase = funnelv1.PhaseSucceeded
	attemptCtx, attemptSpan := tr.Attempt(passCtx, ev, "pms-sync", 1, false)
	h := http.Header{}
	tracing.Inject(attemptCtx, h)
	tracing.EndAttempt(attemptSpan, 200, tracing.OutcomeSucceeded, "")
	tracing.EndPass(passSpan, ev, nil)
	// An attempt made outside a pass (a backfill) hangs off the request.
	_, orphan := tr.Attempt(ctx, ev, "pms-sync", 2, false)
	tracing.EndAttempt(orphan, 0, tracing.OutcomeRetryable, "connection refused")

	ended := spans.Ended()
	if len(ended) != 4 {
		t.Fatalf("%d spans, want 4", len(ended))
	}
	parentOf := func(i int) string { return ended[i].Parent().SpanID().String() }
	for i, s := range ended {
		if s.SpanContext().TraceID().String() != funnelTrace {
			t.Errorf("span %d %q is in trace %s, want Funnel's", i, s.Name(), s.SpanContext().TraceID())
		}
	}
	if parentOf(0) != funnelSpan || ended[0].SpanKind() != trace.SpanKindServer {
		t.Errorf("request span: parent %s kind %s, want Funnel's span, server", parentOf(0), ended[0].SpanKind())
	}
	if ended[2].Name() != "process lease" || parentOf(2) != reqSpan.SpanContext().SpanID().String() || !ended[2].Parent().IsRemote() {
		t.Errorf("pass span %q: parent %s, want the request's span", ended[2].Name(), parentOf(2))
	}
	if ended[1].Name() != "deliver pms-sync" || parentOf(1) != ended[2].SpanContext().SpanID().String() {
		t.Errorf("attempt span %q: parent %s, want the pass's span", ended[1].Name(), parentOf(1))
	}
	if parentOf(3) != reqSpan.SpanContext().SpanID().String() {
		t.Errorf("attempt outside a pass: parent %s, want the request's span", parentOf(3))
	}
	if got, want := h.Get("traceparent"), "00-"+funnelTrace+"-"+ended[1].SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("traceparent to the target %q, want the attempt's %q", got, want)
	}
	if env := tracing.JobEnv(passCtx); len(env) != 1 || env[0].Name != "TRACEPARENT" || !strings.Contains(env[0].Value, funnelTrace) {
		t.Errorf("Job environment %v, want TRACEPARENT in Funnel's trace", env)
	}
}

// Off (a nil Tracing) means nothing is stored or sent, even for a request that carries a
// traceparent.
func TestOffStoresAndSendsNothing(t *testing.T) {
	var tr *tracing.Tracing
	r := httptest.NewRequest(http.MethodPost, "/webhooks/leasing/funnel", nil)
	r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ctx, span := tr.Request(context.Background(), r, types.NamespacedName{Namespace: "leasing", Name: "funnel"})
	step := tr.Step(ctx, tracing.StepCreate, types.NamespacedName{Namespace: "leasing", Name: "funnel"})
	ev := &funnelv1.FunnelEvent{}
	tracing.Annotate(ctx, ev)
	tracing.Stored(ctx, step, ev, tracing.ReceiptCreated)
	tracing.EndStep(step, http.StatusOK, "")
	tracing.Answered(span, http.StatusOK, "evt-1", "")
	ctx, pass := tr.Pass(ctx, ev, "lease")
	ctx, attempt := tr.Attempt(ctx, ev, "pms-sync", 1, false)
	h := http.Header{}
	tracing.Inject(ctx, h)
	if len(ev.Annotations) != 0 || len(h) != 0 || tracing.JobEnv(ctx) != nil || step.SpanContext().IsValid() || pass.SpanContext().IsValid() || attempt.SpanContext().IsValid() {
		t.Fatalf("tracing off stored %v, sent %v", ev.Annotations, h)
	}
}
