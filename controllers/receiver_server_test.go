package controllers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/controllers/receiver"
	"github.com/funnel-operator/funnel-operator/test/harness"
	"github.com/funnel-operator/funnel-operator/test/testenv"
)

const (
	ack   = "Funnel Event Received"
	token = "s3cret-token"
)

// example reads a documented example payload from the project's testdata.
func example(name string) []byte {
	b, err := os.ReadFile(filepath.Join(testenv.Root(), "api", "funnel", "testdata", name))
	Expect(err).NotTo(HaveOccurred())
	return b
}

// answer is what a sender saw.
type answer struct {
	code   int
	body   string
	header http.Header
}

// post sends body to a receiver the way Funnel does, plus the given headers; a header
// with an empty value is removed (to test missing credentials or content type).
func post(base, path string, body []byte, headers map[string]string) answer {
	GinkgoHelper()
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	return do(req)
}

func do(req *http.Request) answer {
	GinkgoHelper()
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return answer{resp.StatusCode, string(b), resp.Header}
}

// seriesValues reads every series of a counter or gauge in controller-runtime's registry
// that carries all of labels.
func seriesValues(name string, labels map[string]string) []float64 {
	GinkgoHelper()
	families, err := metrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	var out []float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m, labels) {
				out = append(out, valueOf(m))
			}
		}
	}
	return out
}

// hasLabels tells whether m carries every label of want with its value.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			found++
		}
	}
	return found == len(want)
}

// metricValue reads the first series seriesValues finds, 0 when there is none.
func metricValue(name string, labels map[string]string) float64 {
	GinkgoHelper()
	if values := seriesValues(name, labels); len(values) > 0 {
		return values[0]
	}
	return 0
}

// series counts the series of a metric whose receiver label is receiver.
func series(name, receiver string) int {
	GinkgoHelper()
	return len(seriesValues(name, map[string]string{"receiver": receiver}))
}

// valueOf is the value of a counter or a gauge.
func valueOf(m *dto.Metric) float64 {
	if g := m.GetGauge(); g != nil {
		return g.GetValue()
	}
	return m.GetCounter().GetValue()
}

// exampleName is the name receiver "funnel" gives a documented example (with an id: it
// does not depend on the time).
func exampleName(file string) string {
	GinkgoHelper()
	return must(funnel.EventName("funnel", example(file), time.Now()))
}

// event is the FunnelEvent an acknowledgement stands for.
func (a answer) event() string { return a.header.Get(funnel.EventNameHeader) }

func hmacHex(newHash func() hash.Hash, key string, body []byte) string {
	m := hmac.New(newHash, []byte(key))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// awaitReceiver waits until the webhook server's view of receiver ns/funnel (the manager's
// cache) has the given Ready reason, so a spec's requests meet the configuration it set.
func awaitReceiver(ns, reason string) { awaitReceiverNamed(ns, "funnel", reason) }

func awaitReceiverNamed(ns, name, reason string) {
	GinkgoHelper()
	Eventually(func(g Gomega) string {
		var rcv funnelv1.FunnelReceiver
		g.Expect(mgrCache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rcv)).To(Succeed())
		cfg, err := receiver.Resolve(ctx, mgrSecrets, &rcv, receiver.Policy{AllowInsecure: true})
		g.Expect(err).NotTo(HaveOccurred())
		return cfg.Ready.Reason
	}).Should(Equal(reason))
}

// openReceiverNamespace creates a namespace with a receiver "funnel" that accepts
// unauthenticated requests, ready to use; it returns the namespace and the webhook path.
func openReceiverNamespace(prefix string) (string, string) {
	GinkgoHelper()
	return openReceiverNamespaceNamed(prefix, "funnel")
}

// openReceiverNamespaceNamed is openReceiverNamespace with a receiver of the given name.
func openReceiverNamespaceNamed(prefix, receiver string) (string, string) {
	GinkgoHelper()
	ns, err := testenv.NewNamespace(ctx, k8s, prefix)
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: receiver},
		Spec:       funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true}},
	})).To(Succeed())
	awaitReceiverNamed(ns, receiver, funnelv1.ReasonAccepting)
	return ns, "/webhooks/" + ns + "/" + receiver
}

var _ = Describe("Webhook receiver", func() {
	var (
		ns   string
		path string
	)

	// createReceiver creates a receiver named "funnel" with the token Secret and waits
	// until the webhook server sees it Ready.
	createReceiver := func(mutate func(*funnelv1.FunnelReceiverSpec)) {
		GinkgoHelper()
		spec := funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
			SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "token"},
		}}}
		if mutate != nil {
			mutate(&spec)
		}
		Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"}, Spec: spec})).To(Succeed())
		awaitReceiver(ns, funnelv1.ReasonAccepting)
	}

	events := func() []funnelv1.FunnelEvent {
		GinkgoHelper()
		var list funnelv1.FunnelEventList
		Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		return list.Items
	}

	// startReceiver runs a second webhook server on the manager's cache whose writes go
	// through the given interceptor, so specs can make the API server fail or hang, or
	// run it with other options.
	startReceiver := func(funcs interceptor.Funcs, opts receiver.Options) string {
		GinkgoHelper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		opts.Listener, opts.Secrets = ln, mgrSecrets
		srv := receiver.NewServer(opts, mgrCache, interceptor.NewClient(must(client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()})), funcs))
		srvCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- srv.Start(srvCtx) }()
		DeferCleanup(func() { stop(); Expect(<-done).To(Succeed()) })
		Eventually(func() error { return srv.ReadyCheck(nil) }).Should(Succeed())
		return "http://" + ln.Addr().String()
	}

	BeforeEach(func() {
		var err error
		ns, err = testenv.NewNamespace(ctx, k8s, "webhook")
		Expect(err).NotTo(HaveOccurred())
		path = "/webhooks/" + ns + "/funnel"
		Expect(k8s.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel-token"},
			Data:       map[string][]byte{"token": []byte(token), "hmac": []byte("hmac-key")},
		})).To(Succeed())
	})

	Describe("the documented examples", func() {
		BeforeEach(func() { createReceiver(nil) })

		DescribeTable("are stored once, and acknowledged every time",
			func(file, name string, format funnelv1.EventFormat, eventType, id, occurred string, subjects map[string]string) {
				body := example(file)
				var names []string
				for range 2 {
					a := post(webhookURL, path, body, nil)
					Expect(a.code).To(Equal(http.StatusOK), a.body)
					Expect(a.body).To(Equal(ack))
					Expect(a.header.Get("Content-Type")).To(HavePrefix("text/plain"))
					names = append(names, a.event())
				}

				items := events()
				Expect(items).To(HaveLen(1))
				ev := items[0]
				Expect(names).To(HaveEach(ev.Name), "the answers name the stored event")
				Expect(ev.Name).To(HavePrefix(name))
				Expect(len(ev.Name)).To(BeNumerically("<=", 63))
				Expect(ev.Spec.Receiver).To(Equal("funnel"))
				Expect(ev.Spec.Format).To(Equal(format))
				Expect(ev.Spec.Type).To(Equal(eventType))
				Expect(ev.Spec.EventID).To(Equal(id))
				if occurred == "" {
					Expect(ev.Spec.OccurredAt).To(BeNil())
				} else {
					Expect(ev.Spec.OccurredAt.UTC().Format(time.RFC3339Nano)).To(Equal(occurred))
				}
				Expect(ev.Spec.ReceivedAt.IsZero()).To(BeFalse())
				Expect(ev.Spec.Data.Raw).To(MatchJSON(dataOf(body)))

				wantLabels := map[string]string{
					funnelv1.LabelReceiver:  "funnel",
					funnelv1.LabelEventType: eventType,
					funnelv1.LabelFormat:    string(format),
				}
				for k, v := range subjects {
					wantLabels["funnel.leasing.dev/"+k] = v
				}
				Expect(ev.Labels).To(Equal(wantLabels))

				Eventually(func(g Gomega) int64 {
					var got funnelv1.FunnelEvent
					g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&ev), &got)).To(Succeed())
					return got.Status.Duplicates
				}).Should(Equal(int64(1)))
			},
			Entry("classic lease_transaction.status_updated", "classic-lease_transaction.status_updated.json",
				"evt-8932127-", funnelv1.FormatClassic, "lease_transaction.status_updated", "8932127", "2023-03-29T04:27:08Z",
				map[string]string{"lease-transaction-id": "74824", "community-id": "43522", "client-id": "12453"}),
			Entry("V3 lease_transaction.unit_reserved", "v3-lease_transaction.unit_reserved.json",
				"evt-8cc87045-1111-4a16-a882-454044e6762a-", funnelv1.FormatV3, "lease_transaction.unit_reserved",
				"8cc87045-1111-4a16-a882-454044e6762a", "2024-10-09T13:49:31.658518Z",
				map[string]string{"lease-transaction-id": "74824", "community-id": "435242", "unit-id": "4352", "client-id": "12457533"}),
			Entry("V3 lease.move_in", "v3-lease.move_in.json",
				"evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d5-", funnelv1.FormatV3, "lease.move_in",
				"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5", "2023-03-11T14:23:56.01Z", nil),
			Entry("V3 lease.move_in_canceled", "v3-lease.move_in_canceled.json",
				"evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d6-", funnelv1.FormatV3, "lease.move_in_canceled",
				"3eb29a92-e480-40ee-9a9f-61fff5e3f3d6", "2023-03-11T14:23:56.01Z", nil),
			Entry("Partner v2 renter.created", "partner-renter.created.json",
				"evt-p-", funnelv1.FormatPartnerV2, "renter.created", "", "",
				map[string]string{"renter-id": "456678", "community-id": "1234"}),
			Entry("Partner v2 renter.status-change", "partner-renter.status-change.json",
				"evt-p-", funnelv1.FormatPartnerV2, "renter.status-change", "", "",
				map[string]string{"renter-id": "456678", "community-id": "1234"}),
			Entry("Partner v2 appointment.updated", "partner-appointment.updated.json",
				"evt-p-", funnelv1.FormatPartnerV2, "appointment.updated", "", "",
				map[string]string{"renter-id": "456", "community-id": "123"}),
		)

		DescribeTable("accepts every shape Funnel may plausibly send: 200, stored, what differs from the docs noted",
			func(contentType string, body string, issues ...string) {
				a := post(webhookURL, path, []byte(body), map[string]string{"Content-Type": contentType})
				Expect(a.code).To(Equal(http.StatusOK), a.body)
				Expect(a.body).To(Equal(ack))
				var ev funnelv1.FunnelEvent
				Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.event()}, &ev)).To(Succeed())
				if len(issues) == 0 {
					Expect(ev.Annotations).NotTo(HaveKey(funnelv1.AnnotationIssues))
					return
				}
				var got []funnel.Issue
				Expect(json.Unmarshal([]byte(ev.Annotations[funnelv1.AnnotationIssues]), &got)).To(Succeed())
				var fields []string
				for _, i := range got {
					fields = append(fields, i.Field)
				}
				Expect(fields).To(Equal(issues))
			},
			Entry("epoch seconds with a fraction", "application/json",
				`{"id":1001,"event_type":"lease_transaction.updated","event_timestamp":1680064028.5,"event_data":{"lease_transaction_id":1}}`, "event_timestamp"),
			Entry("epoch milliseconds", "application/json",
				`{"id":1002,"event_type":"lease_transaction.updated","event_timestamp":1680064028500,"event_data":{"lease_transaction_id":1}}`, "event_timestamp"),
			Entry("an ISO-8601 timestamp in a classic envelope", "application/json",
				`{"id":1003,"event_type":"lease_transaction.updated","event_timestamp":"2023-03-29T04:27:08Z","event_data":{}}`, "event_timestamp"),
			Entry("an unreadable timestamp", "application/json",
				`{"id":1004,"event_type":"lease_transaction.updated","event_timestamp":"yesterday","event_data":{}}`, "event_timestamp"),
			Entry("V3 epoch seconds", "application/json",
				`{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d7","event":"lease.move_in","timestamp":1678544636,"data":{}}`, "timestamp"),
			Entry("V3 timestamp unparsable", "application/json",
				`{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d8","event":"lease.move_in","timestamp":"soon","data":{}}`, "timestamp"),
			Entry("data null", "application/json", `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d9","event":"lease.move_in","data":null}`, "data"),
			Entry("data absent", "application/json", `{"event":"renter.created"}`, "data"),
			Entry("data a list", "application/json", `{"event":"renter.created","data":[1,2]}`, "data"),
			Entry("a UTF-8 byte order mark", "application/json", "\xef\xbb\xbf"+`{"event":"renter.created","data":{"funnel_renter_id":5}}`),
			Entry("an id as a numeric string", "application/json",
				`{"id":"1005","event_type":"lease_transaction.updated","event_timestamp":1680064028,"event_data":{}}`, "id"),
			Entry("an id as a number in V3", "application/json", `{"id":1006,"event":"lease.move_in","data":{}}`, "id"),
			Entry("an id null", "application/json",
				`{"id":null,"event_type":"lease_transaction.updated","event_timestamp":1680064028,"event_data":{}}`, "id"),
			Entry("an id longer than spec.eventID", "application/json",
				`{"id":"`+strings.Repeat("x", 300)+`","event":"lease.move_in","data":{}}`, "id"),
			Entry("an idempotency key over 512 characters", "application/json",
				`{"id":1007,"event_type":"lease_transaction.updated","event_timestamp":1680064028,"idempotency_key":"`+strings.Repeat("k", 600)+`","event_data":{}}`, "idempotency_key"),
			Entry("a repeated key", "application/json", `{"event":"x","event":"renter.created","data":{}}`, "event"),
			Entry("text/plain", "text/plain", `{"event":"renter.created","data":{"funnel_renter_id":6}}`),
			Entry("no Content-Type", "", `{"event":"renter.created","data":{"funnel_renter_id":7}}`),
			Entry("a form Content-Type with a JSON body", "application/x-www-form-urlencoded", `{"event":"renter.created","data":{"funnel_renter_id":8}}`),
			Entry("an unknown type in upper case", "application/json", `{"event":"Renter.Archived","data":{}}`),
		)

		It("keeps what spec cannot hold in annotations: long ids and keys whole, unknown top-level fields", func() {
			id, key := strings.Repeat("i", 300), strings.Repeat("k", 600)
			a := post(webhookURL, path, []byte(`{"id":"`+id+`","event":"lease.move_in","data":{},"attempt":2}`), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			var ev funnelv1.FunnelEvent
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.event()}, &ev)).To(Succeed())
			Expect(ev.Spec.EventID).To(HavePrefix("sha256:"))
			Expect(ev.Annotations).To(HaveKeyWithValue(funnelv1.AnnotationEventID, id))
			Expect(ev.Annotations).To(HaveKeyWithValue(funnelv1.AnnotationEnvelopeExtra, `{"attempt":2}`))

			a = post(webhookURL, path, []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":"`+key+`","event_data":{}}`), nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.event()}, &ev)).To(Succeed())
			Expect(ev.Spec.IdempotencyKey).To(HavePrefix("sha256:"))
			Expect(ev.Annotations).To(HaveKeyWithValue(funnelv1.AnnotationIdempotencyKey, key))
		})

		It("keeps an id above 2^53 and integers in data exact", func() {
			body := []byte(`{"id": 9007199254740993, "event_type": "lease_transaction.status_updated", "event_timestamp": 1680064028,
				"event_data": {"lease_transaction_id": 9007199254740995, "lease_transaction_type": "Application", "current_status": "Approved"}}`)
			a := post(webhookURL, path, body, nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Expect(a.event()).To(HavePrefix("evt-9007199254740993-"))
			var ev funnelv1.FunnelEvent
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: a.event()}, &ev)).To(Succeed())
			Expect(ev.Spec.EventID).To(Equal("9007199254740993"))
			Expect(string(ev.Spec.Data.Raw)).To(ContainSubstring(`"lease_transaction_id":9007199254740995`))
			Expect(ev.Labels).To(HaveKeyWithValue("funnel.leasing.dev/lease-transaction-id", "9007199254740995"))
		})

		It("stores unknown event types and extra fields", func() {
			body := []byte(`{"id": "0b5a2f8e-6a6f-4d0e-9a53-1d3c0f1f2e77", "event": "lease.brand_new", "timestamp": "2025-01-02T03:04:05Z",
				"data": {"anything": {"goes": [1, 2, 3]}}, "extra": true}`)
			a := post(webhookURL, path, body, nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Expect(events()).To(ConsistOf(HaveField("Spec.Type", "lease.brand_new")))
		})

		It("stores an id that comes back with different content as a flagged variant, and answers 200", func() {
			first := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil)
			Expect(first.code).To(Equal(http.StatusOK))
			conflicts := metricValue("funnel_events_conflicting_total", map[string]string{"type": "lease_transaction.status_updated"})
			changed := bytes.Replace(example("classic-lease_transaction.status_updated.json"), []byte(`"Approved"`), []byte(`"Denied"`), 1)
			var variants []string
			for range 2 { // the variant's retry lands on the variant
				a := post(webhookURL, path, changed, nil)
				Expect(a.code).To(Equal(http.StatusOK), a.body)
				Expect(a.body).To(Equal(ack))
				variants = append(variants, a.event())
			}
			Expect(variants[0]).To(HavePrefix(first.event()+"-"), "recognisable: the first event's name and a suffix")
			Expect(variants[1]).To(Equal(variants[0]))
			Expect(metricValue("funnel_events_conflicting_total", map[string]string{"type": "lease_transaction.status_updated"})).To(Equal(conflicts + 1))
			Expect(events()).To(ConsistOf(
				SatisfyAll(HaveField("Name", first.event()), HaveField("Spec.Data.Raw", ContainSubstring(`"Approved"`)),
					HaveField("Labels", Not(HaveKey(funnelv1.LabelVariantOf)))),
				SatisfyAll(HaveField("Name", variants[0]), HaveField("Spec.Data.Raw", ContainSubstring(`"Denied"`)),
					HaveField("Labels", HaveKeyWithValue(funnelv1.LabelVariantOf, first.event()))),
			))

			By("the variant is flagged with a condition and a Warning Event, and processed like any event")
			Eventually(getEvent(ns, variants[0])).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
				HaveField("Status.Conditions", ContainElement(SatisfyAll(HaveField("Type", funnelv1.ConditionContentConflict),
					HaveField("Status", metav1.ConditionTrue), HaveField("Message", ContainSubstring(first.event())))))))
			Eventually(kubeEvents(ns, variants[0])).Should(ContainElement(SatisfyAll(
				HaveField("Type", "Warning"), HaveField("Reason", funnelv1.ConditionContentConflict))))
			Eventually(getEvent(ns, first.event())).Should(SatisfyAll(finished(funnelv1.PhaseSucceeded),
				HaveField("Status.Conditions", Not(ContainElement(HaveField("Type", funnelv1.ConditionContentConflict))))))
		})

		It("stores the same id with another type, or at another receiver, as another event", func() {
			// Funnel's own docs show lease.move_in and lease.move_in_canceled with one id.
			moveIn := example("v3-lease.move_in.json")
			canceled := bytes.Replace(moveIn, []byte(`"lease.move_in"`), []byte(`"lease.move_in_canceled"`), 1)
			Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "second"},
				Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
					SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "token"}}}},
			})).To(Succeed())
			Eventually(func() int { return post(webhookURL, "/webhooks/"+ns+"/second", moveIn, nil).code }).Should(Equal(http.StatusOK))
			for _, body := range [][]byte{moveIn, canceled} {
				a := post(webhookURL, path, body, nil)
				Expect(a.code).To(Equal(http.StatusOK), a.body)
			}
			Expect(events()).To(ConsistOf(
				SatisfyAll(HaveField("Spec.Receiver", "second"), HaveField("Spec.Type", "lease.move_in")),
				SatisfyAll(HaveField("Spec.Receiver", "funnel"), HaveField("Spec.Type", "lease.move_in")),
				SatisfyAll(HaveField("Spec.Receiver", "funnel"), HaveField("Spec.Type", "lease.move_in_canceled")),
			))
		})

		It("treats a retry in another serialisation as a duplicate: UUID case, number notation, timestamp unit, added fields", func() {
			Expect(post(webhookURL, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusOK))
			retry := []byte(`{"attempt":2,"data":{"charges":[{"amount":2.5e5,"charge_type":"Monthly","description":"Rent","end_date":"2024-03-10",` +
				`"pms_identifier":"rent","start_date":"2023-03-11"},{"amount":5000.0,"charge_type":"Monthly","description":"Dog Rent",` +
				`"end_date":"2024-03-10","pms_identifier":"pet","start_date":"2023-03-11"}],"community_pms_identifier":"123",` +
				`"move_in_date":"2023-03-11","pms_identifier":"t0000000"},"event":"lease.move_in","id":"3EB29A92-E480-40EE-9A9F-61FFF5E3F3D5",` +
				`"timestamp":1678544636010}`)
			a := post(webhookURL, path, retry, nil)
			Expect(a.code).To(Equal(http.StatusOK), a.body)
			Expect(a.event()).To(Equal(exampleName("v3-lease.move_in.json")))
			Expect(events()).To(HaveLen(1))
		})

		It("treats a re-sent event that differs only in whitespace and key order as a duplicate", func() {
			Expect(post(webhookURL, path, example("v3-lease.move_in_canceled.json"), nil).code).To(Equal(http.StatusOK))
			reordered := []byte(`{"data":{"pms_identifier":"t0000000","community_pms_identifier":"123","move_in_date":"2023-03-11"},` +
				`"timestamp":"2023-03-11T14:23:56.010+00:00","event":"lease.move_in_canceled","id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d6"}`)
			Expect(post(webhookURL, path, reordered, nil).code).To(Equal(http.StatusOK))
			Expect(events()).To(HaveLen(1))
		})

		It("stores exactly one object for 50 concurrent receipts of one event", func() {
			body := example("v3-lease_transaction.unit_reserved.json")
			codes := make(chan answer, 50)
			var wg sync.WaitGroup
			for range 50 {
				wg.Go(func() {
					defer GinkgoRecover()
					codes <- post(webhookURL, path, body, nil)
				})
			}
			wg.Wait()
			close(codes)
			for a := range codes {
				Expect(a.code).To(Equal(http.StatusOK), a.body)
				Expect(a.body).To(Equal(ack))
			}
			Expect(events()).To(HaveLen(1))
			Eventually(func(g Gomega) int64 {
				var ev funnelv1.FunnelEvent
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: exampleName("v3-lease_transaction.unit_reserved.json")}, &ev)).To(Succeed())
				return ev.Status.Duplicates
			}).Should(Equal(int64(49)))
			Eventually(func() float64 { return metricValue("funnel_webhook_duplicate_counts_pending", nil) }).
				Should(BeZero(), "no duplicate count left waiting once they are written")
		})

		It("counts requests, created events and duplicates in its metrics", func() {
			receiverLabel := map[string]string{"receiver": ns + "/funnel", "code": "200"}
			created := metricValue("funnel_events_created_total", map[string]string{"type": "renter.status-change"})
			dups := metricValue("funnel_events_duplicate_total", map[string]string{"type": "renter.status-change"})
			body := example("partner-renter.status-change.json")
			Expect(post(webhookURL, path, body, nil).code).To(Equal(http.StatusOK))
			Expect(post(webhookURL, path, body, nil).code).To(Equal(http.StatusOK))
			Expect(metricValue("funnel_webhook_requests_total", receiverLabel)).To(Equal(2.0))
			Expect(metricValue("funnel_events_created_total", map[string]string{"type": "renter.status-change"})).To(Equal(created + 1))
			Expect(metricValue("funnel_events_duplicate_total", map[string]string{"type": "renter.status-change"})).To(Equal(dups + 1))
		})
	})

	Describe("bad requests", func() {
		BeforeEach(func() {
			createReceiver(func(s *funnelv1.FunnelReceiverSpec) {
				s.MaxBodyBytes = ptr(int64(4096))
			})
		})

		classic := string(example("classic-lease_transaction.status_updated.json"))
		deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)

		DescribeTable("get their documented code, a reason, and store nothing",
			func(method, target, contentType string, body []byte, headers map[string]string, code int, reason string) {
				if target == "" {
					target = path
				}
				req, err := http.NewRequest(method, webhookURL+strings.ReplaceAll(target, "{ns}", ns), bytes.NewReader(body))
				Expect(err).NotTo(HaveOccurred())
				req.Header.Set("Authorization", "Bearer "+token)
				if contentType != "" {
					req.Header.Set("Content-Type", contentType)
				}
				for k, v := range headers {
					if v == "" {
						req.Header.Del(k)
					} else {
						req.Header.Set(k, v)
					}
				}
				a := do(req)
				Expect(a.code).To(Equal(code), a.body)
				Expect(a.body).To(ContainSubstring(reason))
				Expect(a.body).NotTo(ContainSubstring(ack))
				Expect(events()).To(BeEmpty())
			},
			Entry("malformed JSON", "POST", "", "application/json", []byte(`{"id": 1,`), nil, 400, "JSON"),
			Entry("trailing comma (as in Funnel's own example)", "POST", "", "application/json", example("bad-classic-trailing-comma.json"), nil, 400, "JSON"),
			Entry("trailing garbage", "POST", "", "application/json", []byte(classic+"x"), nil, 400, ""),
			Entry("empty body", "POST", "", "application/json", []byte{}, nil, 400, "empty"),
			Entry("an array", "POST", "", "application/json", []byte(`[`+classic+`]`), nil, 400, "object"),
			Entry("a string", "POST", "", "application/json", []byte(`"event"`), nil, 400, "object"),
			Entry("null", "POST", "", "application/json", []byte(`null`), nil, 400, "object"),
			Entry("no known envelope", "POST", "", "application/json", []byte(`{"hello":"world"}`), nil, 400, "envelope"),
			Entry("event_type a number", "POST", "", "application/json",
				[]byte(strings.Replace(classic, `"lease_transaction.status_updated"`, `7`, 1)), nil, 400, `"event_type"`),
			Entry("missing event type", "POST", "", "application/json",
				[]byte(`{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","timestamp":"2023-03-11T14:23:56Z","data":{}}`), nil, 400, ""),
			Entry("deep nesting", "POST", "", "application/json",
				[]byte(`{"event":"renter.created","data":`+deep+`}`), nil, 400, "nest"),
			Entry("invalid UTF-8", "POST", "", "application/json",
				[]byte("{\"event\":\"renter.created\",\"data\":{\"name\":\"\xff\xfe\"}}"), nil, 400, "UTF-8"),
			Entry("body over the receiver's limit", "POST", "", "application/json",
				[]byte(`{"event":"renter.created","data":{"pad":"`+strings.Repeat("x", 5000)+`"}}`), nil, 413, "limit of 4096 bytes"),
			Entry("XML", "POST", "", "text/xml", []byte(`<event type="x"/>`), nil, 415, "application/json"),
			Entry("a form", "POST", "", "application/x-www-form-urlencoded", []byte(`event=renter.created`), nil, 415, "application/json"),
			Entry("not JSON, said to be JSON", "POST", "", "application/json", []byte(`<event type="x"/>`), nil, 400, "invalid JSON"),
			Entry("GET", "GET", "", "", nil, nil, 405, "POST"),
			Entry("PUT", "PUT", "", "application/json", []byte(classic), nil, 405, "POST"),
			Entry("missing token", "POST", "", "application/json", []byte(classic), map[string]string{"Authorization": ""}, 401, "credentials"),
			Entry("wrong token", "POST", "", "application/json", []byte(classic), map[string]string{"Authorization": "Bearer nope"}, 401, "credentials"),
			Entry("token in the wrong header", "POST", "", "application/json", []byte(classic),
				map[string]string{"Authorization": "", "X-Token": token}, 401, "credentials"),
			Entry("unknown receiver", "POST", "/webhooks/{ns}/nobody", "application/json", []byte(classic), nil, 404, "no FunnelReceiver"),
			Entry("unknown namespace", "POST", "/webhooks/nowhere/funnel", "application/json", []byte(classic), nil, 404, "no FunnelReceiver"),
			Entry("not a webhook path", "POST", "/events", "application/json", []byte(classic), nil, 404, "/webhooks/{namespace}/{receiver}"),
		)

		It("says 405 with an Allow header", func() {
			a := do(must(http.NewRequest(http.MethodGet, webhookURL+path, nil)))
			Expect(a.code).To(Equal(http.StatusMethodNotAllowed))
			Expect(a.header.Get("Allow")).To(Equal("POST"))
		})
	})

	Describe("odd paths and methods", func() {
		BeforeEach(func() { createReceiver(nil) })

		// rawRequest sends the request line exactly as given (Go's client would tidy it)
		// and returns the status code.
		rawRequest := func(method, target string, body []byte) int {
			GinkgoHelper()
			conn, err := net.Dial("tcp", strings.TrimPrefix(webhookURL, "http://"))
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = conn.Close() }()
			Expect(conn.SetDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
			_, err = fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: funnel.example.com\r\nAuthorization: Bearer %s\r\n"+
				"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", method, target, token, len(body), body)
			Expect(err).NotTo(HaveOccurred())
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
			Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			return resp.StatusCode
		}

		It("never answers 3xx, whatever the path and method; a doubled slash reaches the receiver", func() {
			body := example("v3-lease.move_in.json")
			paths := []string{
				"//webhooks/{ns}/funnel", "/webhooks//{ns}/funnel", "/webhooks/{ns}//funnel", "/webhooks/{ns}/funnel/",
				"/webhooks/{ns}/funnel//", "/webhooks/./{ns}/funnel", "/webhooks/{ns}/./funnel", "/webhooks/../webhooks/{ns}/funnel",
				"/webhooks/{ns}/funnel/..", "/webhooks/{ns}/funnel/extra", "/%77ebhooks/{ns}/funnel", "/WEBHOOKS/{ns}/funnel",
				"/webhooks/{ns}/funnel?x=1", "/webhooks/{ns}", "/webhooks", "/", "/index.html", "*",
				"http://funnel.example.com/webhooks/{ns}/funnel", "http://funnel.example.com//webhooks/{ns}/funnel",
			}
			methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND"}
			for _, p := range paths {
				for _, m := range methods {
					code := rawRequest(m, strings.ReplaceAll(p, "{ns}", ns), body)
					Expect(code/100).NotTo(Equal(3), "%s %s answered %d", m, p, code)
				}
			}
			for _, p := range []string{"//webhooks/{ns}/funnel", "/webhooks//{ns}//funnel/"} {
				Expect(rawRequest("POST", strings.ReplaceAll(p, "{ns}", ns), body)).To(Equal(http.StatusOK), p)
			}
			Expect(events()).To(HaveLen(1), "every accepted POST was the same event")
		})
	})

	Describe("authentication", func() {
		It("accepts the token bare, as Bearer or Token, in a configured header, and follows rotation", func() {
			createReceiver(func(s *funnelv1.FunnelReceiverSpec) { s.Auth.Token.Header = "X-Funnel-Token" })
			body := example("partner-renter.status-change.json")
			for _, v := range []string{token, "Bearer " + token, "Token " + token, "bearer  " + token} {
				a := post(webhookURL, path, body, map[string]string{"Authorization": "", "X-Funnel-Token": v})
				Expect(a.code).To(Equal(http.StatusOK), "header value %q: %s", v, a.body)
			}
			Expect(post(webhookURL, path, body, nil).code).To(Equal(http.StatusUnauthorized), "Authorization is not the configured header")

			var secret corev1.Secret
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "funnel-token"}, &secret)).To(Succeed())
			secret.Data["token"] = []byte("rotated")
			Expect(k8s.Update(ctx, &secret)).To(Succeed())
			Eventually(func() int {
				return post(webhookURL, path, body, map[string]string{"X-Funnel-Token": "rotated"}).code
			}).Should(Equal(http.StatusOK))
			Expect(post(webhookURL, path, body, map[string]string{"X-Funnel-Token": token}).code).To(Equal(http.StatusUnauthorized))
		})

		DescribeTable("checks an HMAC of the raw body",
			func(algorithm funnelv1.HMACAlgorithm, sign func(body []byte) string, code int) {
				createReceiver(func(s *funnelv1.FunnelReceiverSpec) {
					s.Auth.Token = nil
					s.Auth.HMAC = &funnelv1.HMACAuth{SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "hmac"}, Algorithm: algorithm}
				})
				body := example("partner-appointment.updated.json")
				a := post(webhookURL, path, body, map[string]string{"Authorization": "", "X-Funnel-Signature": sign(body)})
				Expect(a.code).To(Equal(code), a.body)
				if code != http.StatusOK {
					Expect(events()).To(BeEmpty())
				}
			},
			Entry("sha256 hex", funnelv1.HMACSHA256, func(b []byte) string { return hmacHex(sha256.New, "hmac-key", b) }, 200),
			Entry("sha256 hex with prefix", funnelv1.HMACSHA256, func(b []byte) string { return "sha256=" + hmacHex(sha256.New, "hmac-key", b) }, 200),
			Entry("sha256 base64", funnelv1.HMACSHA256, func(b []byte) string {
				raw, _ := hex.DecodeString(hmacHex(sha256.New, "hmac-key", b))
				return base64.StdEncoding.EncodeToString(raw)
			}, 200),
			Entry("sha512 hex with prefix", funnelv1.HMACSHA512, func(b []byte) string { return "sha512=" + hmacHex(sha512.New, "hmac-key", b) }, 200),
			Entry("wrong key", funnelv1.HMACSHA256, func(b []byte) string { return hmacHex(sha256.New, "other-key", b) }, 401),
			Entry("signature of another body", funnelv1.HMACSHA256, func(b []byte) string { return hmacHex(sha256.New, "hmac-key", append(b, ' ')) }, 401),
			Entry("sha256 signature where sha512 is configured", funnelv1.HMACSHA512, func(b []byte) string { return hmacHex(sha256.New, "hmac-key", b) }, 401),
			Entry("missing signature", funnelv1.HMACSHA256, func([]byte) string { return "" }, 401),
			Entry("garbage signature", funnelv1.HMACSHA256, func([]byte) string { return "sha256=zz" }, 401),
		)

		DescribeTable("admits only allowed source addresses",
			func(allowed, trusted []string, forwardedFor string, code int) {
				createReceiver(func(s *funnelv1.FunnelReceiverSpec) {
					s.Auth.AllowedCIDRs = allowed
					s.Auth.TrustedProxies = trusted
				})
				a := post(webhookURL, path, example("partner-renter.status-change.json"), map[string]string{"X-Forwarded-For": forwardedFor})
				Expect(a.code).To(Equal(code), a.body)
				if code == http.StatusForbidden {
					Expect(a.body).To(ContainSubstring("source address not allowed"))
					Expect(events()).To(BeEmpty())
				}
			},
			Entry("loopback allowed", []string{"127.0.0.0/8"}, nil, "", 200),
			Entry("only 10/8 allowed", []string{"10.0.0.0/8"}, nil, "", 403),
			Entry("X-Forwarded-For is ignored without trusted proxies", []string{"10.0.0.0/8"}, nil, "10.1.2.3", 403),
			Entry("X-Forwarded-For from a trusted proxy is believed", []string{"10.0.0.0/8"}, []string{"127.0.0.1/32"}, "10.1.2.3", 200),
			Entry("the right-most untrusted hop counts, not a forged left one", []string{"10.0.0.0/8"}, []string{"127.0.0.1/32"}, "10.1.2.3, 192.0.2.7", 403),
			Entry("trusted hops are skipped", []string{"10.0.0.0/8"}, []string{"127.0.0.1/32", "172.16.0.0/12"}, "10.1.2.3, 172.16.0.9", 200),
		)
	})

	Describe("receiver state and limits", func() {
		It("answers 503 with Retry-After while suspended, and accepts again when resumed", func() {
			createReceiver(nil)
			setSuspend := func(suspend bool) {
				rcv := &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"}}
				Expect(k8s.Patch(ctx, rcv, client.RawPatch(types.MergePatchType,
					fmt.Appendf(nil, `{"spec":{"suspend":%t}}`, suspend)))).To(Succeed())
			}
			setSuspend(true)
			awaitReceiver(ns, funnelv1.ReasonSuspended)
			body := example("partner-renter.status-change.json")
			a := post(webhookURL, path, body, nil)
			Expect(a.code).To(Equal(http.StatusServiceUnavailable))
			Expect(a.body).To(ContainSubstring(funnelv1.ReasonSuspended))
			Expect(a.header.Get("Retry-After")).NotTo(BeEmpty())
			Expect(events()).To(BeEmpty())

			setSuspend(false)
			awaitReceiver(ns, funnelv1.ReasonAccepting)
			Expect(post(webhookURL, path, body, nil).code).To(Equal(http.StatusOK))
		})

		It("answers 503 while not Ready, without naming its Secrets", func() {
			Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
				Spec: funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{Token: &funnelv1.TokenAuth{
					SecretRef: funnelv1.SecretKeyRef{Name: "missing-secret", Key: "token"}}}},
			})).To(Succeed())
			awaitReceiver(ns, funnelv1.ReasonSecretNotFound)
			a := post(webhookURL, path, example("partner-renter.status-change.json"), nil)
			Expect(a.code).To(Equal(http.StatusServiceUnavailable))
			Expect(a.body).To(ContainSubstring(funnelv1.ReasonSecretNotFound))
			Expect(a.body).NotTo(ContainSubstring("missing-secret"))
			Expect(events()).To(BeEmpty())
		})

		It("ignores insecureSkipAuth unless the operator allows unauthenticated receivers", func() {
			Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"},
				Spec:       funnelv1.FunnelReceiverSpec{Auth: funnelv1.ReceiverAuth{InsecureSkipAuth: true}},
			})).To(Succeed())
			awaitReceiver(ns, funnelv1.ReasonAccepting) // this suite's operator allows them
			strict := startReceiver(interceptor.Funcs{}, receiver.Options{})
			body := example("partner-renter.status-change.json")
			a := post(strict, path, body, map[string]string{"Authorization": ""})
			Expect(a.code).To(Equal(http.StatusServiceUnavailable))
			Expect(a.body).To(ContainSubstring(funnelv1.ReasonInsecureNotAllowed))
			Expect(events()).To(BeEmpty())
			Expect(post(webhookURL, path, body, map[string]string{"Authorization": ""}).code).To(Equal(http.StatusOK))
		})

		It("refuses envelope formats the receiver does not accept", func() {
			createReceiver(func(s *funnelv1.FunnelReceiverSpec) { s.Formats = []funnelv1.EventFormat{funnelv1.FormatV3} })
			a := post(webhookURL, path, example("classic-lease_transaction.status_updated.json"), nil)
			Expect(a.code).To(Equal(http.StatusBadRequest))
			Expect(a.body).To(ContainSubstring("Classic envelopes are not accepted"))
			Expect(post(webhookURL, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusOK))
		})

		It("rate-limits with 429 and Retry-After", func() {
			createReceiver(func(s *funnelv1.FunnelReceiverSpec) {
				s.RateLimit = &funnelv1.RateLimit{RequestsPerSecond: 1, Burst: 2}
			})
			body := example("partner-renter.status-change.json")
			codes := []int{}
			var last answer
			for range 3 {
				last = post(webhookURL, path, body, nil)
				codes = append(codes, last.code)
			}
			Expect(codes).To(Equal([]int{200, 200, 429}))
			Expect(last.header.Get("Retry-After")).NotTo(BeEmpty())
		})

		It("has no rate limit by default", func() {
			createReceiver(nil)
			body := example("partner-renter.status-change.json")
			for range 300 { // more than the former default's burst of 200, at once
				Expect(post(webhookURL, path, body, nil).code).To(Equal(http.StatusOK))
			}
		})
	})

	// Attacks on the receiver by whoever knows its URL (issue: receiver denial of service).
	Describe("hardening", func() {
		hmacReceiver := func(name string, rl *funnelv1.RateLimit) string {
			GinkgoHelper()
			Expect(k8s.Create(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: funnelv1.FunnelReceiverSpec{RateLimit: rl, Auth: funnelv1.ReceiverAuth{HMAC: &funnelv1.HMACAuth{
					SecretRef: funnelv1.SecretKeyRef{Name: "funnel-token", Key: "hmac"}}}}})).To(Succeed())
			Eventually(func(g Gomega) string {
				var rcv funnelv1.FunnelReceiver
				g.Expect(mgrCache.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &rcv)).To(Succeed())
				return string(rcv.UID)
			}).ShouldNot(BeEmpty())
			return "/webhooks/" + ns + "/" + name
		}
		signed := func(body []byte) map[string]string {
			return map[string]string{"Authorization": "", "X-Funnel-Signature": hmacHex(sha256.New, "hmac-key", body)}
		}
		// slowBody starts a request to path whose body never arrives (closed at the end of
		// the spec), and returns what its answer was and when it came.
		slowBody := func(base, path string) func() (int, time.Duration) {
			GinkgoHelper()
			b, err := harness.StartSlowBody(base + path)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(b.Close)
			return b.Answer
		}

		It("checks the HMAC before spending the rate limit: bad signatures cannot lock Funnel out", func() {
			p := hmacReceiver("signed", &funnelv1.RateLimit{RequestsPerSecond: 1, Burst: 1})
			body := example("partner-appointment.updated.json")
			Eventually(func() int { return post(webhookURL, p, []byte(`{}`), signed([]byte(`x`))).code }).Should(Equal(http.StatusUnauthorized))
			for range 5 {
				Expect(post(webhookURL, p, body, signed([]byte("another body"))).code).To(Equal(http.StatusUnauthorized))
			}
			a := post(webhookURL, p, body, signed(body))
			Expect(a.code).To(Equal(http.StatusOK), "the genuine request after 5 bad ones: %s", a.body)
		})

		It("gives an unauthenticated body a short deadline, so a slow one does not hold a slot", func() {
			p := hmacReceiver("signed", nil)
			url := startReceiver(interceptor.Funcs{}, receiver.Options{AnswerDeadline: 3 * time.Second, PreAuthBodyTimeout: 300 * time.Millisecond})
			Eventually(func() int { return post(url, p, []byte(`{}`), signed([]byte(`x`))).code }).Should(Equal(http.StatusUnauthorized))
			code, took := slowBody(url, p)()
			Expect(code).To(Equal(http.StatusRequestTimeout))
			Expect(took).To(BeNumerically("<", 2*time.Second), "answered by the short deadline, not the 3 s answer deadline")
		})

		It("caps the requests in flight of one receiver, so it cannot take another's capacity", func() {
			p := hmacReceiver("flooded", nil)
			url := startReceiver(interceptor.Funcs{}, receiver.Options{MaxInFlight: 4, MaxInFlightPerReceiver: 2, PreAuthBodyTimeout: 20 * time.Second})
			Eventually(func() int { return post(url, p, []byte(`{}`), signed([]byte(`x`))).code }).Should(Equal(http.StatusUnauthorized))
			for range 2 {
				slowBody(url, p) // held by their slow bodies
			}
			Eventually(func() int { c, _ := slowBody(url, p)(); return c }).Should(Equal(http.StatusServiceUnavailable),
				"the flooded receiver's third request is shed")
			createReceiver(nil)
			a := post(url, path, example("partner-renter.status-change.json"), nil)
			Expect(a.code).To(Equal(http.StatusOK), "another receiver still has room: %s", a.body)
		})

		It("removes a deleted receiver's metric series", func() {
			createReceiver(nil)
			label := ns + "/funnel"
			Expect(post(webhookURL, path, example("partner-renter.status-change.json"), nil).code).To(Equal(http.StatusOK))
			Expect(series("funnel_webhook_requests_total", label)).To(BeNumerically(">", 0))
			Expect(series("funnel_webhook_request_duration_seconds", label)).To(BeNumerically(">", 0))
			Expect(k8s.Delete(ctx, &funnelv1.FunnelReceiver{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "funnel"}})).To(Succeed())
			Eventually(func() int {
				return series("funnel_webhook_requests_total", label) + series("funnel_webhook_request_duration_seconds", label) +
					series("funnel_webhook_last_request_timestamp_seconds", label)
			}).Should(BeZero())
			Expect(post(webhookURL, path, example("partner-renter.status-change.json"), nil).code).To(Equal(http.StatusNotFound))
			Consistently(func() int { return series("funnel_webhook_requests_total", label) }, "1s").Should(BeZero())
		})
	})

	Describe("a receipt of an event this replica created lately", func() {
		BeforeEach(func() { createReceiver(nil) })

		It("reads the stored event instead of creating it again, and creates it again if it was deleted", func() {
			var creates atomic.Int32
			url := startReceiver(interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if _, ok := obj.(*funnelv1.FunnelEvent); ok {
					creates.Add(1)
				}
				return c.Create(ctx, obj, opts...)
			}}, receiver.Options{AnswerDeadline: time.Second})
			body := example("v3-lease.move_in.json")
			for range 3 {
				Expect(post(url, path, body, nil).code).To(Equal(http.StatusOK))
			}
			Expect(creates.Load()).To(Equal(int32(1)), "creates sent to the API server")
			Eventually(func(g Gomega) int64 {
				evs := events()
				g.Expect(evs).To(HaveLen(1))
				return evs[0].Status.Duplicates
			}).Should(Equal(int64(2)))

			By("a different payload under the same id is stored as a variant")
			changed := bytes.Replace(body, []byte(`"pms_identifier"`), []byte(`"pms_identifier_x"`), 1)
			Expect(changed).NotTo(Equal(body))
			Expect(post(url, path, changed, nil).code).To(Equal(http.StatusOK))
			Expect(events()).To(HaveLen(2))
			Expect(k8s.Delete(ctx, &funnelv1.FunnelEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns,
				Name: funnel.VariantName(exampleName("v3-lease.move_in.json"), must(funnel.Parse(changed)).Digest())}})).To(Succeed())
			creates.Store(1)

			By("deleted since (retention), the event is created again")
			Expect(k8s.Delete(ctx, &events()[0])).To(Succeed())
			Eventually(events).Should(BeEmpty())
			Expect(post(url, path, body, nil).code).To(Equal(http.StatusOK))
			Expect(creates.Load()).To(Equal(int32(2)))
			Expect(events()).To(HaveLen(1))
		})
	})

	Describe("Partner v2 events, which have no id", func() {
		It("are retries within the dedupe window, in any serialisation, and new events after it", func() {
			createReceiver(func(s *funnelv1.FunnelReceiverSpec) { s.DedupeWindow = funnelv1.NewDuration(2 * time.Hour) })
			start := time.Date(2025, 6, 1, 0, 30, 0, 0, time.UTC) // windows are [00:00, 02:00), [02:00, 04:00)…
			clk := clocktesting.NewFakePassiveClock(start)
			url := startReceiver(interceptor.Funcs{}, receiver.Options{Clock: clk})
			body := example("partner-renter.status-change.json")
			var generic map[string]any
			Expect(json.Unmarshal(body, &generic)).To(Succeed())
			reserialised := must(json.Marshal(generic)) // other key order, no whitespace

			first := post(url, path, body, nil)
			Expect(first.code).To(Equal(http.StatusOK), first.body)
			for _, at := range []struct {
				after time.Duration
				body  []byte
			}{
				{time.Hour, body},
				{time.Hour + 45*time.Minute, reserialised},
				{time.Hour + 50*time.Minute, body}, // the next window: found in the previous one
			} {
				clk.SetTime(start.Add(at.after))
				a := post(url, path, at.body, nil)
				Expect(a.code).To(Equal(http.StatusOK), a.body)
				Expect(a.event()).To(Equal(first.event()), "a retry %s after the first receipt", at.after)
			}
			Expect(events()).To(HaveLen(1))
			Eventually(func(g Gomega) int64 {
				var ev funnelv1.FunnelEvent
				g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: first.event()}, &ev)).To(Succeed())
				return ev.Status.Duplicates
			}).Should(Equal(int64(3)))

			By("after the window, the same body is a new event (a renter back to the same status)")
			clk.SetTime(start.Add(2*time.Hour + time.Minute))
			later := post(url, path, body, nil)
			Expect(later.code).To(Equal(http.StatusOK), later.body)
			Expect(later.event()).NotTo(Equal(first.event()))
			Expect(events()).To(HaveLen(2))
		})
	})

	Describe("when the API server does not confirm the write", func() {
		BeforeEach(func() { createReceiver(nil) })

		It("answers 503 with Retry-After when the API server refuses, and stores nothing", func() {
			url := startReceiver(interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
				return apierrors.NewServiceUnavailable("etcd is down")
			}}, receiver.Options{AnswerDeadline: time.Second})
			a := post(url, path, example("v3-lease.move_in.json"), nil)
			Expect(a.code).To(Equal(http.StatusServiceUnavailable))
			Expect(a.header.Get("Retry-After")).NotTo(BeEmpty())
			Expect(events()).To(BeEmpty())
		})

		It("answers 503 by its deadline when the API server hangs, never 200", func() {
			url := startReceiver(interceptor.Funcs{Create: func(ctx context.Context, _ client.WithWatch, _ client.Object, _ ...client.CreateOption) error {
				<-ctx.Done()
				return fmt.Errorf("creating: %w", ctx.Err())
			}}, receiver.Options{AnswerDeadline: 500 * time.Millisecond})
			start := time.Now()
			a := post(url, path, example("v3-lease.move_in.json"), nil)
			Expect(a.code).To(Equal(http.StatusServiceUnavailable))
			Expect(time.Since(start)).To(BeNumerically("<", 2*time.Second))
			Expect(events()).To(BeEmpty())
		})

		It("answers 503 when the object exists but cannot be read back to compare", func() {
			Expect(post(webhookURL, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusOK))
			url := startReceiver(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if _, ok := obj.(*funnelv1.FunnelEvent); ok {
					return errors.New("connection reset")
				}
				return c.Get(ctx, key, obj, opts...)
			}}, receiver.Options{AnswerDeadline: time.Second})
			Expect(post(url, path, example("v3-lease.move_in.json"), nil).code).To(Equal(http.StatusServiceUnavailable))
		})
	})
})

func ptr[T any](v T) *T { return &v }

func must[T any](v T, err error) T {
	GinkgoHelper()
	Expect(err).NotTo(HaveOccurred())
	return v
}

// dataOf returns the data object of an example body, for comparing with what was stored.
func dataOf(body []byte) []byte {
	GinkgoHelper()
	var envelope map[string]json.RawMessage
	Expect(json.Unmarshal(body, &envelope)).To(Succeed())
	if d, ok := envelope["event_data"]; ok {
		return d
	}
	Expect(envelope).To(HaveKey("data"))
	return envelope["data"]
}
