package main

import "math"

// results is bench/latest.json. The headline figures are null when their phase did not
// run (or, for the subscription step, could not).
type results struct {
	// IngestRatioMin is the lowest ingest/raw ratio over the concurrencies.
	IngestRatioMin *float64 `json:"ingest_ratio_min"`
	// MaxAckLatencySeconds is the slowest answer of the receiver in the ingest (follower
	// and leader) and scaling phases (any status; a request left without answer counts as
	// the bench's 10 s client timeout).
	MaxAckLatencySeconds *float64 `json:"max_ack_latency_seconds"`
	// AckedMissing counts acknowledged events whose FunnelEvent does not exist afterwards.
	AckedMissing *int `json:"acked_missing"`
	// WritesPerEvent is the API writes on funnelevents per event, end to end, without
	// subscriptions.
	WritesPerEvent *float64 `json:"writes_per_event"`
	// E2ERatio is end-to-end events/s (POST to Succeeded, no subscription) over raw
	// creates/s at the same client concurrency.
	E2ERatio *float64 `json:"e2e_ratio"`
	// MemoryRatio is the operator's RSS with the large number of finished events stored
	// over its RSS with the small number.
	MemoryRatio *float64 `json:"memory_ratio"`

	Targets []target `json:"targets"`

	Raw []rawLevel `json:"raw"`
	// RawProcessed are raw creates in a watched namespace: the controllers process them.
	RawProcessed []rawLevel     `json:"raw_processed"`
	Ingest       []ingestLevel  `json:"ingest"`
	E2E          []e2eStep      `json:"e2e"`
	Scaling      *scalingResult `json:"scaling"`
	Memory       *memoryResult  `json:"memory"`
	// Costs are the API server's and etcd's CPU per operation on a FunnelEvent.
	Costs *costsResult `json:"costs"`

	Machine         machine           `json:"machine"`
	Date            string            `json:"date"`
	GitCommit       string            `json:"git_commit"`
	GitDirty        bool              `json:"git_dirty"`
	Command         string            `json:"command"`
	Phases          []string          `json:"phases"`
	Quick           bool              `json:"quick"`
	Settings        map[string]string `json:"settings"`
	OperatorArgs    []string          `json:"operator_args"`
	DurationSeconds float64           `json:"duration_seconds"`
	Notes           []string          `json:"notes"`
}

// target is one of the targets and whether this run met it.
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

type rawLevel struct {
	Concurrency      int          `json:"concurrency"`
	Created          int          `json:"created"`
	Failed           int          `json:"failed"`
	Seconds          float64      `json:"seconds"`
	CreatesPerSecond float64      `json:"creates_per_second"`
	Latency          latencyStats `json:"latency_seconds"`
	// CPUCores is the average cores each component used during the level.
	CPUCores map[string]float64 `json:"cpu_cores"`
	// BacklogDrainSeconds (processed levels): how long the controllers needed afterwards.
	BacklogDrainSeconds float64  `json:"backlog_drain_seconds,omitempty"`
	Failures            []string `json:"failures,omitempty"`
}

// ingestRun is one closed-loop run of the receiver at one concurrency.
type ingestRun struct {
	Requests int `json:"requests"`
	Acked    int `json:"acked"`
	// AckedDuplicates are acknowledged repeats of an event already sent.
	AckedDuplicates int         `json:"acked_duplicates"`
	ByStatus        map[int]int `json:"by_status"`
	NoAnswer        int         `json:"no_answer"`
	Seconds         float64     `json:"seconds"`
	// AckedPerSecond counts every acknowledged request (first receipts and repeats).
	AckedPerSecond       float64      `json:"acked_per_second"`
	UniqueAckedPerSecond float64      `json:"unique_acked_per_second"`
	Latency              latencyStats `json:"latency_seconds"`
	Missing              int          `json:"missing"`
	// BacklogDrainSeconds is how long the controllers needed after the run to finish the
	// events it left unprocessed (for a follower run: from the release of the Lease).
	BacklogDrainSeconds float64 `json:"backlog_drain_seconds"`
	// TakeoverSeconds (follower runs) is the part of BacklogDrainSeconds until the
	// operator held the released Lease.
	TakeoverSeconds float64 `json:"leader_takeover_seconds,omitempty"`
	// Reconciles counts the event controllers' reconciles during the run: 0 when the
	// operator was a follower.
	Reconciles float64 `json:"reconciles"`
	// DuplicateDrainSeconds (interleaved follower runs) is the time spent after the ingest
	// segments until the receiver had written its duplicate counts: drained before each
	// raw segment, not counted in the ingest rate.
	DuplicateDrainSeconds float64            `json:"duplicate_count_drain_seconds,omitempty"`
	CPUCores              map[string]float64 `json:"cpu_cores"`
	Failures              []string           `json:"failures,omitempty"`
}

// ingestLevel is the receiver at one concurrency, measured on a follower (the operator
// waits for the Lease the bench holds: its receiver serves, its controllers do not run),
// and again with the operator as the leader (WithProcessing).
type ingestLevel struct {
	Concurrency int `json:"concurrency"`
	ingestRun
	// RawCreatesPerSecond is the baseline: raw creates/s at the same concurrency,
	// measured right before this level (--adjacent-raw), else in the raw phase.
	RawCreatesPerSecond *float64 `json:"raw_creates_per_second"`
	// BaselineAdjacent says the baseline was measured right before this level;
	// RawPhasePerSecond then keeps the raw phase's figure (when it ran).
	BaselineAdjacent  bool     `json:"baseline_adjacent"`
	RawPhasePerSecond *float64 `json:"raw_phase_creates_per_second,omitempty"`
	// Ratio is the follower's acked/s over RawCreatesPerSecond: the target.
	Ratio *float64 `json:"ratio"`
	// WithProcessing is the same level with the operator as the leader: its controllers
	// process the events on the same API server while the level runs.
	WithProcessing *ingestRun `json:"with_processing"`
	// RawProcessedPerSecond is raw creates/s at the same concurrency with the
	// controllers processing them; RatioProcessed = WithProcessing acked/s over it, what
	// the receiver costs when both compete with processing.
	RawProcessedPerSecond *float64 `json:"raw_processed_creates_per_second"`
	RatioProcessed        *float64 `json:"ratio_processed"`
}

type e2eStep struct {
	Name    string `json:"name"`
	Skipped string `json:"skipped,omitempty"`
	// Throughput: a closed loop at the e2e concurrency, then until every event finished.
	Throughput *e2eRun `json:"throughput"`
	// Paced: an open loop below saturation, for latency without queueing.
	Paced *e2eRun `json:"paced"`
	// WritesTotal counts apiserver_request_total writes on funnelevents during the
	// throughput run, by "VERB[/subresource] code".
	WritesTotal  *float64           `json:"writes_total"`
	WritesByVerb map[string]float64 `json:"writes_by_verb,omitempty"`
	// OtherWrites are the writes on other resources meanwhile ("resource.group VERB code"),
	// e.g. FunnelSubscription status or Kubernetes Events.
	OtherWrites map[string]float64 `json:"other_writes,omitempty"`
	// WritesPerEvent is WritesTotal over the events of the throughput run.
	WritesPerEvent *float64 `json:"writes_per_event"`
	// UnexpectedWrites are the writes other than POST 201 and PUT/status or PATCH/status
	// 200 (with a subscription, its deliveries may add some).
	UnexpectedWrites map[string]float64 `json:"unexpected_writes,omitempty"`
	// RawCreatesPerSecond is the baseline: raw creates/s at BaselineConcurrency, the mean
	// of RawBeforePerSecond and RawAfterPerSecond, measured right before the throughput
	// run and right after its last event finished (--adjacent-raw), else in the raw phase
	// (RawPhasePerSecond then keeps the raw phase's figure).
	BaselineConcurrency int      `json:"baseline_concurrency,omitempty"`
	RawCreatesPerSecond *float64 `json:"raw_creates_per_second"`
	BaselineAdjacent    bool     `json:"baseline_adjacent"`
	RawBeforePerSecond  *float64 `json:"raw_before_creates_per_second,omitempty"`
	RawAfterPerSecond   *float64 `json:"raw_after_creates_per_second,omitempty"`
	RawPhasePerSecond   *float64 `json:"raw_phase_creates_per_second,omitempty"`
	Ratio               *float64 `json:"ratio"`
	// SinkRequests and SinkDistinctKeys are what the local HTTP sink received.
	// Diagnostics are mean durations in seconds during the throughput run: the API
	// server's per write verb on funnelevents ("apiserver PATCH/status"), the event
	// controllers' reconcile and work-queue wait per family.
	Diagnostics      map[string]float64 `json:"diagnostics_mean_seconds,omitempty"`
	SinkRequests     *int               `json:"sink_requests,omitempty"`
	SinkDistinctKeys *int               `json:"sink_distinct_idempotency_keys,omitempty"`
	Missing          int                `json:"missing"`
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
	// Seconds is from the first POST to the last event seen Succeeded.
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	// SendSeconds and AckedPerSecond describe the sending alone.
	SendSeconds    float64 `json:"send_seconds"`
	AckedPerSecond float64 `json:"acked_per_second"`
	// Latency is POST to Succeeded as seen by a watch; AckLatency the HTTP answer.
	Latency    latencyStats `json:"latency_seconds"`
	AckLatency latencyStats `json:"ack_latency_seconds"`
	// CPUCores is the average cores each component used from the first POST until every
	// event finished.
	CPUCores map[string]float64 `json:"cpu_cores"`
	// Tail is the processing that went on after the sending stopped: the controllers
	// alone, working off the backlog.
	Tail *e2eTail `json:"tail,omitempty"`
}

type e2eTail struct {
	Events          int                `json:"events"`
	Seconds         float64            `json:"seconds"`
	EventsPerSecond float64            `json:"events_per_second"`
	CPUCores        map[string]float64 `json:"cpu_cores"`
}

type scalingResult struct {
	// ReferencePerSecond is the rate the steps are percentages of: the best ingest acked/s.
	ReferencePerSecond float64 `json:"reference_per_second"`
	Reference          string  `json:"reference"`
	// Operator is the operator's role during the steps: "follower" (the bench held the
	// Lease: the receiver's capacity, the controllers waiting).
	Operator        string         `json:"operator"`
	DurationSeconds float64        `json:"step_duration_seconds"`
	Points          []scalingPoint `json:"points"`
}

type scalingPoint struct {
	Percent           int          `json:"percent"`
	OfferedPerSecond  float64      `json:"offered_per_second"`
	Sent              int          `json:"sent"`
	Acked             int          `json:"acked"`
	AchievedPerSecond float64      `json:"achieved_per_second"`
	ByStatus          map[int]int  `json:"by_status"`
	Shed503           int          `json:"shed_503"`
	Limited429        int          `json:"limited_429"`
	NoAnswer          int          `json:"no_answer"`
	DroppedByClient   int          `json:"dropped_by_client"`
	Latency           latencyStats `json:"latency_seconds"`
	Missing           int          `json:"missing"`
	// BacklogDrainSeconds: as for the follower ingest levels (from the release of the
	// Lease, TakeoverSeconds of it until the operator held it).
	BacklogDrainSeconds float64            `json:"backlog_drain_seconds"`
	TakeoverSeconds     float64            `json:"leader_takeover_seconds"`
	CPUCores            map[string]float64 `json:"cpu_cores"`
	Failures            []string           `json:"failures,omitempty"`
}

type memoryPoint struct {
	// EventsStored counts the FunnelEvents in the namespaces the operator watches, all
	// finished.
	EventsStored int `json:"events_stored"`
	// UnwatchedEvents are the raw baseline's events, in the namespace the operator does
	// not watch (never processed, never listed by it).
	UnwatchedEvents int     `json:"unwatched_events"`
	RSSBytes        int64   `json:"rss_bytes"`
	HeapInuseBytes  float64 `json:"heap_inuse_bytes"`
	Goroutines      float64 `json:"goroutines"`
	// IdleAfterSeconds is how long after /readyz answered 200 the operator went idle.
	IdleAfterSeconds float64 `json:"idle_after_seconds"`
	// GCForced: a collection was forced (pprof /debug/pprof/heap?gc=1) before reading.
	GCForced bool `json:"gc_forced"`
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

// summarize fills the headline figures and the targets from the phases' results.
func (r *results) summarize() {
	for _, l := range r.Ingest {
		if l.Ratio != nil && (r.IngestRatioMin == nil || *l.Ratio < *r.IngestRatioMin) {
			r.IngestRatioMin = ptrTo(*l.Ratio)
		}
	}
	maxLatency := func(s latencyStats, noAnswer int) {
		v := s.Max
		if noAnswer > 0 {
			v = max(v, answerTimeout.Seconds())
		}
		if r.MaxAckLatencySeconds == nil || v > *r.MaxAckLatencySeconds {
			r.MaxAckLatencySeconds = ptrTo(round3(v))
		}
	}
	missing := 0
	measured := false
	for _, l := range r.Ingest {
		maxLatency(l.Latency, l.NoAnswer)
		missing += l.Missing
		measured = true
		if w := l.WithProcessing; w != nil {
			maxLatency(w.Latency, w.NoAnswer)
			missing += w.Missing
		}
	}
	if r.Scaling != nil {
		for _, p := range r.Scaling.Points {
			maxLatency(p.Latency, p.NoAnswer)
			missing += p.Missing
			measured = true
		}
	}
	for _, s := range r.E2E {
		if s.Throughput != nil {
			missing += s.Missing
			measured = true
		}
	}
	if measured {
		r.AckedMissing = ptrTo(missing)
	}
	if len(r.E2E) > 0 && r.E2E[0].Skipped == "" {
		r.WritesPerEvent = r.E2E[0].WritesPerEvent
		r.E2ERatio = r.E2E[0].Ratio
	}
	if r.Memory != nil {
		r.MemoryRatio = r.Memory.RSSRatio
	}

	intPtr := func(p *int) *float64 {
		if p == nil {
			return nil
		}
		return ptrTo(float64(*p))
	}
	r.Targets = []target{
		check("ingest ≥ 0.8× raw at every concurrency", "ingest_ratio_min", r.IngestRatioMin, ">=", 0.8),
		check("no answer later than 4 s", "max_ack_latency_seconds", r.MaxAckLatencySeconds, "<=", 4),
		check("no acknowledged event missing", "acked_missing", intPtr(r.AckedMissing), "<=", 0),
		check("≤ 3 API writes per event (no subscription)", "writes_per_event", r.WritesPerEvent, "<=", 3),
		check("end to end ≥ 0.35× raw creates/s", "e2e_ratio", r.E2ERatio, ">=", 0.35),
		check("memory with many/few finished events ≤ 1.3", "memory_ratio", r.MemoryRatio, "<=", 1.3),
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

// costsResult is what one operation on a FunnelEvent costs the API server and etcd.
type costsResult struct {
	Concurrency int      `json:"concurrency"`
	Rounds      int      `json:"rounds"`
	Ops         []opCost `json:"ops"`
}

// opCost sums one operation over the rounds of the costs phase.
type opCost struct {
	Op               string  `json:"op"`
	Count            int     `json:"count"`
	APIServerSeconds float64 `json:"apiserver_cpu_seconds"`
	EtcdSeconds      float64 `json:"etcd_cpu_seconds"`
	APIServerMsPerOp float64 `json:"apiserver_cpu_ms_per_op"`
	EtcdMsPerOp      float64 `json:"etcd_cpu_ms_per_op"`
	// TimesCreate is the API server's CPU per operation over its CPU per create.
	TimesCreate float64 `json:"apiserver_times_create"`
}
