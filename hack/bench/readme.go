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
make bench                                       # the full run, about 10 minutes on 2 cores; rewrites bench/
make bench BENCH_FLAGS=--quick                   # a 2-3 minute smoke run of every phase; prints, writes nothing
make bench BENCH_FLAGS='--phases=raw,ingest'     # a subset (raw, ingest, e2e, scaling, memory)
make bench BENCH_FLAGS='--quick --out=/tmp/b'    # write the files of a partial run elsewhere
make bench BENCH_FLAGS='--apiserver-pprof=/tmp/prof --cpuprofile=/tmp/prof/bench.pprof'
bin/bench --help                                 # every flag: durations, counts, concurrencies, seed
` + "```" + `

` + "`make bench`" + ` builds ` + "`bin/manager`" + ` and ` + "`bin/bench`" + `, then the bench starts a local control plane
(kube-apiserver and etcd from ` + "`$KUBEBUILDER_ASSETS`" + `, see DEVELOPERS.md) with a fresh data directory,
installs ` + "`config/crd/bases`" + `, and runs the operator as a process on free loopback ports
(` + "`--zap-log-level=error`" + `, ` + "`--kube-api-qps`" + ` high enough not to be the limit). Each phase has its
own namespace with a token-authenticated ` + "`FunnelReceiver`" + ` whose rate limit (100000/s) is out of the
way. Everything it starts is stopped, and its temporary directory removed, when it ends — also on
Ctrl-C (a second Ctrl-C kills at once).

Profiles: ` + "`--cpuprofile FILE`" + ` profiles the bench itself; ` + "`--apiserver-pprof DIR`" + ` takes a CPU profile
of kube-apiserver per ingest level and e2e step (and of the 5 s after the sending stopped: the controllers alone); ` + "`--operator-pprof DIR`" + ` does the same for the operator
(plus heap profiles at the memory points) when the manager has a ` + "`--pprof-bind-address`" + ` flag —
it has none today, and the run says so. Read them with ` + "`go tool pprof -top FILE`" + `.

## What each figure means

| figure | how it is measured |
|---|---|
| **raw creates/s** | ` + "`FunnelEvent`" + `s created directly with a controller-runtime client (no client-side rate limit, ` + "`QPS -1`" + `) by N workers in a closed loop for a fixed time. The objects are exactly what the receiver would create from the same synthetic bodies (name, labels, digest annotation, spec), in their own namespace ` + "`bench-raw`" + `, **with the done label set**: the operator's cache is scoped to unfinished events, so its controllers never see them and no processing work from the baseline leaks into later phases. This is the ceiling the receiver can reach: one create per event, no HTTP hop, no processing. |
| **ingest acked/s** | real HTTP over loopback to ` + "`POST /webhooks/bench-ingest/funnel`" + `, N workers in a closed loop, bodies from ` + "`api/funnel/synth`" + ` (all 16 documented types × the three envelopes at random), 10% of requests repeating a recently sent body (a duplicate: acknowledged, not stored twice). Counts requests answered 200 ` + "`Funnel Event Received`" + ` per second (first receipts and repeats: each is a delivery Funnel sees acknowledged). The controllers process these events while the level runs (as in production); the time they needed afterwards to finish the backlog is shown, and the next level starts only once it is done. |
| **raw with processing /s** | the same creates, in namespace ` + "`bench-raw-processed`" + `, **without** the done label: the controllers process them (status patch, done label) while the level runs, exactly as they process ingested events. The difference to ingest is then only the receiver (HTTP, authentication, parsing, building the object). Turn off with ` + "`--raw-processed-baseline=false`" + `. |
| **ratio** | ingest acked/s ÷ raw creates/s at the same concurrency; ` + "`ingest_ratio_min`" + ` is the lowest. Target ≥ 0.8. **ratio⁺** is ingest ÷ raw with processing: what the receiver itself costs. |
| **p50/p95/p99/max** | answer time of the request as the client sees it. ` + "`max_ack_latency_seconds`" + ` is the slowest answer of any status in the ingest and scaling phases (a request without answer counts as the client's 10 s timeout). Target ≤ 4 s: past saturation the receiver must shed with 503, not answer late. |
| **missing** | after each level, every FunnelEvent name of an acknowledged request (computed with ` + "`funnel.Parse`" + ` + ` + "`ObjectName`" + `) is looked up in a list of the namespace. ` + "`acked_missing`" + ` sums ingest, e2e and scaling. Target 0. |
| **e2e events/s** | a closed loop at ` + "`--e2e-concurrency`" + ` (32) for ` + "`--e2e-duration`" + `, no duplicates; a watch on the namespace stamps when each event is first seen with phase ` + "`Succeeded`" + `. events/s = events Succeeded ÷ (last Succeeded − first POST). p50/p99 are POST → Succeeded under that saturating load (they include the queue); the **paced** columns repeat the measure with an open loop at half that rate, i.e. latency without a backlog. ` + "`e2e_ratio`" + ` = e2e events/s ÷ raw creates/s at the same concurrency. Target ≥ 0.35. **controllers alone /s** is the rate at which events finished after the sending stopped (the controllers working off the backlog without competing ingest). The mean times under the table come from the API server's ` + "`apiserver_request_duration_seconds`" + ` (per write verb on funnelevents) and the operator's ` + "`controller_runtime_reconcile_time_seconds`" + ` and ` + "`workqueue_queue_duration_seconds`" + ` (per event family) over the throughput run. |
| **writes/event** | ` + "`apiserver_request_total`" + ` scraped from kube-apiserver's own ` + "`/metrics`" + ` (admin credentials) before and after the e2e throughput run (after every event got its done label), counting verbs POST/PUT/PATCH/APPLY/DELETE on ` + "`funnelevents`" + ` including the ` + "`status`" + ` subresource, any response code, ÷ events. Target ≤ 3 without subscriptions. |
| **with one HTTP subscription** | the same with a ` + "`FunnelSubscription`" + ` (` + "`eventTypes: [\"*\"]`" + `, ` + "`action.http.url`" + ` = a local httptest sink). Runs when discovery shows ` + "`funnelsubscriptions.funnel.leasing.dev`" + `; until then it reads "skipped: FunnelSubscription not available" with null figures. |
| **scaling** | open loop: fixed arrival rates at ` + "`--scaling-steps`" + ` (25…300%) of the best ingest acked/s — the open loop, with as many requests in flight as the rate needs, gets past what the closed loops reached — each for ` + "`--scaling-duration`" + `, whatever the answers; achieved acked/s, p50/p99/max, 503 (shed), 429 (rate limited), requests without answer, arrivals the client could not send (over ` + "`--scaling-max-in-flight`" + `). ` + "`scaling.png`" + ` plots it. |
| **CPU use** | average cores used by kube-apiserver, etcd, the operator and the bench during each measurement (` + "`/proc/<pid>/stat`" + `), and by everything else on the machine (` + "`/proc/stat`" + ` minus those): on a shared machine, a measurement during which other processes used a quarter of a core or more is listed in the notes as disturbed. |
| **memory** | the operator's RSS (` + "`VmRSS`" + ` of ` + "`/proc/<pid>/status`" + `) and Go heap (` + "`go_memstats_heap_inuse_bytes`" + ` from its ` + "`/metrics`" + `) with few and with many finished events stored in the cluster (created directly with the done label, plus what the other phases stored, all finished). The operator is restarted after they are created, waited for until ` + "`/readyz`" + ` is 200 and it is idle (under 5% CPU for 2 s), then left to settle (` + "`--memory-settle`" + `) before reading. The bench cannot force a GC in the operator (it would through a pprof endpoint, ` + "`/debug/pprof/heap?gc=1`" + `, which the manager does not have), so the heap figure includes whatever garbage start-up left (it moves by ±30% from run to run) and RSS what the Go runtime has not yet returned to the OS. The small point is taken first, the large one last. ` + "`memory_ratio`" + ` = RSS large ÷ RSS small. Target ≤ 1.3. |

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
