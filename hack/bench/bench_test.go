package main

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

// TestSourceMix: the load is every documented type in all three envelopes, about 10%
// repeats of bodies sent before, and each item's name is the receiver's for its body.
func TestSourceMix(t *testing.T) {
	src := newSource(1, 1, 0.1)
	types, formats := map[string]bool{}, map[string]bool{}
	seen := map[string][]byte{}
	repeats := 0
	const n = 3000
	for range n {
		it, err := src.item()
		if err != nil {
			t.Fatal(err)
		}
		env, err := funnel.Parse(it.body)
		if err != nil {
			t.Fatalf("body does not parse: %v", err)
		}
		if name, _ := funnel.EventName(harness.ReceiverName, it.body, time.Now()); name != it.name {
			t.Fatalf("item name %q, EventName %q", it.name, name)
		}
		types[env.Type], formats[string(env.Format)] = true, true
		if prev, ok := seen[it.name]; ok {
			if !bytes.Equal(prev, it.body) {
				t.Fatalf("name %q repeated with another body", it.name)
			}
			repeats++
		}
		seen[it.name] = it.body
	}
	if len(types) != 16 || len(formats) != 3 {
		t.Errorf("mix: %d types, %d formats; want 16 and 3", len(types), len(formats))
	}
	if frac := float64(repeats) / n; frac < 0.07 || frac > 0.13 {
		t.Errorf("repeats: %.3f of requests, want about 0.10", frac)
	}

	ev, err := newSource(2, 2, 0).object("ns")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Namespace != "ns" || ev.Spec.Receiver != harness.ReceiverName || ev.Labels[funnelv1.LabelEventType] == "" || ev.Annotations[funnelv1.AnnotationDigest] == "" {
		t.Errorf("object %s/%s: receiver %q, labels %v, annotations %v: not the receiver's", ev.Namespace, ev.Name, ev.Spec.Receiver, ev.Labels, ev.Annotations)
	}
}

// apiserverMetrics is a trimmed sample of kube-apiserver's exposition.
const apiserverMetrics = `# TYPE apiserver_request_total counter
apiserver_request_total{code="201",group="funnel.leasing.dev",resource="funnelevents",subresource="",verb="POST",version="v1alpha1"} 10
apiserver_request_total{code="409",group="funnel.leasing.dev",resource="funnelevents",subresource="",verb="POST",version="v1alpha1"} 2
apiserver_request_total{code="200",group="funnel.leasing.dev",resource="funnelevents",subresource="status",verb="PATCH",version="v1alpha1"} 10
apiserver_request_total{code="200",group="funnel.leasing.dev",resource="funnelevents",subresource="",verb="PATCH",version="v1alpha1"} 9
apiserver_request_total{code="200",group="funnel.leasing.dev",resource="funnelevents",subresource="",verb="LIST",version="v1alpha1"} 50
apiserver_request_total{code="200",group="funnel.leasing.dev",resource="funnelreceivers",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="201",group="",resource="secrets",subresource="",verb="POST",version="v1"} 4
`

// TestWritesOf: the writes per event count every write on funnelevents, and nothing else.
func TestWritesOf(t *testing.T) {
	fams, err := harness.ParseMetrics([]byte(apiserverMetrics))
	if err != nil {
		t.Fatal(err)
	}
	got, err := writesOf(fams)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"POST 201": 10, "POST 409": 2, "PATCH/status 200": 10, "PATCH 200": 9}
	if len(got) != len(want) {
		t.Fatalf("writes = %v, want %v (no LIST, no other resource)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("writes[%q] = %v, want %v", k, got[k], v)
		}
	}
	if u := unexpectedWrites(got); len(u) != 2 || u["POST 409"] != 2 || u["PATCH 200"] != 9 {
		t.Errorf("unexpected writes = %v, want the conflict and the non-status patch", u)
	}
	if _, err := writesOf(nil); err == nil {
		t.Error("metrics without apiserver_request_total: want an error")
	}
}

// TestTargetsAndResults: the headline figures and targets follow from the phases, a late
// or missing answer counts against the latency target, and results.md shows them.
func TestTargetsAndResults(t *testing.T) {
	r := &results{
		Ingest: []ingestLevel{
			{Concurrency: 1, RawCreatesPerSecond: 100, AckedPerSecond: 90, Ratio: ptrTo(0.9), Latency: latency{Max: 0.2}},
			{Concurrency: 8, RawCreatesPerSecond: 300, AckedPerSecond: 210, Ratio: ptrTo(0.7), NoAnswer: 1, Missing: 2,
				SegmentRatios: []float64{0.41, 0.82, 0.84, 0.86}, SegmentRatioMedian: 0.83},
		},
		E2E: []e2eStep{{Name: "no subscription", Throughput: &e2eRun{Events: 10}, Paced: &e2eRun{}, WritesPerEvent: ptrTo(2.0), Ratio: ptrTo(0.4), Missing: 1,
			WritesByVerb: map[string]float64{"POST 201": 10, "PATCH/status 200": 10}}},
		Memory: &memoryResult{Small: &memoryPoint{EventsStored: 1000}, Large: &memoryPoint{EventsStored: 50000}, RSSRatio: ptrTo(1.1)},
		Costs: &costsResult{StatusWriteCostRatio: ptrTo(1.7), Etcd: &etcdBytes{BytesPerEvent: 4100},
			Object: &objectSize{Objects: 3, Bytes: 2978, ManagedFieldsBytes: 1270}},
		Archive: &archiveResult{Throughput: &archiveRun{Events: 10, Archived: 10, Lag: latency{P99: 1.25}}, Paced: &archiveRun{}},
	}
	r.summarize()
	if *r.IngestRatioMin != 0.7 || *r.MaxAckLatencySeconds != answerTimeout.Seconds() || *r.AckedMissing != 3 ||
		*r.WritesPerEvent != 2 || *r.E2ERatio != 0.4 || *r.MemoryRatio != 1.1 {
		t.Errorf("headline: ingest %v, latency %v, missing %v, writes %v, e2e %v, memory %v", *r.IngestRatioMin,
			*r.MaxAckLatencySeconds, *r.AckedMissing, *r.WritesPerEvent, *r.E2ERatio, *r.MemoryRatio)
	}
	met := map[string]bool{}
	for _, tg := range r.Targets {
		met[tg.Field] = tg.Met != nil && *tg.Met
	}
	if *r.StatusWriteCostRatio != 1.7 || *r.EtcdBytesPerEvent != 4100 || *r.ArchiveLagP99Seconds != 1.25 {
		t.Errorf("headline: status write %v, etcd bytes %v, archive lag %v", *r.StatusWriteCostRatio, *r.EtcdBytesPerEvent, *r.ArchiveLagP99Seconds)
	}
	for k, v := range map[string]bool{"ingest_ratio_min": false, "max_ack_latency_seconds": false, "acked_missing": false,
		"writes_per_event": true, "e2e_ratio": true, "memory_ratio": true, "status_write_cost_ratio": false} {
		if met[k] != v {
			t.Errorf("target %s met = %v, want %v", k, met[k], v)
		}
	}
	md := renderResults(r)
	for _, s := range []string{"| ingest ≥ 0.8× raw at every concurrency | `ingest_ratio_min` | 0.7 | **missed** |",
		"| 8 | 300.0 | 210.0 | 0.70 | 0.41, 0.82, 0.84, 0.86 (0.83) |", "PATCH/status 200: 10, POST 201: 10", "| 1000 |", "| ratio | 1.10 |",
		"| 2978 |", "| 4100 |", "| throughput | 10 | 10 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("results.md lacks %q:\n%s", s, md)
		}
	}

	empty := &results{}
	empty.summarize()
	for _, tg := range empty.Targets {
		if tg.Met != nil || tg.Value != nil {
			t.Errorf("nothing measured, yet target %s has %v/%v", tg.Field, tg.Value, tg.Met)
		}
	}
	if md := renderResults(empty); !strings.Contains(md, "not measured") {
		t.Errorf("an empty run's results.md:\n%s", md)
	}
}

func TestPlotScaling(t *testing.T) {
	png, err := plotScaling(&scalingResult{ReferencePerSecond: 100, DurationSeconds: 5, Points: []scalingPoint{
		{Percent: 50, OfferedPerSecond: 50, AchievedPerSecond: 50, Latency: latency{P50: 0.01, P99: 0.05}},
		{Percent: 150, OfferedPerSecond: 150, AchievedPerSecond: 90, Shed503: 100, Latency: latency{P50: 1, P99: 3.5}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("not a PNG")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil || o.out != "bench" || len(o.phases) != len(allPhases) || o.duration != 10*time.Second {
		t.Errorf("defaults: out %q, phases %v, duration %s, err %v", o.out, o.phases, o.duration, err)
	}
	if o, err = parseFlags([]string{"--quick"}); err != nil || o.out != "" || o.duration != 2*time.Second || pick(&o, 1, 2) != 2 {
		t.Errorf("--quick: out %q, duration %s, err %v", o.out, o.duration, err)
	}
	if o, err = parseFlags([]string{"--quick", "--duration=3s", "--phases=ingest, costs,ingest"}); err != nil || o.duration != 3*time.Second ||
		strings.Join(o.phases, ",") != "ingest,costs" || o.out != "" {
		t.Errorf("--quick --duration --phases: duration %s, phases %v, out %q, err %v", o.duration, o.phases, o.out, err)
	}
	for _, bad := range [][]string{{"--phases=costs,nope"}, {"--phases=scaling"}, {"--concurrency=1,0"}, {"--duration=100ms"}, {"stray"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q): want an error", bad)
		}
	}
}

func TestOperatorComm(t *testing.T) {
	for binary, want := range map[string]string{
		"bin/manager":                         "manager",
		"/tmp/after/manager":                  "manager",
		"/tmp/manager-before":                 "manager-before",
		"/tmp/funnel-operator-manager-before": "funnel-operator",
	} {
		if got := operatorComm(binary); got != want {
			t.Errorf("operatorComm(%q) = %q, want %q", binary, got, want)
		}
	}
}

// A child run from a binary of any name is charged to the operator when it is the
// operator's binary.
func TestSampleCPUChargesTheOperatorBinary(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary to run as a stand-in operator")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "manager-after")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	s := sampleCPU(cpuProcs{operator: operatorComm(bin)})
	if _, ok := s.seconds["operator"]; !ok {
		t.Errorf("a child run from %s is not charged to the operator: %v", bin, s.seconds)
	}
	if _, ok := s.seconds["manager-after"]; ok {
		t.Errorf("the operator's CPU is under its binary's name: %v", s.seconds)
	}
}

func TestProcStatOfSelf(t *testing.T) {
	comm, ppid, secs, ok := procStat(os.Getpid())
	if !ok || comm == "" || ppid != os.Getppid() || secs < 0 {
		t.Errorf("procStat(self) = %q, %d, %v, %v", comm, ppid, secs, ok)
	}
	if s := sampleCPU(cpuProcs{}); s.total <= 0 {
		t.Errorf("sampleCPU = %+v", s)
	}
}

// BenchmarkSourceItem is the load generator's own cost per event, to compare with the
// rates it drives: it shares the cores with what it measures.
func BenchmarkSourceItem(b *testing.B) {
	src := newSource(1, 1, 0.1)
	for b.Loop() {
		if _, err := src.item(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMedianAndQuantile(t *testing.T) {
	for _, tc := range []struct {
		sorted         []float64
		median, q1, q3 float64
	}{
		{[]float64{1.5}, 1.5, 1.5, 1.5},
		{[]float64{1, 2}, 1.5, 1, 2},
		{[]float64{1, 2, 3}, 2, 1, 3},
		{[]float64{0.9, 1.2, 1.3, 1.4, 1.6, 3.0}, 1.35, 1.2, 1.6},
	} {
		if m, q1, q3 := median(tc.sorted), quantile(tc.sorted, 0.25), quantile(tc.sorted, 0.75); m != tc.median || q1 != tc.q1 || q3 != tc.q3 {
			t.Errorf("%v: median %v, quartiles %v–%v; want %v, %v–%v", tc.sorted, m, q1, q3, tc.median, tc.q1, tc.q3)
		}
	}
	if !math.IsNaN(median(nil)) || !math.IsNaN(quantile(nil, 0.5)) {
		t.Error("no values: want NaN")
	}
}
