package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// statsEvents: in namespace default over the last day, receiver funnel has
// four status updates (one per phase but Ignored) and one Ignored
// renter.created; receiver leasing has one Succeeded status update. An
// older event and one of namespace other are outside the default view.
func statsEvents() []client.Object {
	return []client.Object{
		event("a", inPhase(funnelv1.PhaseSucceeded, ""), withDuplicates(2)),
		event("b", inPhase(funnelv1.PhaseFailed, "")),
		event("c", inPhase(funnelv1.PhaseProcessing, "")),
		event("d"), // no status written yet
		event("e", inPhase(funnelv1.PhaseSucceeded, ""), createdAgo(48*time.Hour), withDuplicates(100)),
		event("f", inPhase(funnelv1.PhaseIgnored, ""), ofType(typeRenterCreated), withDuplicates(1)),
		event("g", inPhase(funnelv1.PhaseSucceeded, ""), fromReceiver("leasing"), createdAgo(23*time.Hour)),
		event("h", inPhase(funnelv1.PhaseFailed, ""), inNamespace("other")),
	}
}

func TestStatsTable(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "namespace, last 24h",
			args: []string{"stats"},
			want: `RECEIVER  TYPE                              Pending  Processing  Succeeded  Failed  Ignored  TOTAL
funnel    lease_transaction.status_updated  1        1           1          1       0        4
funnel    renter.created                    0        0           0          0       1        1
leasing   lease_transaction.status_updated  0        0           1          0       0        1
TOTAL                                       1        1           2          1       1        6

6 events created in the last 24h in namespace default; 3 duplicate receipts.
`,
		},
		{
			name: "one receiver, last hour",
			args: []string{"stats", "--receiver", "funnel", "--since", "1h"},
			want: `RECEIVER  TYPE                              Pending  Processing  Succeeded  Failed  Ignored  TOTAL
funnel    lease_transaction.status_updated  1        1           1          1       0        4
funnel    renter.created                    0        0           0          0       1        1
TOTAL                                       1        1           1          1       1        5

5 events created in the last 1h in namespace default; 3 duplicate receipts.
`,
		},
		{
			name: "all namespaces, every event",
			args: []string{"stats", "-A", "--since", "0"},
			want: `NAMESPACE  RECEIVER  TYPE                              Pending  Processing  Succeeded  Failed  Ignored  TOTAL
default    funnel    lease_transaction.status_updated  1        1           2          1       0        5
default    funnel    renter.created                    0        0           0          0       1        1
default    leasing   lease_transaction.status_updated  0        0           1          0       0        1
other      funnel    lease_transaction.status_updated  0        0           0          1       0        1
TOTAL                                                  1        1           3          2       1        8

8 events stored in any namespace; 103 duplicate receipts.
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{}, statsEvents()...), tt.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			if out != tt.want {
				t.Errorf("output\n%s\nwant\n%s", out, tt.want)
			}
		})
	}
}

func TestStatsSelectsOnTheAPIServer(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantFields string
		want       string
	}{
		{
			name:       "receiver",
			args:       []string{"stats", "--receiver", "leasing"},
			wantFields: "spec.receiver=leasing",
			want: `RECEIVER  TYPE                              Pending  Processing  Succeeded  Failed  Ignored  TOTAL
leasing   lease_transaction.status_updated  0        0           1          0       0        1
TOTAL                                       0        0           1          0       0        1

1 events created in the last 24h in namespace default; 0 duplicate receipts.
`,
		},
		{
			name:       "field selector",
			args:       []string{"stats", "-A", "--field-selector", "status.phase=Failed"},
			wantFields: "status.phase=Failed",
			want: `NAMESPACE  RECEIVER  TYPE                              Pending  Processing  Succeeded  Failed  Ignored  TOTAL
default    funnel    lease_transaction.status_updated  0        0           0          1       0        1
other      funnel    lease_transaction.status_updated  0        0           0          1       0        1
TOTAL                                                  0        0           0          2       0        2

2 events created in the last 24h in any namespace matching "status.phase=Failed"; 0 duplicate receipts.
`,
		},
		{
			name:       "receiver and field selector",
			args:       []string{"stats", "--since", "0", "--receiver", "funnel", "--field-selector", "status.phase=Succeeded,spec.type=lease_transaction.status_updated"},
			wantFields: "spec.receiver=funnel,spec.type=lease_transaction.status_updated,status.phase=Succeeded",
			want: `RECEIVER  TYPE                              Pending  Processing  Succeeded  Failed  Ignored  TOTAL
funnel    lease_transaction.status_updated  0        0           2          0       0        2
TOTAL                                       0        0           2          0       0        2

2 events stored in namespace default matching "status.phase=Succeeded,spec.type=lease_transaction.status_updated"; 102 duplicate receipts.
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages := &pager{}
			c := eventClient(interceptor.Funcs{List: pages.list}, statsEvents()...)
			code, out, errOut := cliWith(t, c, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
			if out != tt.want {
				t.Errorf("output\n%s\nwant\n%s", out, tt.want)
			}
			if len(pages.calls) != 1 || selectorString(pages.calls[0].FieldSelector) != tt.wantFields ||
				pages.calls[0].LabelSelector != nil || pages.calls[0].Limit != pageSize {
				t.Errorf("list calls %+v, want one with the field selector %q, no label selector and limit %d", pages.calls, tt.wantFields, pageSize)
			}
		})
	}
}

func TestStatsWithoutSelectorsSendsNone(t *testing.T) {
	pages := &pager{}
	if code, _, errOut := cliWith(t, eventClient(interceptor.Funcs{List: pages.list}, statsEvents()...), "stats"); code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if len(pages.calls) != 1 || pages.calls[0].FieldSelector != nil || pages.calls[0].LabelSelector != nil {
		t.Errorf("list calls %+v, want one without selectors", pages.calls)
	}
}

func TestStatsJSON(t *testing.T) {
	code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{}, statsEvents()...), "stats", "-o", "json", "--since", "24h")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var got struct {
		Namespace string     `json:"namespace"`
		Since     string     `json:"since"`
		From      *time.Time `json:"from"`
		Rows      []struct {
			Namespace, Receiver, Type string
			Phases                    map[string]int64
			Total, Duplicates         int64
		} `json:"rows"`
		Totals struct {
			Phases            map[string]int64
			Total, Duplicates int64
		} `json:"totals"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Namespace != ns || got.Since != "24h" || got.From == nil || time.Since(*got.From) < 24*time.Hour || time.Since(*got.From) > 24*time.Hour+time.Minute {
		t.Errorf("namespace %q, since %q, from %v", got.Namespace, got.Since, got.From)
	}
	if len(got.Rows) != 3 {
		t.Fatalf("%d rows, want 3:\n%s", len(got.Rows), out)
	}
	first := got.Rows[0]
	wantPhases := map[string]int64{"Pending": 1, "Processing": 1, "Succeeded": 1, "Failed": 1, "Ignored": 0}
	if first.Namespace != ns || first.Receiver != "funnel" || first.Type != typeStatusUpdated || first.Total != 4 || first.Duplicates != 2 ||
		!reflect.DeepEqual(first.Phases, wantPhases) {
		t.Errorf("first row %+v", first)
	}
	wantTotals := map[string]int64{"Pending": 1, "Processing": 1, "Succeeded": 2, "Failed": 1, "Ignored": 1}
	if got.Totals.Total != 6 || got.Totals.Duplicates != 3 || !reflect.DeepEqual(got.Totals.Phases, wantTotals) {
		t.Errorf("totals %+v", got.Totals)
	}

	// Nothing to count is still a report, for scripts.
	_, out, _ = cliWith(t, eventClient(interceptor.Funcs{}), "stats", "-o", "json")
	if !strings.Contains(out, `"rows": []`) || !strings.Contains(out, `"total": 0`) || strings.Contains(out, "fieldSelector") {
		t.Errorf("empty report:\n%s", out)
	}

	// The selection is part of the report.
	_, out, _ = cliWith(t, eventClient(interceptor.Funcs{}, statsEvents()...), "stats", "-o", "json", "--receiver", "funnel", "--field-selector", "status.phase=Failed")
	var sel struct{ Receiver, FieldSelector string }
	if err := json.Unmarshal([]byte(out), &sel); err != nil || sel.Receiver != "funnel" || sel.FieldSelector != "status.phase=Failed" || !strings.Contains(out, `"total": 1`) {
		t.Errorf("report of a selection (%v):\n%s", err, out)
	}
}

func TestStatsCountsEveryPage(t *testing.T) {
	var objs []client.Object
	for i := range 1001 {
		p := funnelv1.PhaseSucceeded
		if i%10 == 0 {
			p = funnelv1.PhaseFailed
		}
		objs = append(objs, event(fmt.Sprintf("evt-%04d", i), inPhase(p, "")))
	}
	pages := &pager{}
	code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{List: pages.list}, objs...), "stats")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if !strings.Contains(out, "TOTAL                                       0        0           900        101     0        1001\n") {
		t.Errorf("totals wrong:\n%s", out)
	}
	if len(pages.calls) != 3 {
		t.Errorf("%d list calls, want 3 pages", len(pages.calls))
	}
}

func TestStatsNothingToCount(t *testing.T) {
	c := eventClient(interceptor.Funcs{}, event("old", createdAgo(30*time.Hour)), event("pending"))
	code, out, errOut := cliWith(t, c, "stats", "--field-selector", "status.phase=Failed")
	if code != 0 || out != "" || errOut != "No FunnelEvents created in the last 24h in namespace default matching \"status.phase=Failed\".\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	c = eventClient(interceptor.Funcs{}, event("old", createdAgo(30*time.Hour)))
	code, out, errOut = cliWith(t, c, "stats")
	if code != 0 || out != "" || errOut != "No FunnelEvents created in the last 24h in namespace default.\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestStatsUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"stats", "-o", "yaml"}, `--output "yaml": want json`},
		{[]string{"stats", "--since", "-1h"}, "--since must not be negative"},
		{[]string{"stats", "extra"}, `unknown command "extra"`},
		{[]string{"stats", "--field-selector", "status.phase"}, `--field-selector "status.phase"`},
	}
	for _, tt := range tests {
		code, out, errOut := cliWith(t, eventClient(interceptor.Funcs{}), tt.args...)
		if code != 1 || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q (stdout %q)", tt.args, code, errOut, tt.wantErr, out)
		}
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 90 * time.Minute: "1h30m", 10 * time.Minute: "10m", 90 * time.Second: "1m30s", 0: "0s",
		time.Hour + time.Second: "1h0m1s",
	} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%s) = %s, want %s", d, got, want)
		}
	}
}
