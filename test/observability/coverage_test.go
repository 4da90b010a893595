package observability_test

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
	"github.com/funnel-operator/funnel-operator/api/funnel/synth"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

// prometheusOwn are the series Prometheus makes itself rather than scraping them.
var prometheusOwn = []string{"up"}

// usedMetrics lists the metric names that the shipped rules and dashboards query, read
// with Prometheus' own parser (hack/tools/prometheus/promq).
func usedMetrics() []string {
	GinkgoHelper()
	root := testenv.Root()
	dashboards, err := filepath.Glob(filepath.Join(root, "config", "grafana", "*.json"))
	Expect(err).NotTo(HaveOccurred())
	args := append([]string{"-C", filepath.Join(root, "hack", "tools", "prometheus"), "run", "./promq", "metrics",
		filepath.Join(root, "config", "prometheus", "rules.yaml")}, dashboards...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	Expect(err).NotTo(HaveOccurred(), stderr.String())
	names := strings.Fields(string(out))
	Expect(names).To(ContainElement("funnel_webhook_last_accepted_timestamp_seconds"), "the rules were read")
	return names
}

// exported is every sample name in a scrape: a histogram is its _bucket, _sum and _count.
func exported(families map[string]*dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for name, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

var _ = Describe("The metrics that alerts and dashboards use", func() {
	It("are all exported by the running operator", func() {
		used := usedMetrics()
		k8s := cp.Client
		rcv, err := harness.NewReceiver(ctx, k8s, "coverage", false)
		Expect(err).NotTo(HaveOccurred())
		ns := rcv.Namespace

		By("subscriptions that succeed, retry, and fail for good into a dead letter")
		ok, err := harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(ok.Close)
		down, err := harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(down.Close)
		down.SetCode(http.StatusInternalServerError)
		refusing, err := harness.NewSink()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(refusing.Close)
		refusing.SetCode(http.StatusBadRequest)
		retries, later := int32(3), funnelv1.NewDuration(time.Hour)
		for _, sub := range []funnelv1.FunnelSubscription{
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ok"}, Spec: funnelv1.FunnelSubscriptionSpec{
				EventTypes: []string{"*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: ok.URL}}}},
			// Keeps the event Processing: the backlog and its oldest event exist.
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "down"}, Spec: funnelv1.FunnelSubscriptionSpec{
				EventTypes: []string{"lease.*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: down.URL}},
				Delivery: funnelv1.DeliveryPolicy{Retries: &retries, BackoffDelay: later}}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "refusing"}, Spec: funnelv1.FunnelSubscriptionSpec{
				EventTypes: []string{"quote.*"}, Action: funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: refusing.URL}},
				Delivery: funnelv1.DeliveryPolicy{DeadLetter: &funnelv1.Action{HTTP: &funnelv1.HTTPAction{URL: ok.URL}}}}},
		} {
			Expect(k8s.Create(ctx, &sub)).To(Succeed())
		}

		By("running the operator as deployed (leader election), with an archive whose database is down")
		op, err := harness.NewOperator(harness.OperatorOptions{Binary: operatorBin, Kubeconfig: cp.Kubeconfig,
			LogPath: filepath.Join(workDir, "operator.log"), Args: []string{"--leader-elect", "--leader-election-namespace=" + ns,
				"--delivery-allow-cidrs=127.0.0.1"}, // the sinks listen on loopback
			Env: []string{"FUNNEL_ARCHIVE_DATABASE_URL=postgres://funnel@127.0.0.1:1/archive?connect_timeout=1"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(op.Start()).To(Succeed())
		DeferCleanup(op.Stop, 10*time.Second)
		Expect(op.WaitReady(ctx, time.Minute)).To(Succeed(), op.LogTail(40))

		By("sending an event of each family, and one twice")
		Expect(rcv.WaitReady(ctx, k8s, time.Minute)).To(Succeed())
		sender := &send.Sender{URLs: []string{op.WebhookURL(ns, harness.ReceiverName)}, Auth: rcv.Auth()}
		events := synth.New(rand.New(rand.NewPCG(1, 2)))
		for _, typ := range []string{"lease_transaction.status_updated", "lease.move_in", "quote.created", "renter.created"} {
			body, err := events.Event(typ, "")
			Expect(err).NotTo(HaveOccurred())
			Expect(sender.Send(ctx, body).Acknowledged()).To(BeTrue(), typ)
		}
		repeat, err := events.Event("lease_transaction.status_updated", "")
		Expect(err).NotTo(HaveOccurred())
		for range 2 { // Funnel's retry of an event already stored
			Expect(sender.Send(ctx, repeat).Acknowledged()).To(BeTrue())
		}

		By("scraping once every outcome happened")
		var have map[string]bool
		Eventually(func(g Gomega) {
			families, err := op.Metrics(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			for _, result := range []string{"succeeded", "retry", "failed", "dead_lettered"} {
				g.Expect(harness.Sum(families, "funnel_deliveries_total", func(l map[string]string) bool { return l["result"] == result })).
					To(BeNumerically(">", 0), result)
			}
			have = exported(families)
			g.Expect(have).To(HaveKey("funnel_events_oldest_unfinished_timestamp_seconds"))
			g.Expect(have).To(HaveKey("funnel_archive_errors_total"))
		}).Should(Succeed())

		var missing []string
		for _, name := range used {
			if !have[name] && !slices.Contains(prometheusOwn, name) {
				missing = append(missing, name)
			}
		}
		Expect(missing).To(BeEmpty(), "metrics that config/prometheus or config/grafana query but the operator does not export")
	})
})
