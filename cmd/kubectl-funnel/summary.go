package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/funnel-operator/funnel-operator/api/funnel/send"
)

// maxFailureLines bounds the distinct failure reasons a summary lists.
const maxFailureLines = 5

// writeSummary prints the summary table of a load run against target, each event sent
// copies times.
func writeSummary(w io.Writer, rep *send.Report, st send.Stats, target string, copies int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }

	row("Target:", "%s", target)
	if copies > 1 {
		row("Sent:", "%d requests (%d events × %d copies)", rep.Sent, st.Started, copies)
	} else {
		row("Sent:", "%d requests", rep.Sent)
	}
	row("Acknowledged:", "%d", rep.Acknowledged)
	row("Not acknowledged:", "%d", rep.NotAcknowledged())
	codes := make([]int, 0, len(rep.ByStatus))
	for code := range rep.ByStatus {
		codes = append(codes, code)
	}
	sort.Ints(codes)
	var byCode []string
	for _, code := range codes {
		byCode = append(byCode, fmt.Sprintf("%d×%d", code, rep.ByStatus[code]))
	}
	if len(byCode) == 0 {
		byCode = []string{"none"}
	}
	row("Status codes:", "%s", strings.Join(byCode, "  "))
	row("Errors (no answer):", "%d", rep.NoAnswer)
	if secs := st.Elapsed.Seconds(); secs > 0 {
		row("Rate:", "%.1f events/s, %.1f requests/s over %s", float64(st.Started)/secs, float64(rep.Sent)/secs, roundDuration(st.Elapsed))
	}
	if len(rep.Latencies) > 0 {
		l := send.LatencyOf(rep.Latencies)
		row("Latency:", "p50 %s  p95 %s  p99 %s  max %s", roundDuration(l.P50), roundDuration(l.P95), roundDuration(l.P99), roundDuration(l.Max))
	}
	if st.Interrupted {
		row("Interrupted:", "yes, before every event was sent")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Failures) == 0 {
		return nil
	}
	fmt.Fprintln(w, "Failures:")
	for _, line := range rep.TopFailures(maxFailureLines) {
		count, reason, _ := strings.Cut(line, " ")
		fmt.Fprintf(w, "  %7s  %s\n", count, reason)
	}
	if more := len(rep.Failures) - maxFailureLines; more > 0 {
		fmt.Fprintf(w, "  … and %d more reasons\n", more)
	}
	return nil
}

// roundDuration keeps three significant digits or so, for tables.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
