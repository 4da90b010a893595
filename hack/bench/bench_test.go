package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/funnel-operator/funnel-operator/api/funnel"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
	"github.com/funnel-operator/funnel-operator/test/harness"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, n := range v {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 100, 100 * time.Millisecond},
		{"nearest rank rounds up", ms(1, 2, 3), 50, 2 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
	s := statsOf(ms(30, 10, 20))
	if s.P50 != 0.02 || s.Max != 0.03 {
		t.Errorf("statsOf sorts a copy: got %+v", s)
	}
}

// apiserverMetrics is a trimmed sample of kube-apiserver's exposition.
const apiserverMetrics = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="",verb="POST",version="v1alpha1"} 10
apiserver_request_total{code="409",component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="",verb="POST",version="v1alpha1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="",verb="PATCH",version="v1alpha1"} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="namespace",subresource="",verb="LIST",version="v1alpha1"} 50
apiserver_request_total{code="200",component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelreceivers",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="POST",version="v1"} 4
# HELP apiserver_request_duration_seconds [STABLE] Response latency distribution.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="status",verb="PATCH",version="v1alpha1",le="+Inf"} 10
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 0.5
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="funnel.leasing.dev",resource="funnelevents",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 10
`

func TestWritesFromMetrics(t *testing.T) {
	fams, err := harness.ParseMetrics([]byte(apiserverMetrics))
	if err != nil {
		t.Fatal(err)
	}
	got, others, err := writesFromMetrics(fams)
	if err != nil {
		t.Fatal(err)
	}
	if others["funnelreceivers.funnel.leasing.dev PATCH/status 200"] != 3 || others["secrets POST 201"] != 4 || len(others) != 2 {
		t.Errorf("other writes = %v", others)
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
	before := map[string]float64{"POST 201": 4, "PATCH 200": 9}
	diff, total := diffCounts(before, got)
	if total != 6+2+10 || diff["PATCH 200"] != 0 && len(diff) != 3 {
		t.Errorf("diffCounts = %v, %v", diff, total)
	}
	if _, ok := diff["PATCH 200"]; ok {
		t.Errorf("diffCounts keeps unchanged keys: %v", diff)
	}

	sums := histogramSums(fams, "apiserver_request_duration_seconds", func(l map[string]string) string { return eventWriteKey(l) })
	means := meansSince(histSums{"PATCH/status": {0.1, 5}}, sums)
	if means["PATCH/status"] != 0.08 {
		t.Errorf("mean PATCH/status = %v, want (0.5-0.1)/(10-5) = 0.08", means["PATCH/status"])
	}

	if _, _, err := writesFromMetrics(nil); err == nil {
		t.Error("metrics without apiserver_request_total: want an error")
	}
}

func TestSourceMixAndDuplicates(t *testing.T) {
	src := newSource(1, 1, 0.1)
	types, formats := map[string]bool{}, map[string]bool{}
	seen := map[string][]byte{}
	dups := 0
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
		if name := env.ObjectName(it.body); name != it.name {
			t.Fatalf("item name %q, ObjectName %q", it.name, name)
		}
		types[env.Type], formats[string(env.Format)] = true, true
		if prev, ok := seen[it.name]; ok {
			if !it.dup || !bytes.Equal(prev, it.body) {
				t.Fatalf("name %q repeated with dup=%v or another body", it.name, it.dup)
			}
			dups++
			continue
		}
		if it.dup {
			t.Fatalf("dup set on a first receipt %q", it.name)
		}
		seen[it.name] = it.body
	}
	if len(types) != 16 || len(formats) != 3 {
		t.Errorf("mix: %d types, %d formats; want 16 and 3", len(types), len(formats))
	}
	if frac := float64(dups) / n; frac < 0.07 || frac > 0.13 {
		t.Errorf("duplicates: %.3f of requests, want about 0.10", frac)
	}
}

func TestEventObject(t *testing.T) {
	src := newSource(2, 2, 0)
	for range 50 {
		it, err := src.item()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := eventObject("ns", it.body, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name != it.name || ev.Namespace != "ns" {
			t.Fatalf("object %s/%s, want ns/%s", ev.Namespace, ev.Name, it.name)
		}
		if ev.Labels[funnelv1.LabelEventType] == "" || ev.Labels[funnelv1.LabelReceiver] != receiverName ||
			ev.Spec.Receiver != receiverName || ev.Annotations[funnelv1.AnnotationDigest] == "" {
			t.Fatalf("labels %v, annotations %v, receiver %q", ev.Labels, ev.Annotations, ev.Spec.Receiver)
		}
		if len(ev.Spec.Data.Raw) == 0 || ev.Spec.Type == "" || ev.Spec.Format == "" || ev.Status.Phase != "" {
			t.Fatalf("spec %+v, status %+v", ev.Spec, ev.Status)
		}
		finish(ev, time.Now())
		if !ev.Status.Phase.Finished() || ev.Status.ProcessedTime == nil || len(ev.Status.Conditions) != 1 {
			t.Fatalf("finished status %+v", ev.Status)
		}
	}
}

func TestLeaseFree(t *testing.T) {
	now := time.Now()
	spec := func(holder string, renewedAgo time.Duration) coordinationv1.LeaseSpec {
		s := coordinationv1.LeaseSpec{LeaseDurationSeconds: ptrTo(int32(15)), RenewTime: ptrTo(metav1.NewMicroTime(now.Add(-renewedAgo)))}
		if holder != "-" {
			s.HolderIdentity = ptrTo(holder)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		spec coordinationv1.LeaseSpec
		want bool
	}{
		{"no holder", spec("-", 0), true},
		{"released (empty holder)", spec("", 0), true},
		{"held by the bench", spec(benchIdentity, 0), true},
		{"held by the operator", spec("op_1234", 5*time.Second), false},
		{"expired", spec("op_1234", 16*time.Second), true},
		{"no renew time", coordinationv1.LeaseSpec{HolderIdentity: ptrTo("op")}, true},
	} {
		if got := leaseFree(tc.spec, benchIdentity, now); got != tc.want {
			t.Errorf("%s: leaseFree = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestUnexpectedWrites(t *testing.T) {
	if got := unexpectedWrites(map[string]float64{"POST 201": 10, "PUT/status 200": 9, "PATCH/status 200": 1}); got != nil {
		t.Errorf("expected writes reported as unexpected: %v", got)
	}
	got := unexpectedWrites(map[string]float64{"POST 201": 10, "PATCH 200": 10, "PUT/status 409": 2})
	if len(got) != 2 || got["PATCH 200"] != 10 || got["PUT/status 409"] != 2 {
		t.Errorf("unexpectedWrites = %v", got)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "bench" || len(o.phases) != len(allPhases) || o.quick {
		t.Errorf("defaults: out %q, phases %v", o.out, o.phases)
	}
	o, err = parseFlags([]string{"--quick", "--raw-duration=3s"})
	if err != nil {
		t.Fatal(err)
	}
	if o.out != "" || o.rawDuration != 3*time.Second || o.ingestDuration != 2*time.Second || o.memoryLarge != 10000 {
		t.Errorf("--quick: out %q, raw %s (set explicitly), ingest %s, memory-large %d", o.out, o.rawDuration, o.ingestDuration, o.memoryLarge)
	}
	o, err = parseFlags([]string{"--phases=ingest, raw,ingest"})
	if err != nil || strings.Join(o.phases, ",") != "ingest,raw" || o.out != "" {
		t.Errorf("--phases: %v, out %q, err %v", o.phases, o.out, err)
	}
	for _, bad := range [][]string{
		{"--phases=raw,nope"},
		{"--concurrency=1,0"},
		{"--concurrency=a"},
		{"--duplicates=1"},
		{"--memory-small=10", "--memory-large=10"},
		{"--raw-duration=0s"},
		{"--rounds=0"},
		{"--rounds=30", "--ingest-duration=10s"},
		{"stray"},
	} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q): want an error", bad)
		}
	}
}

func TestTallyMerge(t *testing.T) {
	a, b := newTally(), newTally()
	a.add(outcome{status: 200, ack: true, latency: time.Millisecond, it: item{name: "evt-a"}})
	a.elapsed = time.Second
	b.add(outcome{status: 200, ack: true, latency: 3 * time.Millisecond, it: item{name: "evt-b", dup: true}})
	b.add(outcome{status: 503, err: errors.New("overloaded"), latency: 2 * time.Millisecond})
	b.add(outcome{err: errors.New("timeout")})
	b.elapsed = 2 * time.Second
	a.merge(b)
	if a.sent != 4 || a.acked != 2 || a.ackedDups != 1 || a.noAnswer != 1 || a.elapsed != 3*time.Second {
		t.Errorf("sent %d acked %d dups %d no answer %d elapsed %s", a.sent, a.acked, a.ackedDups, a.noAnswer, a.elapsed)
	}
	if a.byStatus[200] != 2 || a.byStatus[503] != 1 || a.reasons["overloaded"] != 1 || a.reasons["timeout"] != 1 {
		t.Errorf("by status %v, reasons %v", a.byStatus, a.reasons)
	}
	if !slices.Equal(a.ackedNames, []string{"evt-a", "evt-b"}) || len(a.latencies) != 3 {
		t.Errorf("acked %v, %d latencies", a.ackedNames, len(a.latencies))
	}
}

func TestSummarizeAndRender(t *testing.T) {
	r := &results{
		Raw: []rawLevel{{Concurrency: 1, CreatesPerSecond: 100}, {Concurrency: 8, CreatesPerSecond: 300}},
		Ingest: []ingestLevel{
			{Concurrency: 1, ingestRun: ingestRun{AckedPerSecond: 90, Latency: latencyStats{Max: 0.2}}, Ratio: ptrTo(0.9), RawCreatesPerSecond: ptrTo(100.0),
				WithProcessing: &ingestRun{AckedPerSecond: 45, Latency: latencyStats{Max: 3.5}, Missing: 1, CPUCores: map[string]float64{"apiserver": 1}}, RatioProcessed: ptrTo(0.75)},
			{Concurrency: 8, ingestRun: ingestRun{AckedPerSecond: 210, NoAnswer: 1, Missing: 2}, Ratio: ptrTo(0.7)},
		},
		E2E:    []e2eStep{{Name: "no subscription", Throughput: &e2eRun{Events: 10}, WritesPerEvent: ptrTo(3.0), Ratio: ptrTo(0.4)}, {Name: "sub", Skipped: "FunnelSubscription not available"}},
		Memory: &memoryResult{RSSRatio: ptrTo(1.1)},
	}
	r.summarize()
	if *r.IngestRatioMin != 0.7 || *r.MaxAckLatencySeconds != answerTimeout.Seconds() || *r.AckedMissing != 3 ||
		*r.WritesPerEvent != 3 || *r.E2ERatio != 0.4 || *r.MemoryRatio != 1.1 {
		t.Errorf("summary: min %v, max latency %v, missing %v, writes %v, e2e %v, memory %v", *r.IngestRatioMin,
			*r.MaxAckLatencySeconds, *r.AckedMissing, *r.WritesPerEvent, *r.E2ERatio, *r.MemoryRatio)
	}
	met := map[string]bool{}
	for _, tg := range r.Targets {
		met[tg.Field] = tg.Met != nil && *tg.Met
	}
	want := map[string]bool{"ingest_ratio_min": false, "max_ack_latency_seconds": false, "acked_missing": false,
		"writes_per_event": true, "e2e_ratio": true, "memory_ratio": true}
	for k, v := range want {
		if met[k] != v {
			t.Errorf("target %s met = %v, want %v", k, met[k], v)
		}
	}
	out := renderTables(r)
	for _, s := range []string{"skipped: FunnelSubscription not available", "| 8 | 300.0 |", "**missed**", "| 1 | 100.0 |", "| 45.0 | 0.75 |",
		"**Ingest with processing on the same API server**", "| 1 | 45.0 | 0.45 |", "ingest with processing c=1 (leader)"} {
		if !strings.Contains(out, s) {
			t.Errorf("tables lack %q:\n%s", s, out)
		}
	}
	if md := renderReadme(r); !strings.Contains(md, "## How to run") || !strings.Contains(md, out) {
		t.Error("README lacks its sections or the tables")
	}

	empty := &results{}
	empty.summarize()
	for _, tg := range empty.Targets {
		if tg.Met != nil || tg.Value != nil {
			t.Errorf("nothing measured, yet target %s has %v/%v", tg.Field, tg.Value, tg.Met)
		}
	}
}

func TestPlotScaling(t *testing.T) {
	png, err := plotScaling(&scalingResult{ReferencePerSecond: 100, DurationSeconds: 5, Points: []scalingPoint{
		{Percent: 50, OfferedPerSecond: 50, AchievedPerSecond: 50, Latency: latencyStats{P50: 0.01, P99: 0.05}},
		{Percent: 150, OfferedPerSecond: 150, AchievedPerSecond: 90, Shed503: 100, Latency: latencyStats{P50: 1, P99: 3.5}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Error("not a PNG")
	}
}

func TestRunOpenKeepsTheRate(t *testing.T) {
	items, _ := feed(t.Context(), func() (item, error) { return item{name: "x"}, nil })
	var inFlight, peak atomic.Int32
	tl := newTally()
	start := time.Now()
	dropped, err := runOpen(t.Context(), 200, 500*time.Millisecond, 5, items, func(ctx context.Context, it item) outcome {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		return outcome{it: it, status: 200, ack: true, latency: 20 * time.Millisecond}
	}, tl)
	if err != nil {
		t.Fatal(err)
	}
	// 100 arrivals in 0.5 s, each busy 20 ms: about 4 in flight, so the bound of 5 drops few.
	if tl.sent+dropped != 100 {
		t.Errorf("sent %d + dropped %d, want 100 arrivals", tl.sent, dropped)
	}
	if peak.Load() > 5 {
		t.Errorf("%d in flight, above the bound of 5", peak.Load())
	}
	if el := time.Since(start); el < 450*time.Millisecond || el > 2*time.Second {
		t.Errorf("took %s for 0.5 s of arrivals", el)
	}
}

func TestProcStatOfSelf(t *testing.T) {
	comm, ppid, secs, ok := procStat(os.Getpid())
	if !ok || comm == "" || ppid != os.Getppid() || secs < 0 {
		t.Errorf("procStat(self) = %q, %d, %v, %v", comm, ppid, secs, ok)
	}
	s := sampleCPU()
	if _, ok := s.seconds["bench"]; !ok || s.total <= 0 {
		t.Errorf("sampleCPU = %+v", s)
	}
}

// The load generator's own cost per event, to compare with the rates it drives: it
// shares the cores with what it measures.

func BenchmarkSourceItem(b *testing.B) {
	src := newSource(1, 1, 0.1)
	for b.Loop() {
		if _, err := src.item(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventObject(b *testing.B) {
	it, err := newSource(1, 1, 0).item()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for b.Loop() {
		if _, err := eventObject("ns", it.body, now); err != nil {
			b.Fatal(err)
		}
	}
}
