package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// results is bench/latest.json. A headline figure is null when its phase did not run.
type results struct {
	// IngestRatioMin is the lowest ingest/raw ratio over the concurrencies.
	IngestRatioMin *float64 `json:"ingest_ratio_min"`
	// MaxAckLatencySeconds is the slowest answer of the receiver in the ingest and scaling
	// phases (any status; a request left without answer counts as answerTimeout).
	MaxAckLatencySeconds *float64 `json:"max_ack_latency_seconds"`
	// AckedMissing counts acknowledged events whose FunnelEvent does not exist afterwards.
	AckedMissing *int `json:"acked_missing"`
	// WritesPerEvent is the API writes on funnelevents per event, end to end, without
	// subscriptions.
	WritesPerEvent *float64 `json:"writes_per_event"`
	// E2ERatio is end-to-end events/s (no subscription) over raw creates/s at the same
	// client concurrency.
	E2ERatio *float64 `json:"e2e_ratio"`
	// MemoryRatio is the operator's RSS with many finished events stored over its RSS with
	// few.
	MemoryRatio *float64 `json:"memory_ratio"`
	// StatusWriteCostRatio is the API server's and etcd's CPU for the controllers' status
	// write over theirs for a create (costs phase).
	StatusWriteCostRatio *float64 `json:"status_write_cost_ratio"`
	// EtcdBytesPerEvent is what etcd grows by per processed event stored (costs phase).
	EtcdBytesPerEvent *float64 `json:"etcd_bytes_per_event"`
	// ArchiveLagP99Seconds is the archive's lag (Succeeded → row) under the e2e load.
	ArchiveLagP99Seconds *float64 `json:"archive_lag_p99_seconds"`
	Targets              []target `json:"targets"`

	Costs   *costsResult   `json:"costs"`
	Ingest  []ingestLevel  `json:"ingest"`
	E2E     []e2eStep      `json:"e2e"`
	Archive *archiveResult `json:"archive"`
	Scaling *scalingResult `json:"scaling"`
	Memory  *memoryResult  `json:"memory"`

	Machine         machine  `json:"machine"`
	Date            string   `json:"date"`
	GitCommit       string   `json:"git_commit"`
	GitDirty        bool     `json:"git_dirty"`
	Command         string   `json:"command"`
	Phases          []string `json:"phases"`
	Quick           bool     `json:"quick"`
	OperatorArgs    []string `json:"operator_args"`
	DurationSeconds float64  `json:"duration_seconds"`
	Notes           []string `json:"notes"`
}

// target is one of the project's targets and whether this run met it.
type target struct {
	Name  string   `json:"name"`
	Field string   `json:"field"`
	Value *float64 `json:"value"`
	// Op is ">=" or "<=".
	Op    string  `json:"op"`
	Limit float64 `json:"limit"`
	// Met is null when the figure was not measured.
	Met *bool `json:"met"`
}

// latency are percentiles of answer times, in seconds.
type latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func latencyOf(ds []time.Duration) latency {
	l := send.LatencyOf(ds)
	return latency{P50: l.P50.Seconds(), P95: l.P95.Seconds(), P99: l.P99.Seconds(), Max: l.Max.Seconds()}
}

type costsResult struct {
	Concurrency int `json:"concurrency"`
	Rounds      int `json:"rounds"`
	// StatusWriteCostRatio is the API server's and etcd's CPU for the controllers' status
	// write over theirs for a create: the median of the first of Pairs.
	StatusWriteCostRatio *float64 `json:"status_write_cost_ratio"`
	// Pairs are the controllers' write and the smallest status write, each measured in
	// many short pairs with creates of the same objects.
	Pairs []pairedOp `json:"pairs"`
	Ops   []opCost   `json:"ops"`
	// Object is a processed event's JSON, by part; Etcd what etcd stores per event.
	Object *objectSize `json:"object"`
	Etcd   *etcdBytes  `json:"etcd"`
	// Variants are the objects of each copy of the CRD after its status write, by part.
	Variants map[string]*objectSize `json:"variants"`
}

// opCost sums one operation over the rounds of the costs phase.
type opCost struct {
	Op string `json:"op"`
	// Variant is the CRD: "real", or a copy with one thing changed; Bare objects have no
	// labels and annotations.
	Variant          string  `json:"variant"`
	Bare             bool    `json:"bare,omitempty"`
	Count            int     `json:"count"`
	APIServerSeconds float64 `json:"apiserver_cpu_seconds"`
	EtcdSeconds      float64 `json:"etcd_cpu_seconds"`
	APIServerMsPerOp float64 `json:"apiserver_cpu_ms_per_op"`
	EtcdMsPerOp      float64 `json:"etcd_cpu_ms_per_op"`
	// TimesCreate is the API server's and etcd's CPU per operation over theirs per create
	// of the same objects (with or without labels and annotations), every variant's
	// creates together.
	TimesCreate float64 `json:"times_create"`
	// TimesCreateByRound is TimesCreate of each round alone: how far one measurement
	// moves on this machine.
	TimesCreateByRound []float64 `json:"times_create_by_round"`

	rounds []opTotal
}

// pairedOp is an operation's CPU over a create's in each of many short pairs (creates of
// fresh objects, then the operation on the same objects): the median is the figure, the
// spread the measurement's.
type pairedOp struct {
	Op string `json:"op"`
	// Ratios are sorted.
	Ratios []float64 `json:"ratios"`
	Median float64   `json:"median"`
	Q1     float64   `json:"q1"`
	Q3     float64   `json:"q3"`
}

// opTotal is one round of an operation: how many, and the API server's and etcd's CPU.
type opTotal struct {
	n    int
	secs float64
}

// ingestLevel is the receiver on a follower at one concurrency, and its baseline.
type ingestLevel struct {
	Concurrency int `json:"concurrency"`
	// RawCreatesPerSecond is the baseline: raw creates at the same concurrency, in
	// segments interleaved with the level's.
	RawCreatesPerSecond float64 `json:"raw_creates_per_second"`
	// AckedPerSecond counts every acknowledged request (first receipts and repeats).
	AckedPerSecond float64 `json:"acked_per_second"`
	// Ratio is AckedPerSecond over RawCreatesPerSecond: the target.
	Ratio *float64 `json:"ratio"`
	// SegmentRatios are each ingest segment's rate over the raw segment just before it,
	// sorted; SegmentRatioMedian their median. A disturbance of a few seconds lands in
	// one pair and moves Ratio, not the median: their difference shows the noise.
	SegmentRatios      []float64   `json:"segment_ratios"`
	SegmentRatioMedian float64     `json:"segment_ratio_median"`
	Requests           int         `json:"requests"`
	NotAcked           int         `json:"not_acked"`
	NoAnswer           int         `json:"no_answer"`
	ByStatus           map[int]int `json:"by_status"`
	Latency            latency     `json:"latency_seconds"`
	Missing            int         `json:"missing"`
	// BacklogDrainSeconds is from the release of the Lease until the leader had finished
	// the events the level left.
	BacklogDrainSeconds float64 `json:"backlog_drain_seconds"`
	// DuplicateDrainSeconds is the time spent after the ingest segments until the receiver
	// had written its duplicate counts: drained before each raw segment, not counted.
	DuplicateDrainSeconds float64 `json:"duplicate_count_drain_seconds"`
	// CPUCores is the average cores each component used during the ingest segments.
	CPUCores map[string]float64 `json:"cpu_cores"`
	// CPUMsPerRequest is each component's CPU per acknowledged request during the ingest
	// segments; RawCPUMsPerCreate the same per create during the raw segments.
	CPUMsPerRequest   map[string]float64 `json:"cpu_ms_per_request"`
	RawCPUMsPerCreate map[string]float64 `json:"raw_cpu_ms_per_create"`
	// APICostRatio is the API server's and etcd's CPU per acknowledged request over theirs
	// per raw create: the API work a webhook adds (repeats' reads and duplicate counts).
	APICostRatio *float64 `json:"api_cost_ratio"`
	Failures     []string `json:"failures,omitempty"`
}

type e2eStep struct {
	Name string `json:"name"`
	// Throughput: a closed loop, then until every event finished. Paced: an open loop at
	// half its rate, for latency without queueing.
	Throughput *e2eRun `json:"throughput"`
	Paced      *e2eRun `json:"paced"`
	// WritesByVerb counts apiserver_request_total writes on funnelevents during the
	// throughput run, by "VERB[/subresource] code"; WritesPerEvent is their sum per event.
	WritesByVerb   map[string]float64 `json:"writes_by_verb"`
	WritesPerEvent *float64           `json:"writes_per_event"`
	// RawCreatesPerSecond is the baseline: the mean of raw creates/s at
	// BaselineConcurrency right before the throughput run and right after its last event
	// finished.
	BaselineConcurrency int      `json:"baseline_concurrency"`
	RawBeforePerSecond  float64  `json:"raw_before_creates_per_second"`
	RawAfterPerSecond   float64  `json:"raw_after_creates_per_second"`
	RawCreatesPerSecond float64  `json:"raw_creates_per_second"`
	Ratio               *float64 `json:"ratio"`
	Missing             int      `json:"missing"`
	// SinkRequests and SinkDistinctKeys are what the local HTTP sink received (with a
	// subscription).
	SinkRequests     int `json:"sink_requests,omitempty"`
	SinkDistinctKeys int `json:"sink_distinct_idempotency_keys,omitempty"`
}

type e2eRun struct {
	// Concurrency of a closed loop; OfferedPerSecond of an open loop.
	Concurrency      int     `json:"concurrency,omitempty"`
	OfferedPerSecond float64 `json:"offered_per_second,omitempty"`
	Events           int     `json:"events"`
	Succeeded        int     `json:"succeeded"`
	// OtherPhase counts events that finished in another phase (Failed, Ignored).
	OtherPhase int `json:"other_phase"`
	Unfinished int `json:"unfinished"`
	Missing    int `json:"missing"`
	// Seconds is from the first POST to the last event seen Succeeded.
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	// Latency is POST to Succeeded as seen by a watch.
	Latency latency `json:"latency_seconds"`
	// CPUCores is the average cores each component used until every event finished.
	CPUCores map[string]float64 `json:"cpu_cores"`

	// firstPost is when the first event was posted; succeededAt when the watch saw each
	// Succeeded event so.
	firstPost   time.Time
	succeededAt map[string]time.Time
}

// archiveResult is the PostgreSQL archive during the e2e step "no subscription, archive
// on" (its baseline: the step without the archive, and raw creates beside each).
type archiveResult struct {
	// CatchUpEvents were finished and stored when the archive was turned on;
	// CatchUpSeconds from the first one's row to the last one's.
	CatchUpEvents    int     `json:"catch_up_events"`
	CatchUpSeconds   float64 `json:"catch_up_seconds"`
	CatchUpPerSecond float64 `json:"catch_up_events_per_second"`
	// Throughput and Paced are the step's two runs.
	Throughput *archiveRun `json:"throughput"`
	Paced      *archiveRun `json:"paced"`
	// E2ERatioVsWithout is the step's e2e ratio over that of the step without the archive.
	E2ERatioVsWithout *float64 `json:"e2e_ratio_vs_without"`
}

// archiveRun is the archive during one e2e run.
type archiveRun struct {
	// Events Succeeded in the run; Archived of them have a row.
	Events   int `json:"events"`
	Archived int `json:"archived"`
	// Seconds is from the run's first POST to its last event's row.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"events_per_second"`
	// Lag is from Succeeded, as the bench's watch saw it, to the event's row.
	Lag latency `json:"lag_seconds"`
}

type scalingResult struct {
	// ReferencePerSecond is the rate the steps are percentages of: the best ingest
	// acked/s, at ReferenceConcurrency.
	ReferencePerSecond   float64        `json:"reference_per_second"`
	ReferenceConcurrency int            `json:"reference_concurrency"`
	DurationSeconds      float64        `json:"step_duration_seconds"`
	Points               []scalingPoint `json:"points"`
}

type scalingPoint struct {
	Percent             int                `json:"percent"`
	OfferedPerSecond    float64            `json:"offered_per_second"`
	Sent                int                `json:"sent"`
	Acked               int                `json:"acked"`
	AchievedPerSecond   float64            `json:"achieved_per_second"`
	Shed503             int                `json:"shed_503"`
	Limited429          int                `json:"limited_429"`
	NoAnswer            int                `json:"no_answer"`
	DroppedByClient     int                `json:"dropped_by_client"`
	Latency             latency            `json:"latency_seconds"`
	Missing             int                `json:"missing"`
	BacklogDrainSeconds float64            `json:"backlog_drain_seconds"`
	CPUCores            map[string]float64 `json:"cpu_cores"`
	Failures            []string           `json:"failures,omitempty"`
}

type memoryPoint struct {
	// EventsStored counts the FunnelEvents, all finished, in the namespaces the operator
	// watches.
	EventsStored   int     `json:"events_stored"`
	RSSBytes       int64   `json:"rss_bytes"`
	HeapInuseBytes float64 `json:"heap_inuse_bytes"`
	Goroutines     float64 `json:"goroutines"`
}

type memoryResult struct {
	Small     *memoryPoint `json:"small"`
	Large     *memoryPoint `json:"large"`
	RSSRatio  *float64     `json:"rss_ratio"`
	HeapRatio *float64     `json:"heap_ratio"`
}

type machine struct {
	NProc       int    `json:"nproc"`
	CPUModel    string `json:"cpu_model"`
	MemoryBytes int64  `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	GoVersion   string `json:"go_version"`
}

// ratio returns a/b rounded to 3 decimals, nil when b is 0.
func ratio(a, b float64) *float64 {
	if b == 0 {
		return nil
	}
	return ptrTo(round3(a / b))
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func ptrTo[T any](v T) *T { return &v }

func valueOr(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// summarize fills the headline figures and the targets from the phases' results.
func (r *results) summarize() {
	missing, measured := 0, false
	maxLatency := func(l latency, noAnswer int) {
		v := l.Max
		if noAnswer > 0 {
			v = max(v, answerTimeout.Seconds())
		}
		if r.MaxAckLatencySeconds == nil || v > *r.MaxAckLatencySeconds {
			r.MaxAckLatencySeconds = ptrTo(round3(v))
		}
	}
	for _, l := range r.Ingest {
		if l.Ratio != nil && (r.IngestRatioMin == nil || *l.Ratio < *r.IngestRatioMin) {
			r.IngestRatioMin = ptrTo(*l.Ratio)
		}
		maxLatency(l.Latency, l.NoAnswer)
		missing, measured = missing+l.Missing, true
	}
	if r.Scaling != nil {
		for _, p := range r.Scaling.Points {
			maxLatency(p.Latency, p.NoAnswer)
			missing, measured = missing+p.Missing, true
		}
	}
	for _, s := range r.E2E {
		missing, measured = missing+s.Missing, true
	}
	if measured {
		r.AckedMissing = ptrTo(missing)
	}
	if len(r.E2E) > 0 {
		r.WritesPerEvent, r.E2ERatio = r.E2E[0].WritesPerEvent, r.E2E[0].Ratio
	}
	if r.Memory != nil {
		r.MemoryRatio = r.Memory.RSSRatio
	}
	if r.Costs != nil {
		r.StatusWriteCostRatio = r.Costs.StatusWriteCostRatio
		if r.Costs.Etcd != nil {
			r.EtcdBytesPerEvent = ptrTo(r.Costs.Etcd.BytesPerEvent)
		}
	}
	if r.Archive != nil && r.Archive.Throughput != nil && r.Archive.Throughput.Archived > 0 {
		r.ArchiveLagP99Seconds = ptrTo(round3(r.Archive.Throughput.Lag.P99))
	}
	var acked *float64
	if r.AckedMissing != nil {
		acked = ptrTo(float64(*r.AckedMissing))
	}
	r.Targets = []target{
		check("ingest ≥ 0.8× raw at every concurrency", "ingest_ratio_min", r.IngestRatioMin, ">=", 0.8),
		check("no answer later than 4 s", "max_ack_latency_seconds", r.MaxAckLatencySeconds, "<=", 4),
		check("no acknowledged event missing", "acked_missing", acked, "<=", 0),
		check("≤ 3 API writes per event (no subscription)", "writes_per_event", r.WritesPerEvent, "<=", 3),
		check("end to end ≥ 0.35× raw creates/s", "e2e_ratio", r.E2ERatio, ">=", 0.35),
		check("memory with many/few finished events ≤ 1.3", "memory_ratio", r.MemoryRatio, "<=", 1.3),
		check("the controllers' status write ≤ 1.5× a create", "status_write_cost_ratio", r.StatusWriteCostRatio, "<=", 1.5),
	}
}

func check(name, field string, v *float64, op string, limit float64) target {
	t := target{Name: name, Field: field, Value: v, Op: op, Limit: limit}
	if v != nil {
		met := *v >= limit
		if op == "<=" {
			met = *v <= limit
		}
		t.Met = &met
	}
	return t
}

// newResults records how and where the run happens.
func newResults(o options) *results {
	r := &results{Date: time.Now().UTC().Format(time.RFC3339), Command: strings.Join(append([]string{"bin/bench"}, os.Args[1:]...), " "),
		Phases: o.phases, Quick: o.quick, OperatorArgs: o.operatorArgs, Notes: []string{},
		Machine: machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}}
	if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		r.GitCommit = strings.TrimSpace(string(out))
		status, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
		r.GitDirty = len(bytes.TrimSpace(status)) > 0
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				r.Machine.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if _, rest, ok := strings.Cut(string(b), "MemTotal:"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				r.Machine.MemoryBytes = kb << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(b))
	}
	return r
}

// write writes latest.json, results.md (md) and scaling.png to dir, each through a
// temporary file, so that an interrupted run never leaves half a file.
func (r *results) write(dir, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{"latest.json": append(js, '\n'), "results.md": []byte(md)}
	if r.Scaling != nil && len(r.Scaling.Points) > 0 {
		if files["scaling.png"], err = plotScaling(r.Scaling); err != nil {
			return fmt.Errorf("plotting the scaling curve: %w", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path+".tmp", files[name], 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		logf("wrote %s", path)
	}
	return nil
}
