package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// renderResults is results.md: the figures of one run, as tables. bench/README.md says
// what each one is.
func renderResults(r *results) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format, args...) }
	dirty := ""
	if r.GitDirty {
		dirty = " with uncommitted changes"
	}
	w("# make bench: latest results\n\n%s, commit `%s`%s; %d × %s, %.1f GiB, Linux %s, %s; `%s` took %.0f s.\n",
		r.Date, r.GitCommit, dirty, r.Machine.NProc, r.Machine.CPUModel, float64(r.Machine.MemoryBytes)/(1<<30),
		r.Machine.Kernel, r.Machine.GoVersion, r.Command, r.DurationSeconds)
	w("\nWhat each figure means: [README.md](README.md). Every figure: [latest.json](latest.json).\n")

	t := newTable("target", "figure", "value", "verdict")
	for _, tg := range r.Targets {
		verdict := "not measured"
		if tg.Met != nil {
			verdict = map[bool]string{true: "met", false: "**missed**"}[*tg.Met]
		}
		t.add(tg.Name, "`"+tg.Field+"`", fp(tg.Value, "%.3g"), verdict)
	}
	w("\n%s", t.render("Targets"))

	if len(r.Ingest) > 0 {
		t := newTable("concurrency", "raw creates/s", "ingest acked/s", "ratio", "segment pairs (median)", "p50", "p99", "max", "not acked", "missing", "backlog drain s")
		for _, l := range r.Ingest {
			pairs := make([]string, len(l.SegmentRatios))
			for i, v := range l.SegmentRatios {
				pairs[i] = fmt.Sprintf("%.2f", v)
			}
			t.add(strconv.Itoa(l.Concurrency), f1(l.RawCreatesPerSecond), f1(l.AckedPerSecond), fp(l.Ratio, "%.2f"),
				fmt.Sprintf("%s (%.2f)", strings.Join(pairs, ", "), l.SegmentRatioMedian),
				ms(l.Latency.P50), ms(l.Latency.P99), ms(l.Latency.Max), strconv.Itoa(l.NotAcked), strconv.Itoa(l.Missing), f1(l.BacklogDrainSeconds))
		}
		w("\n%s", t.render("Ingest on a follower vs. raw creates interleaved with it (latencies in ms)"))
		t = newTable("concurrency", "API server + etcd per request", "per raw create", "×", "operator per request", "bench per request", "bench per raw create")
		for _, l := range r.Ingest {
			t.add(strconv.Itoa(l.Concurrency), fmt.Sprintf("%.2f", apiCPU(l.CPUMsPerRequest)), fmt.Sprintf("%.2f", apiCPU(l.RawCPUMsPerCreate)),
				fp(l.APICostRatio, "%.2f"), fmt.Sprintf("%.2f", l.CPUMsPerRequest["operator"]), fmt.Sprintf("%.2f", l.CPUMsPerRequest["bench"]),
				fmt.Sprintf("%.2f", l.RawCPUMsPerCreate["bench"]))
		}
		w("\n%s", t.render("CPU per acknowledged request vs. per raw create (ms)"))
	}
	if len(r.E2E) > 0 {
		t := newTable("step", "events", "events/s", "raw before · after /s", "ratio", "p50", "p99", "paced at /s", "paced p50", "paced p99", "writes/event", "writes by verb")
		for _, s := range r.E2E {
			var verbs []string
			for _, k := range slices.Sorted(maps.Keys(s.WritesByVerb)) {
				verbs = append(verbs, fmt.Sprintf("%s: %.0f", k, s.WritesByVerb[k]))
			}
			t.add(s.Name, strconv.Itoa(s.Throughput.Events), f1(s.Throughput.EventsPerSecond),
				f1(s.RawBeforePerSecond)+" · "+f1(s.RawAfterPerSecond), fp(s.Ratio, "%.2f"),
				ms(s.Throughput.Latency.P50), ms(s.Throughput.Latency.P99), f1(s.Paced.OfferedPerSecond),
				ms(s.Paced.Latency.P50), ms(s.Paced.Latency.P99), fp(s.WritesPerEvent, "%.2f"), strings.Join(verbs, ", "))
		}
		w("\n%s", t.render("End to end: POST → phase Succeeded, the operator the leader (latencies in ms)"))
	}
	if a := r.Archive; a != nil && a.Throughput != nil && a.Paced != nil {
		t := newTable("run", "events Succeeded", "archived", "archived/s", "lag p50", "lag p99", "lag max")
		for _, x := range []struct {
			name string
			run  *archiveRun
		}{{"throughput", a.Throughput}, {"paced", a.Paced}} {
			t.add(x.name, strconv.Itoa(x.run.Events), strconv.Itoa(x.run.Archived), f1(x.run.PerSecond), ms(x.run.Lag.P50), ms(x.run.Lag.P99), ms(x.run.Lag.Max))
		}
		w("\n%s", t.render(fmt.Sprintf("The archive under the e2e load (step \"no subscription, archive on\"; lag: Succeeded → row, in ms); e2e ratio with ÷ without it: %s; caught up on %d stored events at %.0f/s first",
			fp(a.E2ERatioVsWithout, "%.2f"), a.CatchUpEvents, a.CatchUpPerSecond)))
	}
	if s := r.Scaling; s != nil {
		t := newTable("offered %", "offered/s", "acked/s", "p50", "p99", "max", "503", "429", "no answer", "dropped by client", "missing")
		for _, p := range s.Points {
			t.add(strconv.Itoa(p.Percent), f1(p.OfferedPerSecond), f1(p.AchievedPerSecond), ms(p.Latency.P50), ms(p.Latency.P99), ms(p.Latency.Max),
				strconv.Itoa(p.Shed503), strconv.Itoa(p.Limited429), strconv.Itoa(p.NoAnswer), strconv.Itoa(p.DroppedByClient), strconv.Itoa(p.Missing))
		}
		w("\n%s\n![acknowledged rate and answer time vs. offered load](scaling.png)\n",
			t.render(fmt.Sprintf("Scaling: open loop on a follower, %.0f s per step; 100%% = %.1f/s, the best ingest level (c=%d); latencies in ms",
				s.DurationSeconds, s.ReferencePerSecond, s.ReferenceConcurrency)))
	}
	if c := r.Costs; c != nil {
		t := newTable("operation", "CRD", "operations", "apiserver ms CPU", "etcd ms CPU", "× a create", "rounds: lowest–highest")
		for _, op := range c.Ops {
			crd := op.Variant
			if op.Bare {
				crd += ", objects without labels and annotations"
			}
			t.add(op.Op, crd, strconv.Itoa(op.Count), fmt.Sprintf("%.2f", op.APIServerMsPerOp), fmt.Sprintf("%.2f", op.EtcdMsPerOp), fmt.Sprintf("%.2f", op.TimesCreate), op.spread())
		}
		w("\n%s", t.render(fmt.Sprintf("What one operation on a FunnelEvent costs (CPU per operation, %d workers, %d rounds)", c.Concurrency, c.Rounds)))
		if len(c.Pairs) > 0 {
			t := newTable("operation", "pairs", "median × a create", "quartiles", "lowest–highest")
			for _, p := range c.Pairs {
				t.add(p.Op, strconv.Itoa(len(p.Ratios)), fmt.Sprintf("%.2f", p.Median), fmt.Sprintf("%.2f–%.2f", p.Q1, p.Q3),
					fmt.Sprintf("%.2f–%.2f", p.Ratios[0], p.Ratios[len(p.Ratios)-1]))
			}
			w("\n%s", t.render("Status writes in short pairs with creates of the same objects (`status_write_cost_ratio`: the first median)"))
		}
	}
	if c := r.Costs; c != nil && c.Object != nil && c.Etcd != nil {
		o, e := c.Object, c.Etcd
		t := newTable("JSON bytes", "metadata", "managedFields", "labels", "annotations", "spec", "spec.data", "status", "etcd bytes per event", "API server's estimate")
		t.add(f0(o.Bytes), f0(o.MetadataBytes), f0(o.ManagedFieldsBytes), f0(o.LabelsBytes), f0(o.AnnotationsBytes), f0(o.SpecBytes), f0(o.DataBytes), f0(o.StatusBytes),
			f0(e.BytesPerEvent), f0(e.APIServerEstimateBytes))
		w("\n%s", t.render(fmt.Sprintf("What a processed FunnelEvent weighs (mean of %d; etcd: growth over %d events after compaction and defragmentation)", o.Objects, e.Events)))
	}
	if m := r.Memory; m != nil && m.Small != nil && m.Large != nil {
		t := newTable("finished events stored", "RSS MiB", "heap in use MiB", "goroutines")
		for _, p := range []*memoryPoint{m.Small, m.Large} {
			t.add(strconv.Itoa(p.EventsStored), mib(float64(p.RSSBytes)), mib(p.HeapInuseBytes), fmt.Sprintf("%.0f", p.Goroutines))
		}
		t.add("ratio", fp(m.RSSRatio, "%.2f"), fp(m.HeapRatio, "%.2f"), "")
		w("\n%s", t.render("Operator memory (restarted, idle, after a forced GC)"))
	}
	if len(r.Notes) > 0 {
		w("\n**Notes**\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
	}
	return sb.String()
}

// table is a markdown table.
type table struct {
	head []string
	rows [][]string
}

func newTable(head ...string) *table { return &table{head: head} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// render is the table under its bold title.
func (t *table) render(title string) string {
	var sb strings.Builder
	line := func(cells []string) { sb.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	sb.WriteString("**" + title + "**\n\n")
	line(t.head)
	line(slices.Repeat([]string{"---"}, len(t.head)))
	for _, r := range t.rows {
		line(r)
	}
	return sb.String()
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func ms(s float64) string { return strconv.FormatFloat(s*1000, 'f', 1, 64) }

func mib(v float64) string { return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) }

func fp(p *float64, format string) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *p)
}

// fmtSeconds renders a duration in seconds for the progress lines.
func fmtSeconds(s float64) string {
	switch {
	case s >= 1:
		return fmt.Sprintf("%.2fs", s)
	case s >= 0.001:
		return fmt.Sprintf("%.1fms", s*1000)
	default:
		return fmt.Sprintf("%.0fµs", s*1e6)
	}
}
