package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/tracing"
)

// BenchmarkRequestSpans is what tracing adds to one webhook request that stores an event,
// off (the default: it must stay near nothing) and on (an SDK provider that exports
// nowhere). go test -run X -bench RequestSpans -benchmem ./controllers/tracing/
func BenchmarkRequestSpans(b *testing.B) {
	for _, tc := range []struct {
		name string
		tr   *tracing.Tracing
	}{
		{"off", nil},
		{"on", tracing.New(sdktrace.NewTracerProvider())},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodPost, "/webhooks/leasing/funnel", nil)
			key := types.NamespacedName{Namespace: "leasing", Name: "funnel"}
			b.ReportAllocs()
			for b.Loop() {
				ctx, span := tc.tr.Request(context.Background(), r, key)
				step := tc.tr.Step(ctx, tracing.StepAuthenticate, key)
				tracing.EndStep(step, 0, "")
				step = tc.tr.Step(ctx, tracing.StepParse, key)
				tracing.Parsed(step, "Classic", "lease.move_in", "8932127")
				tracing.EndStep(step, 0, "")
				step = tc.tr.Step(ctx, tracing.StepCreate, key)
				ev := &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: "leasing", Name: "evt-1"}}
				tracing.Annotate(ctx, ev)
				tracing.Stored(ctx, step, ev, tracing.ReceiptCreated)
				tracing.EndStep(step, http.StatusOK, "")
				tracing.Answered(span, http.StatusOK, ev.Name, "")
			}
		})
	}
}
