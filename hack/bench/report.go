package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// newResults records how and where the run happens.
func newResults(o options) *results {
	r := &results{
		Date:         time.Now().UTC().Format(time.RFC3339),
		Command:      commandLine(),
		Phases:       o.phases,
		Quick:        o.quick,
		Machine:      machineInfo(),
		OperatorArgs: o.operatorArgs,
		Settings:     settings(o),
		Notes:        []string{},
	}
	r.GitCommit, r.GitDirty = gitState()
	return r
}

// commandLine is how to repeat the run: the make invocation when run by make.
func commandLine() string {
	args := make([]string, 0, len(os.Args))
	for _, a := range os.Args[1:] {
		args = append(args, shellQuote(a))
	}
	return strings.TrimSpace("bin/bench " + strings.Join(args, " "))
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./,:%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// settings are the effective durations and counts (after --quick).
func settings(o options) map[string]string {
	ints := func(v []int) string {
		s := make([]string, len(v))
		for i, n := range v {
			s[i] = strconv.Itoa(n)
		}
		return strings.Join(s, ",")
	}
	return map[string]string{
		"concurrency":        ints(o.concurrency),
		"raw-duration":       o.rawDuration.String(),
		"ingest-duration":    o.ingestDuration.String(),
		"warmup":             o.warmup.String(),
		"duplicates":         strconv.FormatFloat(o.duplicates, 'f', -1, 64),
		"e2e-duration":       o.e2eDuration.String(),
		"e2e-concurrency":    strconv.Itoa(o.e2eConcurrency),
		"e2e-paced-duration": o.e2ePacedDuration.String(),
		"e2e-paced-fraction": strconv.FormatFloat(o.e2ePacedFraction, 'f', -1, 64),
		"scaling-steps":      ints(o.scalingSteps),
		"scaling-duration":   o.scalingDuration.String(),
		"memory-small":       strconv.Itoa(o.memorySmall),
		"memory-large":       strconv.Itoa(o.memoryLarge),
		"memory-settle":      o.memorySettle.String(),
		"drain-timeout":      o.drainTimeout.String(),
		"kube-api-qps":       strconv.Itoa(o.operatorQPS),
		"kube-api-burst":     strconv.Itoa(o.operatorBurst),
		"seed":               strconv.FormatUint(o.seed, 10),
	}
}

func machineInfo() machine {
	m := machine{NProc: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		_ = f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) == 2 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryBytes = kb << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func gitState() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown", false
	}
	status, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(bytes.TrimSpace(status)) > 0
}

// write writes latest.json, README.md and scaling.png to --out.
func (b *bench) write() error {
	if err := os.MkdirAll(b.o.out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", b.o.out, err)
	}
	js, err := json.MarshalIndent(b.res, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"latest.json": append(js, '\n'),
		"README.md":   []byte(renderReadme(b.res)),
	}
	if b.res.Scaling != nil && len(b.res.Scaling.Points) > 0 {
		png, err := plotScaling(b.res.Scaling)
		if err != nil {
			return fmt.Errorf("plotting the scaling curve: %w", err)
		}
		files["scaling.png"] = png
	}
	for _, name := range sortedKeys(files) {
		path := filepath.Join(b.o.out, name)
		if err := writeAtomic(path, files[name]); err != nil {
			return err
		}
		logf("wrote %s", path)
	}
	return nil
}

// writeAtomic writes through a temporary file, so an interrupted run never leaves half a file.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// table is a markdown table.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var sb strings.Builder
	line := func(cells []string) {
		sb.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	line(t.head)
	sep := make([]string, len(t.head))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
	return sb.String()
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func fp(p *float64, format string) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *p)
}

func ms(s float64) string { return strconv.FormatFloat(s*1000, 'f', 1, 64) }

func mib(v float64) string { return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) }

// renderTables renders every measured figure as markdown tables: the terminal output and
// the body of README.md.
func renderTables(r *results) string {
	var sb strings.Builder
	sb.WriteString("**Targets**\n\n")
	tt := &table{head: []string{"target", "figure", "value", "verdict"}}
	for _, t := range r.Targets {
		verdict := "not measured"
		if t.Met != nil {
			verdict = "**missed**"
			if *t.Met {
				verdict = "met"
			}
		}
		tt.add(t.Name, "`"+t.Field+"`", fp(t.Value, "%g"), verdict)
	}
	sb.WriteString(tt.String())

	if len(r.Raw) > 0 || len(r.Ingest) > 0 {
		sb.WriteString("\n**Raw creates vs. ingest over HTTP** (closed loop; latencies in ms; raw = the raw phase; raw right before = the " +
			"baseline measured again just before the ingest level, seconds apart, whose ratio is the target; ingest on a follower: the bench " +
			"holds the Lease, the receiver serves, the controllers wait; ratio = ingest ÷ raw right before (÷ raw when it was not measured); " +
			"drain = from the release of the Lease until the leader finished the backlog. Secondary, on the right: the operator as the leader, " +
			"processing on the same API server meanwhile; ratio⁺ = ingest with processing ÷ raw with processing)\n\n")
		t := &table{head: []string{"concurrency", "raw creates/s", "raw p50", "raw p99", "raw right before /s", "ingest acked/s", "ratio",
			"ingest p50", "p95", "p99", "max", "not acked", "missing", "backlog drain s", "duplicate counts drain s",
			"raw with processing /s", "ingest with processing /s", "ratio⁺"}}
		for _, c := range concurrencies(r) {
			row := []string{strconv.Itoa(c), "n/a", "", "", "n/a", "n/a", "n/a", "", "", "", "", "", "", "", "", "n/a", "n/a", "n/a"}
			for _, l := range r.Raw {
				if l.Concurrency == c {
					row[1], row[2], row[3] = f1(l.CreatesPerSecond), ms(l.Latency.P50), ms(l.Latency.P99)
				}
			}
			if p := rateAt(r.RawProcessed, c); p != nil {
				row[15] = f1(*p)
			}
			for _, l := range r.Ingest {
				if l.Concurrency == c {
					if l.BaselineAdjacent {
						row[4] = fp(l.RawCreatesPerSecond, "%.1f")
					}
					row[5], row[6] = f1(l.AckedPerSecond), fp(l.Ratio, "%.2f")
					row[7], row[8], row[9], row[10] = ms(l.Latency.P50), ms(l.Latency.P95), ms(l.Latency.P99), ms(l.Latency.Max)
					row[11], row[12], row[13] = strconv.Itoa(l.Requests-l.Acked), strconv.Itoa(l.Missing), f1(l.BacklogDrainSeconds)
					row[14] = f1(l.DuplicateDrainSeconds)
					if w := l.WithProcessing; w != nil {
						row[16], row[17] = f1(w.AckedPerSecond), fp(l.RatioProcessed, "%.2f")
					}
				}
			}
			t.add(row...)
		}
		sb.WriteString(t.String())

		lt := &table{head: []string{"concurrency", "ingest with processing /s", "÷ raw", "p50", "p95", "p99", "max", "not acked", "missing", "backlog drain s"}}
		for _, l := range r.Ingest {
			w := l.WithProcessing
			if w == nil {
				continue
			}
			var vsRaw *float64
			if l.RawCreatesPerSecond != nil {
				vsRaw = ratio(w.AckedPerSecond, *l.RawCreatesPerSecond)
			}
			lt.add(strconv.Itoa(l.Concurrency), f1(w.AckedPerSecond), fp(vsRaw, "%.2f"), ms(w.Latency.P50), ms(w.Latency.P95), ms(w.Latency.P99), ms(w.Latency.Max),
				strconv.Itoa(w.Requests-w.Acked), strconv.Itoa(w.Missing), f1(w.BacklogDrainSeconds))
		}
		if len(lt.rows) > 0 {
			sb.WriteString("\n**Ingest with processing on the same API server** (secondary: the operator as the leader, its controllers processing while the level runs, as with one replica; latencies in ms)\n\n")
			sb.WriteString(lt.String())
		}
	}

	if len(r.E2E) > 0 {
		sb.WriteString("\n**End to end: POST → phase Succeeded** (latencies in ms)\n\n")
		t := &table{head: []string{"step", "events", "events/s", "baseline raw/s", "raw before · after /s", "ratio", "p50", "p99", "controllers alone /s", "paced at /s", "paced p50", "paced p99", "writes/event", "writes by verb", "sink requests"}}
		for _, s := range r.E2E {
			if s.Skipped != "" {
				t.add(s.Name, "skipped: "+s.Skipped, "", "", "", "", "", "", "", "", "", "", "", "", "")
				continue
			}
			row := []string{s.Name, "", "", fp(s.RawCreatesPerSecond, "%.1f"), "", fp(s.Ratio, "%.2f"), "", "", "", "", "", "", fp(s.WritesPerEvent, "%.2f"), verbs(s.WritesByVerb), "n/a"}
			if s.RawBeforePerSecond != nil && s.RawAfterPerSecond != nil {
				row[4] = fp(s.RawBeforePerSecond, "%.1f") + " · " + fp(s.RawAfterPerSecond, "%.1f")
			}
			if s.SinkRequests != nil {
				row[14] = strconv.Itoa(*s.SinkRequests)
			}
			if th := s.Throughput; th != nil {
				row[1], row[2], row[6], row[7] = strconv.Itoa(th.Events), f1(th.EventsPerSecond), ms(th.Latency.P50), ms(th.Latency.P99)
				if th.Tail != nil {
					row[8] = f1(th.Tail.EventsPerSecond)
				}
			}
			if p := s.Paced; p != nil {
				row[9], row[10], row[11] = f1(p.OfferedPerSecond), ms(p.Latency.P50), ms(p.Latency.P99)
			}
			t.add(row...)
		}
		sb.WriteString(t.String())
		for _, s := range r.E2E {
			if len(s.Diagnostics) > 0 {
				fmt.Fprintf(&sb, "\nMean times during the %q throughput run, in ms: %s\n", s.Name, diagnostics(s.Diagnostics))
			}
			if len(s.OtherWrites) > 0 {
				fmt.Fprintf(&sb, "\nWrites on other resources during the %q throughput run: %s\n", s.Name, verbs(s.OtherWrites))
			}
		}
	}

	if s := r.Scaling; s != nil {
		role := ""
		if s.Operator != "" {
			role = "; the operator a " + s.Operator + ", the backlog drained by the leader after each step"
		}
		fmt.Fprintf(&sb, "\n**Scaling** (open loop, %gs per step; 100%% = %.1f/s, %s%s; latencies in ms)\n\n", s.DurationSeconds, s.ReferencePerSecond, s.Reference, role)
		t := &table{head: []string{"offered %", "offered/s", "achieved acked/s", "p50", "p99", "max", "503", "429", "no answer", "dropped by client", "missing"}}
		for _, p := range s.Points {
			t.add(strconv.Itoa(p.Percent), f1(p.OfferedPerSecond), f1(p.AchievedPerSecond), ms(p.Latency.P50), ms(p.Latency.P99), ms(p.Latency.Max),
				strconv.Itoa(p.Shed503), strconv.Itoa(p.Limited429), strconv.Itoa(p.NoAnswer), strconv.Itoa(p.DroppedByClient), strconv.Itoa(p.Missing))
		}
		sb.WriteString(t.String())
	}

	if c := r.Costs; c != nil {
		fmt.Fprintf(&sb, "\n**What one operation on a FunnelEvent costs** (CPU time per operation, %d workers, %d rounds of create, status patch and get in turn, objects in `bench-raw`)\n\n", c.Concurrency, c.Rounds)
		t := &table{head: []string{"operation", "operations", "apiserver ms CPU", "× a create", "etcd ms CPU"}}
		for _, o := range c.Ops {
			t.add(o.Op, strconv.Itoa(o.Count), fmt.Sprintf("%.2f", o.APIServerMsPerOp), fmt.Sprintf("%.2f", o.TimesCreate), fmt.Sprintf("%.2f", o.EtcdMsPerOp))
		}
		sb.WriteString(t.String())
	}

	if m := r.Memory; m != nil {
		sb.WriteString("\n**Operator memory** (restarted, idle, after a forced GC)\n\n")
		t := &table{head: []string{"finished events stored (watched namespaces)", "RSS MiB", "heap in use MiB", "goroutines"}}
		for _, p := range []*memoryPoint{m.Small, m.Large} {
			if p != nil {
				t.add(strconv.Itoa(p.EventsStored), mib(float64(p.RSSBytes)), mib(p.HeapInuseBytes), strconv.Itoa(int(p.Goroutines)))
			}
		}
		t.add("ratio", fp(m.RSSRatio, "%.2f"), fp(m.HeapRatio, "%.2f"), "")
		sb.WriteString(t.String())
		if m.Large != nil && m.Large.UnwatchedEvents > 0 {
			fmt.Fprintf(&sb, "\nNot counted: the %d raw-baseline events in `%s`, a namespace the operator does not watch (it never lists them).\n", m.Large.UnwatchedEvents, nsRaw)
		}
	}
	sb.WriteString(renderCPU(r))
	if len(r.Notes) > 0 {
		sb.WriteString("\n**Notes**\n\n")
		for _, n := range r.Notes {
			sb.WriteString("- " + n + "\n")
		}
	}
	return sb.String()
}

func concurrencies(r *results) []int {
	var out []int
	seen := map[int]bool{}
	for _, l := range r.Raw {
		if !seen[l.Concurrency] {
			seen[l.Concurrency] = true
			out = append(out, l.Concurrency)
		}
	}
	for _, l := range r.Ingest {
		if !seen[l.Concurrency] {
			seen[l.Concurrency] = true
			out = append(out, l.Concurrency)
		}
	}
	return out
}

func verbs(m map[string]float64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s: %.0f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// renderCPU is the CPU each component used, on average, during each measurement.
func renderCPU(r *results) string {
	t := &table{head: []string{"measurement", "apiserver", "etcd", "operator", "bench", otherKey}}
	add := func(name string, m map[string]float64) {
		if m == nil {
			return
		}
		row := []string{name}
		for _, k := range t.head[1:] {
			row = append(row, strconv.FormatFloat(m[k], 'f', 2, 64))
		}
		t.add(row...)
	}
	for _, l := range r.Raw {
		add(fmt.Sprintf("raw c=%d", l.Concurrency), l.CPUCores)
	}
	for _, l := range r.RawProcessed {
		add(fmt.Sprintf("raw with processing c=%d", l.Concurrency), l.CPUCores)
	}
	for _, l := range r.Ingest {
		add(fmt.Sprintf("ingest c=%d (follower)", l.Concurrency), l.CPUCores)
	}
	for _, l := range r.Ingest {
		if l.WithProcessing != nil {
			add(fmt.Sprintf("ingest with processing c=%d (leader)", l.Concurrency), l.WithProcessing.CPUCores)
		}
	}
	for _, s := range r.E2E {
		if s.Throughput != nil {
			add("e2e "+s.Name, s.Throughput.CPUCores)
			if s.Throughput.Tail != nil {
				add(fmt.Sprintf("e2e %s: controllers alone (%.1f events/s)", s.Name, s.Throughput.Tail.EventsPerSecond), s.Throughput.Tail.CPUCores)
			}
		}
	}
	if r.Scaling != nil {
		for _, p := range r.Scaling.Points {
			add(fmt.Sprintf("scaling %d%% (follower)", p.Percent), p.CPUCores)
		}
	}
	if len(t.rows) == 0 {
		return ""
	}
	return "\n**CPU use** (average cores of " + strconv.Itoa(r.Machine.NProc) + " during each measurement; other = processes outside this run, and kernel time)\n\n" + t.String()
}

// diagnostics renders mean durations (seconds) as "name 12.3, …" in milliseconds.
func diagnostics(m map[string]float64) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+" "+ms(m[k]))
	}
	return strings.Join(parts, ", ")
}
