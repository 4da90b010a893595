// Command bench is what `make bench` runs: it starts a local control plane (kube-apiserver
// and etcd from $KUBEBUILDER_ASSETS), runs the operator as a process, and measures, in one
// run and against baselines taken in the same run:
//
//   - raw: FunnelEvents created directly through a client without rate limits, in a
//     namespace the operator does not watch (the ceiling the receiver can reach);
//   - ingest: real HTTP webhooks through the receiver at the same concurrencies, on a
//     follower (the bench holds the leader election Lease: the receiver serves, the
//     controllers wait) and, secondary, on the leader processing meanwhile;
//   - e2e: POST to phase Succeeded, and the API writes each event costs;
//   - scaling: open-loop fixed arrival rates up to past saturation, on a follower;
//   - memory: the operator's RSS and heap with few and with many finished events stored.
//
// It prints a table and writes latest.json, README.md and scaling.png to --out. Every
// process it starts and every directory it creates is gone when it returns, also after
// Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Phase names, in the order they run (memory's small point runs first, its large one last).
const (
	phaseRaw     = "raw"
	phaseCosts   = "costs"
	phaseIngest  = "ingest"
	phaseE2E     = "e2e"
	phaseScaling = "scaling"
	phaseMemory  = "memory"
)

var allPhases = []string{phaseRaw, phaseCosts, phaseIngest, phaseE2E, phaseScaling, phaseMemory}

// options are the command line.
type options struct {
	manager     string
	crds        string
	out         string
	phases      []string
	quick       bool
	seed        uint64
	concurrency []int

	rawDuration    time.Duration
	rawProcessed   bool
	adjacentRaw    bool
	rounds         int
	ingestDuration time.Duration
	warmup         time.Duration
	duplicates     float64

	e2eDuration       time.Duration
	e2eConcurrency    int
	e2ePacedDuration  time.Duration
	e2ePacedFraction  float64
	scalingSteps      []int
	scalingDuration   time.Duration
	scalingMaxClients int

	costsCount  int
	costsRounds int

	memorySmall  int
	memoryLarge  int
	memorySettle time.Duration

	drainTimeout  time.Duration
	operatorQPS   int
	operatorBurst int
	operatorArgs  []string

	cpuProfile     string
	operatorPprof  string
	apiserverPprof string
}

func (o *options) has(phase string) bool { return slices.Contains(o.phases, phase) }

// quickDefaults replace the defaults of the flags a --quick run did not set.
var quickDefaults = map[string]string{
	"raw-duration":       "2s",
	"ingest-duration":    "2s",
	"warmup":             "500ms",
	"e2e-duration":       "3s",
	"e2e-paced-duration": "2s",
	"scaling-duration":   "2s",
	"costs-count":        "200",
	"costs-rounds":       "1",
	"memory-small":       "200",
	"memory-large":       "10000",
	"memory-settle":      "2s",
	"drain-timeout":      "60s",
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bench [flags]  (normally: make bench BENCH_FLAGS='...')\n\n")
		fs.PrintDefaults()
	}
	var phases, concurrency, steps, operatorArgs string
	fs.StringVar(&o.manager, "manager", "bin/manager", "The operator binary to run.")
	fs.StringVar(&o.crds, "crds", "config/crd/bases", "Directory of CRD manifests to install.")
	fs.StringVar(&o.out, "out", "", "Directory for latest.json, README.md and scaling.png (default: bench for a full run; a --quick or --phases run writes nothing unless set).")
	fs.StringVar(&phases, "phases", strings.Join(allPhases, ","), "Comma-separated phases to run: "+strings.Join(allPhases, ", ")+".")
	fs.BoolVar(&o.quick, "quick", false, "A short smoke run: small durations and counts for every flag not set explicitly.")
	fs.Uint64Var(&o.seed, "seed", 1, "Seed of the synthetic events.")
	fs.StringVar(&concurrency, "concurrency", "1,8,32,64", "Concurrencies of the raw and ingest phases.")
	fs.DurationVar(&o.rawDuration, "raw-duration", 10*time.Second, "Duration of each raw concurrency level.")
	fs.BoolVar(&o.rawProcessed, "raw-processed-baseline", true, "Also measure raw creates in a namespace the operator watches (processed by the controllers, like ingested events): the baseline of ingest with processing.")
	fs.BoolVar(&o.adjacentRaw, "adjacent-raw", true, "Measure the raw baseline of each ingest level again, interleaved with it (--rounds), and of each end-to-end step right before and right after it (the mean): the baseline of their ratios.")
	fs.IntVar(&o.rounds, "rounds", 4, "Segments of an ingest level, each after a raw segment of the same length (with --adjacent-raw).")
	fs.DurationVar(&o.ingestDuration, "ingest-duration", 10*time.Second, "Duration of each ingest concurrency level.")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "Unmeasured warm-up before the raw phase, and after each restart of the operator as a follower (ingest levels, scaling steps).")
	fs.Float64Var(&o.duplicates, "duplicates", 0.10, "Fraction of ingest and scaling requests that repeat an event already sent.")
	fs.DurationVar(&o.e2eDuration, "e2e-duration", 10*time.Second, "How long the end-to-end throughput step sends (then waits for every event to finish).")
	fs.IntVar(&o.e2eConcurrency, "e2e-concurrency", 32, "Concurrency of the end-to-end throughput step; its baseline is raw at this concurrency.")
	fs.DurationVar(&o.e2ePacedDuration, "e2e-paced-duration", 10*time.Second, "Duration of the end-to-end latency step (open loop below saturation); 0 skips it.")
	fs.Float64Var(&o.e2ePacedFraction, "e2e-paced-fraction", 0.5, "Arrival rate of the end-to-end latency step, as a fraction of the measured end-to-end throughput.")
	fs.StringVar(&steps, "scaling-steps", "25,50,75,100,125,150,200,300", "Offered rates of the scaling phase, in percent of the best ingest rate on a follower (the open loop gets past what the closed loops reached).")
	fs.DurationVar(&o.scalingDuration, "scaling-duration", 8*time.Second, "Duration of each scaling step.")
	fs.IntVar(&o.scalingMaxClients, "scaling-max-in-flight", 2048, "Client-side bound on requests in flight in the scaling phase; arrivals past it are counted as dropped by the client.")
	fs.IntVar(&o.costsCount, "costs-count", 1000, "Objects per operation and round of the costs phase.")
	fs.IntVar(&o.costsRounds, "costs-rounds", 3, "Rounds of the costs phase (create, status patch, get, in turn).")
	fs.IntVar(&o.memorySmall, "memory-small", 1000, "Finished events stored for the memory phase's first point.")
	fs.IntVar(&o.memoryLarge, "memory-large", 50000, "Finished events stored for the memory phase's second point.")
	fs.DurationVar(&o.memorySettle, "memory-settle", 5*time.Second, "How long the restarted operator idles before its memory is read.")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 120*time.Second, "Longest wait for the controllers to finish a backlog between steps.")
	fs.IntVar(&o.operatorQPS, "kube-api-qps", 10000, "The operator's --kube-api-qps (high, so the client-side limit is not what is measured).")
	fs.IntVar(&o.operatorBurst, "kube-api-burst", 20000, "The operator's --kube-api-burst.")
	fs.StringVar(&operatorArgs, "operator-args", "", "Extra flags for the operator, space-separated (e.g. \"--event-concurrency=lease_transaction=8\").")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "Write a CPU profile of the bench itself to this file.")
	fs.StringVar(&o.operatorPprof, "operator-pprof", "", "Write CPU profiles of the operator per ingest level, e2e step and raw level, and heap profiles at the memory points, to this directory (through its --pprof-bind-address).")
	fs.StringVar(&o.apiserverPprof, "apiserver-pprof", "", "Write CPU profiles of the kube-apiserver per ingest level and e2e step to this directory.")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, value := range quickDefaults {
			if !set[name] {
				if err := fs.Set(name, value); err != nil {
					return o, err
				}
			}
		}
	}

	var err error
	if o.phases, err = parsePhases(phases); err != nil {
		return o, fmt.Errorf("--phases: %w", err)
	}
	if o.concurrency, err = parseInts(concurrency, 1, 4096); err != nil {
		return o, fmt.Errorf("--concurrency: %w", err)
	}
	if o.scalingSteps, err = parseInts(steps, 1, 1000); err != nil {
		return o, fmt.Errorf("--scaling-steps: %w", err)
	}
	o.operatorArgs = strings.Fields(operatorArgs)
	switch {
	case o.duplicates < 0 || o.duplicates >= 1:
		return o, fmt.Errorf("--duplicates %v: want a fraction in [0, 1)", o.duplicates)
	case o.e2eConcurrency < 1:
		return o, fmt.Errorf("--e2e-concurrency %d: want at least 1", o.e2eConcurrency)
	case o.e2ePacedFraction <= 0 || o.e2ePacedFraction > 2:
		return o, fmt.Errorf("--e2e-paced-fraction %v: want a fraction in (0, 2]", o.e2ePacedFraction)
	case o.memorySmall < 1 || o.memoryLarge <= o.memorySmall:
		return o, fmt.Errorf("--memory-small %d, --memory-large %d: want 0 < small < large", o.memorySmall, o.memoryLarge)
	case o.costsCount < 1 || o.costsRounds < 1:
		return o, fmt.Errorf("--costs-count %d, --costs-rounds %d: want at least 1 each", o.costsCount, o.costsRounds)
	case o.scalingMaxClients < 1:
		return o, fmt.Errorf("--scaling-max-in-flight %d: want at least 1", o.scalingMaxClients)
	case o.rounds < 1 || o.ingestDuration/time.Duration(max(o.rounds, 1)) < 500*time.Millisecond:
		return o, fmt.Errorf("--rounds %d: want at least 1, and segments of --ingest-duration of at least 500ms", o.rounds)
	}
	for name, d := range map[string]time.Duration{"raw-duration": o.rawDuration, "ingest-duration": o.ingestDuration,
		"e2e-duration": o.e2eDuration, "scaling-duration": o.scalingDuration, "drain-timeout": o.drainTimeout} {
		if d <= 0 {
			return o, fmt.Errorf("--%s %s: want a positive duration", name, d)
		}
	}
	full := !o.quick && len(o.phases) == len(allPhases)
	if o.out == "" && full {
		o.out = "bench"
	}
	return o, nil
}

func parsePhases(s string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("unknown phase %q (want some of %s)", p, strings.Join(allPhases, ", "))
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no phase given")
	}
	return out, nil
}

func parseInts(s string, lo, hi int) ([]int, error) {
	var out []int
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%q: want whole numbers from %d to %d, comma-separated", p, lo, hi)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}

	// The first Ctrl-C cancels the run, which then stops what it started in order; a
	// second one kills the processes we started at once and exits.
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		logf("%s: stopping (again to abandon the clean-up)", sig)
		cancel()
		<-signals
		logf("abandoning the clean-up: killing the processes this run started")
		killChildren()
		if dir := tempDir.Load(); dir != nil {
			_ = os.RemoveAll(*dir)
		}
		os.Exit(130)
	}()

	err = runWithProfile(ctx, o)
	cancel()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			logf("interrupted; everything it started is stopped")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// runWithProfile runs the bench under --cpuprofile when set.
func runWithProfile(ctx context.Context, o options) error {
	if o.cpuProfile == "" {
		return run(ctx, o)
	}
	f, err := os.Create(o.cpuProfile)
	if err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("--cpuprofile: %w", err)
	}
	defer pprof.StopCPUProfile()
	return run(ctx, o)
}

// tempDir is the run's temporary directory, removed also when a second Ctrl-C abandons
// the orderly clean-up.
var tempDir atomic.Pointer[string]

// logf prints a progress line to stderr, stamped with the time.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
