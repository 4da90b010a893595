package reliability_test

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// row is one line of the results table.
type row struct {
	Scenario string
	// Sent is HTTP requests made to the receivers (retries and duplicates included).
	Sent int
	// Acked is distinct events answered 200; Stored the sent events that exist as
	// FunnelEvents; Lost the acknowledged events that do not (must be 0).
	Acked, Stored, Lost int
	// Duplicates is the extra receipts of stored events (sum of status.duplicates).
	Duplicates int64
	Time       time.Duration
	Notes      string
}

var (
	resultsMu sync.Mutex
	results   []row
)

func record(r row) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results = append(results, r)
	GinkgoWriter.Printf("result: %+v\n", r)
}

// table renders the results as Markdown.
func table() string {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var b strings.Builder
	b.WriteString("| scenario | requests sent | acknowledged | stored | lost | duplicates | time | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	sorted := slices.Clone(results)
	slices.SortStableFunc(sorted, func(a, b row) int { return strings.Compare(a.Scenario, b.Scenario) })
	for _, r := range sorted {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s |\n", r.Scenario, r.Sent, r.Acked, r.Stored, r.Lost,
			r.Duplicates, r.Time.Round(100*time.Millisecond), r.Notes)
	}
	return b.String()
}

// machine describes where the run happened.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB memory", (kb+(1<<19))>>20)
		}
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	return fmt.Sprintf("%d cores (%s)%s, %s, %s/%s, %s", runtime.NumCPU(), model, mem, strings.TrimSpace(string(kernel)),
		runtime.GOOS, runtime.GOARCH, runtime.Version())
}

const (
	docsBegin = "<!-- results:begin -->"
	docsEnd   = "<!-- results:end -->"
)

// printResults prints the table and, with RELIABILITY_DOCS=<file>, replaces the part of
// that file between the results markers with it.
func printResults(r Report) {
	mode := "fast scenarios only"
	if long() {
		mode = "all scenarios (RELIABILITY_LONG=1)"
	}
	outcome := "passed"
	if !r.SuiteSucceeded {
		var failed []string
		for _, s := range r.SpecReports {
			if s.Failed() {
				failed = append(failed, s.FullText())
			}
		}
		outcome = "FAILED: " + strings.Join(failed, "; ")
	}
	section := fmt.Sprintf("Run of %s, %s, in %s: %s.\n\nMachine: %s.\n\n%s",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), mode, r.RunTime.Round(time.Second), outcome, machine(), table())
	fmt.Fprintf(os.Stdout, "\nReliability results\n\n%s\n", section)
	path := os.Getenv("RELIABILITY_DOCS")
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stdout, "RELIABILITY_DOCS: %v\n", err)
		return
	}
	doc := string(b)
	i, j := strings.Index(doc, docsBegin), strings.Index(doc, docsEnd)
	if i < 0 || j < i {
		fmt.Fprintf(os.Stdout, "RELIABILITY_DOCS: %s has no %s … %s section\n", path, docsBegin, docsEnd)
		return
	}
	doc = doc[:i+len(docsBegin)] + "\n" + section + doc[j:]
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		fmt.Fprintf(os.Stdout, "RELIABILITY_DOCS: %v\n", err)
	}
}

// codes formats the answers of results by status code, e.g. "200×150, 503×12, error×3".
func codes(results []send.Result) string {
	rep := send.NewReport()
	for _, r := range results {
		rep.Add(r)
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(rep.ByStatus)) {
		parts = append(parts, fmt.Sprintf("%d×%d", code, rep.ByStatus[code]))
	}
	if rep.NoAnswer > 0 {
		parts = append(parts, fmt.Sprintf("error×%d", rep.NoAnswer))
	}
	return strings.Join(parts, ", ")
}
