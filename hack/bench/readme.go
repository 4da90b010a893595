package main

import (
	"fmt"
	"strings"
)

// renderReadme is bench/README.md: how to run, what each figure means, and the latest
// results with the machine and the command they came from.
func renderReadme(r *results) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	sb.WriteString(`# Benchmarks

This directory is written by ` + "`make bench`" + ` (the program is ` + "`hack/bench`" + `): the latest figures
(` + "`latest.json`" + `), this page, and the scaling curve (` + "`scaling.png`" + `). Absolute numbers on a shared
2-core machine are noise, so every figure comes with a baseline measured **in the same run**, on
the same machine, at the same moment.

## How to run

` + "```sh" + `
make bench                                       # the full run, about 13 minutes on 2 cores; rewrites bench/
make bench BENCH_FLAGS=--quick                   # a 4-5 minute smoke run of every phase; prints, writes nothing
make bench BENCH_FLAGS='--phases=raw,ingest'     # a subset (raw, costs, ingest, e2e, scaling, memory)
make bench BENCH_FLAGS='--quick --out=/tmp/b'    # write the files of a partial run elsewhere
make bench BENCH_FLAGS='--apiserver-pprof=/tmp/prof --cpuprofile=/tmp/prof/bench.pprof'
bin/bench --help                                 # every flag: durations, counts, concurrencies, seed
` + "```" + `

` + "`make bench`" + ` builds ` + "`bin/manager`" + ` and ` + "`bin/bench`" + `, then the bench starts a local control plane
(kube-apiserver and etcd from ` + "`$KUBEBUILDER_ASSETS`" + `, see DEVELOPERS.md) with a fresh data directory,
installs ` + "`config/crd/bases`" + `, and runs the operator as a process on free loopback ports
(` + "`--zap-log-level=error`" + `, ` + "`--kube-api-qps`" + ` high enough not to be the limit, ` + "`--pprof-bind-address`" + `,
` + "`--leader-elect --leader-election-namespace=bench-operator`" + `, and ` + "`--namespaces`" + ` = every namespace of the
run except ` + "`bench-raw`" + `). Each phase has its own namespace with a token-authenticated ` + "`FunnelReceiver`" + `
whose rate limit (100000/s) is out of the way. Everything it starts is stopped, and its temporary directory
removed, when it ends — also on Ctrl-C (a second Ctrl-C kills at once).

**Follower and leader.** In the Deployment (2 replicas) the webhook receiver runs on every replica and
the controllers only on the leader: Funnel's deliveries are spread over the receivers, and what Funnel
sees acknowledged — the figure the ingest target is about — is the receivers' capacity, while processing
is the leader's and happens after the answer. So the ingest levels and the scaling curve are measured on
a **follower**: the bench itself holds the operator's leader election Lease
(` + "`coordination.k8s.io/v1`" + ` Lease ` + "`funnel-operator.funnel.leasing.dev`" + ` in ` + "`bench-operator`" + `,
holderIdentity ` + "`funnel-bench`" + `, leaseDurationSeconds 15, renewed every 2 s), and the operator is
restarted so that it starts waiting for it — a leader cannot be demoted in place: controller-runtime exits
when it loses its Lease. Its receiver serves; its controllers wait (the run checks that they reconciled
nothing meanwhile). This is exactly the non-leader replica of the Deployment. After each level the bench
deletes the Lease, the operator takes it (within its 2 s retry period), becomes the leader and drains the
backlog; the next level restarts it as a follower. For transparency each level is also measured with the
operator as the **leader**, its controllers processing on the same API server while the level runs (as
with a single replica): the secondary "with processing" figures. End to end, the memory phase and
"raw with processing" run with the operator as the leader. What the follower figure leaves out is the
leader's writes on the shared API server: under sustained traffic the receivers and the leader's status
writes compete for it, and the secondary columns show what that costs here (on one 2-core machine, where
the API server is the bottleneck).

Profiles: ` + "`--cpuprofile FILE`" + ` profiles the bench itself; ` + "`--apiserver-pprof DIR`" + ` takes a CPU profile
of kube-apiserver per raw and ingest level (follower: ` + "`ingest-cN`" + `, leader: ` + "`ingest-processing-cN`" + `)
and e2e step (and of the 5 s after the sending stopped: the controllers alone); ` + "`--operator-pprof DIR`" + `
does the same for the operator through its ` + "`--pprof-bind-address`" + `, plus heap profiles at the memory
points. Read them with ` + "`go tool pprof -top FILE`" + `.

## What each figure means

| figure | how it is measured |
|---|---|
| **raw creates/s** | ` + "`FunnelEvent`" + `s created directly with a controller-runtime client (no client-side rate limit, ` + "`QPS -1`" + `) by N workers in a closed loop for a fixed time. The objects are built by the receiver's own code (` + "`receiver.NewEvent`" + `: name, labels, digest annotation, spec) from the same synthetic bodies, in namespace ` + "`bench-raw`" + `, **which the operator does not watch**: it is started with ` + "`--namespaces`" + ` listing every other namespace of the run, so neither its caches nor its controllers ever see these events, and no processing work from the baseline leaks into the measurement or into later phases. (Finished events are recognised by ` + "`status.phase`" + `, which a create cannot set: a namespace outside the operator's reach is what keeps the baseline a single write.) This is the ceiling the receiver can reach: one create per event, no HTTP hop, no processing. |
| **ingest acked/s** | real HTTP over loopback to ` + "`POST /webhooks/bench-ingest/funnel`" + ` of the **follower** (see above), N workers in a closed loop, after a ` + "`--warmup`" + ` at the same concurrency (the operator was just restarted), bodies from ` + "`api/funnel/synth`" + ` (all 16 documented types × the three envelopes at random), 10% of requests repeating a recently sent body (a duplicate: acknowledged, not stored twice). Counts requests answered 200 ` + "`Funnel Event Received`" + ` per second (first receipts and repeats: each is a delivery Funnel sees acknowledged). **backlog drain s** is the time from the release of the Lease until the leader had finished every event of the level. A duplicate's count is written by the receiver in the background (` + "`status.duplicates`" + `, one event after the other, best effort); after each ingest segment the bench waits until the operator's ` + "`funnel_webhook_duplicate_counts_pending`" + ` is 0 before the next raw segment, which would otherwise pay for those writes (and flatter the ratio): **duplicate counts drain s** is that wait, summed over the segments — deferred work, like the leader's processing, drained and not counted in the rate. |
| **raw right before /s** | the raw baseline measured again, in ` + "`bench-raw`" + ` at the same concurrency: for an ingest level interleaved with it — ` + "`--rounds`" + ` (4) segments of raw then ingest, each a quarter of ` + "`--ingest-duration`" + `, summed per side — and for an end-to-end step for ` + "`--raw-duration`" + ` right before its throughput run and again right after its last event finished, the mean of the two being the baseline (a throughput run lasts tens of seconds, through which the raw rate drifts). The two sides of a ratio then see the same moments of the machine. On a shared 2-core machine the raw rate drifts by ±20% between runs and through a run (neighbours, and etcd grows with every phase), which a baseline taken minutes earlier turns into a ratio error. ` + "`--adjacent-raw=false`" + ` uses the raw phase's figures instead. |
| **ratio** | follower ingest acked/s ÷ raw right before at the same concurrency; ` + "`ingest_ratio_min`" + ` is the lowest. Target ≥ 0.8. |
| **raw with processing /s** | the raw creates in namespace ` + "`bench-raw-processed`" + `, which the operator watches, as the leader: its controllers process them (one status write each) while the level runs. Turn off with ` + "`--raw-processed-baseline=false`" + `. |
| **ingest with processing /s** | the same ingest level again with the operator as the **leader**: its controllers process the events on the same API server while the level runs (what a single replica would see). **ratio⁺** = ingest with processing ÷ raw with processing: the receiver's cost when both compete with processing. Secondary figures, not the target. |
| **p50/p95/p99/max** | answer time of the request as the client sees it. ` + "`max_ack_latency_seconds`" + ` is the slowest answer of any status in the ingest (follower and leader) and scaling phases (a request without answer counts as the client's 10 s timeout). Target ≤ 4 s: past saturation the receiver must shed with 503 (it answers by its 3 s deadline), not answer late. |
| **missing** | after each level, every FunnelEvent name of an acknowledged request (computed with ` + "`funnel.Parse`" + ` + ` + "`ObjectName`" + `) is looked up in a list of the namespace. ` + "`acked_missing`" + ` sums ingest (follower and leader), e2e and scaling. Target 0. |
| **e2e events/s** | with the operator as the leader, a closed loop at ` + "`--e2e-concurrency`" + ` (32) for ` + "`--e2e-duration`" + `, no duplicates; watches on the namespace stamp when each event is first seen with a final ` + "`status.phase`" + ` (its last write): one metadata-only watch per final phase (field selector ` + "`status.phase=Succeeded`" + `, and the same for Failed and Ignored; ` + "`PartialObjectMetadata`" + ` in protobuf), so the API server sends one small watch event per event, when it finishes, and the measurement adds as little as it can to the API server's work. events/s = events Succeeded ÷ (last Succeeded − first POST). p50/p99 are POST → Succeeded under that saturating load (they include the queue); the **paced** columns repeat the measure with an open loop at half that rate, i.e. latency without a backlog. ` + "`e2e_ratio`" + ` = e2e events/s ÷ raw creates/s at the same concurrency, the mean of the raw baseline measured right before the step and right after it (**raw before · after**). Target ≥ 0.35. **controllers alone /s** is the rate at which events finished after the sending stopped (the controllers working off the backlog without competing ingest). The mean times under the table come from the API server's ` + "`apiserver_request_duration_seconds`" + ` (per write verb on funnelevents) and the operator's ` + "`controller_runtime_reconcile_time_seconds`" + ` and ` + "`workqueue_queue_duration_seconds`" + ` (per event family) over the throughput run. |
| **writes/event** | ` + "`apiserver_request_total`" + ` scraped from kube-apiserver's own ` + "`/metrics`" + ` (admin credentials) before and after the e2e throughput run (after every event reached its final phase), counting verbs POST/PUT/PATCH/APPLY/DELETE on ` + "`funnelevents`" + ` including the ` + "`status`" + ` subresource, any response code, ÷ events. Expected without subscriptions: 2, the receiver's POST and the controllers' one status write (PUT/status, or PATCH/status after a conflict); any other verb or code is listed in the notes. Target ≤ 3. |
| **with one HTTP subscription** | the same with a ` + "`FunnelSubscription`" + ` (` + "`eventTypes: [\"*\"]`" + `, ` + "`action.http.url`" + ` = a local httptest sink). Runs when discovery shows ` + "`funnelsubscriptions.funnel.leasing.dev`" + `; until then it reads "skipped: FunnelSubscription not available" with null figures. |
| **what one operation costs** | the API server's and etcd's CPU time (` + "`/proc/<pid>/stat`" + `) per operation on a FunnelEvent, ` + "`--costs-count`" + ` (1000) objects × ` + "`--costs-rounds`" + ` (3), 8 workers of the bench's controller-runtime client, objects built by ` + "`receiver.NewEvent`" + ` in ` + "`bench-raw`" + ` (the operator does not watch it): **create** (the one write raw pays; the receiver's), **status patch** (a merge patch writing the status a processed event gets: the controllers' one write per event, and what a duplicate's count costs), **get** (how the receiver compares a repeat). The three alternate in each round, so drift falls on each alike. It says where the e2e and ingest ratios go: an event costs a create and a status patch, a duplicate a get and a status patch. |
| **scaling** | open loop on a **follower** (the receiver's capacity, like the ingest levels; the leader drains the backlog after each step, and each step starts on a freshly restarted follower after a ` + "`--warmup`" + `): fixed arrival rates at ` + "`--scaling-steps`" + ` (25…300%) of the best follower ingest acked/s — the open loop, with as many requests in flight as the rate needs, gets past what the closed loops reached — each for ` + "`--scaling-duration`" + `, whatever the answers; achieved acked/s, p50/p99/max, 503 (shed: over the receiver's ` + "`--webhook-max-in-flight`" + `, or not stored by its 3 s answer deadline), 429 (rate limited), requests without answer, arrivals the client could not send (over ` + "`--scaling-max-in-flight`" + `). ` + "`scaling.png`" + ` plots it. |
| **CPU use** | average cores used by kube-apiserver, etcd, the operator and the bench during each measurement (` + "`/proc/<pid>/stat`" + `), and by everything else on the machine (` + "`/proc/stat`" + ` minus those): on a shared machine, a measurement during which other processes used a quarter of a core or more is listed in the notes as disturbed. |
| **memory** | the operator's RSS (` + "`VmRSS`" + ` of ` + "`/proc/<pid>/status`" + `) and Go heap (` + "`go_memstats_heap_inuse_bytes`" + ` from its ` + "`/metrics`" + `) with few and with many finished events stored in the namespaces it watches: what the other phases stored (all finished by then), topped up in ` + "`bench-memory`" + ` with events built by ` + "`receiver.NewEvent`" + `, each created and then given ` + "`status.phase: Succeeded`" + ` by a status update (2 writes, 64 events at a time, the operator stopped meanwhile so that its controllers do not race the bench). They are in a watched namespace on purpose: were the cache not scoped to unfinished events (the field selector ` + "`status.phase!=Succeeded,status.phase!=Failed,status.phase!=Ignored`" + `), the operator would hold them all. The operator is then started, waited for until ` + "`/readyz`" + ` is 200 and it is idle (under 5% CPU for 2 s), left to settle (` + "`--memory-settle`" + `), and a GC is forced through its pprof endpoint (` + "`/debug/pprof/heap?gc=1`" + `) right before the reading, so the heap is live data; RSS still includes what the Go runtime has not yet returned to the OS. The raw baseline's events (in ` + "`bench-raw`" + `, never listed by the operator) are not counted. With ` + "`--namespaces`" + ` the operator runs one informer per watched namespace and kind (about 50 goroutines per namespace): that sets the level of both points (goroutines, RSS), not their ratio. The small point is taken first, the large one last. ` + "`memory_ratio`" + ` = RSS large ÷ RSS small. Target ≤ 1.3. |

Caveats: the control plane is envtest's — etcd runs with ` + "`--unsafe-no-fsync`" + ` and every client (the
bench and the operator) is the admin user, exempt from API Priority and Fairness — so absolute rates
are higher than on a real cluster; the ratios are the point. The load generator, the watch, the
operator, kube-apiserver and etcd share the same cores (the generator's own cost per event is
measured by ` + "`go test -run '^$' -bench . ./hack/bench`" + `: tens of microseconds).

`)

	w("## Latest results\n\n")
	w("- date: %s\n", r.Date)
	dirty := ""
	if r.GitDirty {
		dirty = " (with uncommitted changes)"
	}
	w("- commit: `%s`%s\n", r.GitCommit, dirty)
	w("- machine: %d × %s, %.1f GiB memory, Linux %s, %s\n", r.Machine.NProc, r.Machine.CPUModel,
		float64(r.Machine.MemoryBytes)/(1<<30), r.Machine.Kernel, r.Machine.GoVersion)
	w("- command: `make bench` → `%s` (took %.0f s)\n", r.Command, r.DurationSeconds)
	if len(r.OperatorArgs) > 0 {
		w("- extra operator flags: `%s`\n", strings.Join(r.OperatorArgs, " "))
	}
	w("\n")
	w("%s", renderTables(r))
	if r.Scaling != nil {
		w("\n![ingest rate and latency vs. offered load](scaling.png)\n")
	}
	return sb.String()
}
