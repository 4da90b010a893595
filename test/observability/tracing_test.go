package observability_test

import (
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// collector is an OTLP/HTTP trace endpoint that keeps what it receives.
type collector struct {
	*httptest.Server
	mu       sync.Mutex
	spans    []*tracepb.Span
	services []string
}

func newCollector() *collector {
	c := &collector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					c.services = append(c.services, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				c.spans = append(c.spans, ss.GetSpans()...)
			}
		}
		c.mu.Unlock()
		b, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
	}))
	return c
}

// names are the names of the spans received in one trace.
func (c *collector) names(traceID string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.spans {
		if hex.EncodeToString(s.GetTraceId()) == traceID {
			out = append(out, s.GetName())
		}
	}
	return out
}

var _ = Describe("Tracing", func() {
	It("is exported by the running operator to the OTLP endpoint its environment names, one trace per event", func() {
		k8s := cp.Client
		rcv, err := harness.NewReceiver(ctx, k8s, "tracing", false)
		Expect(err).NotTo(HaveOccurred())
		ns := rcv.Namespace
		target, err := harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(target.Close)
		Expect(k8s.Create(ctx, &funnelv1.FunnelSubscription{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pms-sync"},
			Spec: funnelv1.FunnelSubscriptionSpec{EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: target.URL}}}})).To(Succeed())

		otlp := newCollector()
		DeferCleanup(otlp.Close)
		op, err := harness.NewOperator(harness.OperatorOptions{Binary: operatorBin, Kubeconfig: cp.Kubeconfig,
			LogPath: filepath.Join(workDir, "operator-tracing.log"), Args: []string{"--delivery-allow-cidrs=127.0.0.1"},
			// Only the standard variables; a short batch delay so the spans come at once.
			Env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL, "OTEL_SERVICE_NAME=funnel-operator-test", "OTEL_BSP_SCHEDULE_DELAY=100"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(op.Start()).To(Succeed())
		DeferCleanup(op.Stop, 10*time.Second)
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed(), op.LogTail(40))
		Expect(rcv.WaitReady(ctx, k8s, time.Minute)).To(Succeed())

		body, err := synth.New(rand.New(rand.NewPCG(3, 4))).Event("lease.move_in", "")
		Expect(err).NotTo(HaveOccurred())
		sender := &send.Sender{URLs: []string{op.WebhookURL(ns, harness.ReceiverName)}, Auth: rcv.Auth()}
		att := sender.Send(ctx, body)
		Expect(att.Acknowledged()).To(BeTrue())

		By("the event names its trace; the target got a traceparent in it")
		var traceID string
		Eventually(func(g Gomega) {
			var list funnelv1.FunnelEventList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(HaveLen(1))
			parts := strings.Split(list.Items[0].Annotations[funnelv1.AnnotationTraceparent], "-")
			g.Expect(parts).To(HaveLen(4))
			traceID = parts[1]
			g.Expect(target.Requests()).To(HaveLen(1))
			g.Expect(target.Requests()[0].Header.Get("traceparent")).To(HavePrefix("00-" + traceID + "-"))
		}).Should(Succeed())

		By("the collector receives the request and its steps, the pass and the attempt in that trace, under the configured service name")
		Eventually(func() []string { return otlp.names(traceID) }).Should(ContainElements(
			"POST /webhooks/{namespace}/{receiver}", "authenticate", "parse", "create FunnelEvent", "process lease", "deliver pms-sync"))
		otlp.mu.Lock()
		defer otlp.mu.Unlock()
		Expect(otlp.services).To(HaveEach("funnel-operator-test"))
	})
})
