// Command bench is what `make bench` runs: it starts a local control plane and the
// operator, measures the receiver, the controllers and the operator's memory against
// baselines taken in the same run, and writes latest.json, results.md and scaling.png.
// bench/README.md says what each phase measures and how to read the figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The phases, in the order they run (memory's small point runs first, its large one last).
const (
	phaseCosts   = "costs"
	phaseIngest  = "ingest"
	phaseE2E     = "e2e"
	phaseScaling = "scaling"
	phaseMemory  = "memory"
)

var allPhases = []string{phaseCosts, phaseIngest, phaseE2E, phaseScaling, phaseMemory}

// options are the command line and the settings that follow from it.
type options struct {
	manager, crds, out string
	// cbor turns on the API server's CBOR serving and storage (an alpha feature) and
	// measures CBOR request bodies in the costs phase.
	cbor bool
	// profileDir receives CPU profiles of the API server during the costs phase.
	profileDir  string
	phases      []string
	quick       bool
	seed        uint64
	concurrency []int
	// duration is that of each measured level and step.
	duration     time.Duration
	operatorArgs []string
}

func (o *options) has(phase string) bool { return slices.Contains(o.phases, phase) }

// pick is full for a full run, quick for a --quick one.
func pick[T any](o *options, full, quick T) T {
	if o.quick {
		return quick
	}
	return full
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bench [flags]  (normally: make bench BENCH_FLAGS='...'; see bench/README.md)\n\n")
		fs.PrintDefaults()
	}
	var phases, concurrency, operatorArgs string
	fs.StringVar(&o.manager, "manager", "bin/manager", "The operator binary to run.")
	fs.StringVar(&o.crds, "crds", "config/crd/bases", "Directory of CRD manifests to install.")
	fs.StringVar(&o.out, "out", "", "Directory for latest.json, results.md and scaling.png (default: bench for a full run; a --quick or --phases run writes nothing unless set).")
	fs.StringVar(&phases, "phases", strings.Join(allPhases, ","), "Comma-separated phases to run: "+strings.Join(allPhases, ", ")+" (scaling needs ingest).")
	fs.StringVar(&o.profileDir, "profile-dir", "", "Write a CPU profile of the API server during each of the costs phase's operations (one per round) to this directory.")
	fs.BoolVar(&o.cbor, "cbor", false, "Run the API server with CBORServingAndStorage (alpha: custom resources stored as CBOR) and measure CBOR request bodies in the costs phase.")
	fs.BoolVar(&o.quick, "quick", false, "A smoke run: 2 s levels, fewer steps, smaller counts.")
	fs.Uint64Var(&o.seed, "seed", 1, "Seed of the synthetic events.")
	fs.StringVar(&concurrency, "concurrency", "1,8,32,64", "Client concurrencies of the ingest phase.")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "Duration of each measured level and step (2s with --quick unless set).")
	fs.StringVar(&operatorArgs, "operator-args", "", "Extra operator flags, space-separated (e.g. \"--event-concurrency=lease_transaction=8\").")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if o.quick && !durationSet {
		o.duration = 2 * time.Second
	}
	var err error
	if o.phases, err = parsePhases(phases); err != nil {
		return o, fmt.Errorf("--phases: %w", err)
	}
	if o.concurrency, err = parseInts(concurrency, 1, 4096); err != nil {
		return o, fmt.Errorf("--concurrency: %w", err)
	}
	if o.duration < time.Second {
		return o, fmt.Errorf("--duration %s: want at least 1s", o.duration)
	}
	o.operatorArgs = strings.Fields(operatorArgs)
	if o.out == "" && !o.quick && len(o.phases) == len(allPhases) {
		o.out = "bench"
	}
	return o, nil
}

func parsePhases(s string) ([]string, error) {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p == "" || slices.Contains(out, p) {
			continue
		}
		if !slices.Contains(allPhases, p) {
			return nil, fmt.Errorf("unknown phase %q (want some of %s)", p, strings.Join(allPhases, ", "))
		}
		out = append(out, p)
	}
	switch {
	case len(out) == 0:
		return nil, errors.New("no phase given")
	case slices.Contains(out, phaseScaling) && !slices.Contains(out, phaseIngest):
		return nil, errors.New("scaling offers rates relative to the ingest phase's best: add ingest")
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
	// Ctrl-C cancels the run, which then stops everything it started, in order.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o)
	stop()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			logf("interrupted; everything it started is stopped")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// logf prints a progress line to stderr, stamped with the time.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
