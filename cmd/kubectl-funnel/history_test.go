package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	historyv1 "github.com/funnel-operator/funnel-operator/api/history/v1alpha1"
	funnelv1 "github.com/funnel-operator/funnel-operator/api/v1alpha1"
)

// The flags become exactly the selectors kubectl get archivedevents takes.
func TestHistorySelectors(t *testing.T) {
	now := time.Date(2025, 4, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		args           []string
		labels, fields string
		err            string
	}{
		{nil, "", "", ""},
		{[]string{"--lease-transaction", "74824"}, "funnel.leasing.dev/lease-transaction-id=74824", "", ""},
		{[]string{"--renter", "1", "-l", "team=a"}, "funnel.leasing.dev/renter-id=1,team=a", "", ""},
		{[]string{"--type", "lease.move_in", "--phase", "Failed", "--receiver", "funnel"}, "",
			"spec.type=lease.move_in,status.phase=Failed,spec.receiver=funnel", ""},
		{[]string{"--since", "24h"}, "", "spec.receivedAt.after=2025-03-31T12:00:00Z", ""},
		{[]string{"--after", "2025-03-01T00:00:00Z", "--before", "2025-04-01T00:00:00Z"}, "",
			"spec.receivedAt.after=2025-03-01T00:00:00Z,spec.receivedAt.before=2025-04-01T00:00:00Z", ""},
		{[]string{"--after", "last march"}, "", "", "RFC 3339"},
		{[]string{"--since", "1h", "--after", "2025-03-01T00:00:00Z"}, "", "", "use one"},
		{[]string{"-l", "a in ("}, "", "", "--selector"},
	} {
		o := &historyOptions{now: func() time.Time { return now }, subjects: map[string]*string{}}
		if err := o.command().ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := o.listOptions()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want one with %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || got.LabelSelector != tc.labels || got.FieldSelector != tc.fields {
			t.Errorf("%v: -l %q --field-selector %q (%v), want -l %q --field-selector %q", tc.args, got.LabelSelector, got.FieldSelector, err, tc.labels, tc.fields)
		}
	}
}

// It pages through the whole answer and prints every event once, oldest first.
func TestHistoryPages(t *testing.T) {
	pages := [][]string{{"evt-1", "evt-2"}, {"evt-3"}}
	var asked []metav1.ListOptions
	c := eventClient(interceptor.Funcs{List: func(_ context.Context, _ client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
		lo := (&client.ListOptions{}).ApplyOptions(opts)
		asked = append(asked, *lo.AsListOptions())
		page := pages[len(asked)-1]
		l := list.(*historyv1.ArchivedEventList)
		for i, name := range page {
			l.Items = append(l.Items, historyv1.ArchivedEvent{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
				Spec:   funnelv1.FunnelEventSpec{Type: "lease.move_in", ReceivedAt: metav1.NewMicroTime(time.Date(2025, 3, 1, 9, i, 0, 0, time.UTC))},
				Status: funnelv1.FunnelEventStatus{Phase: funnelv1.PhaseSucceeded, Summary: "Move-in " + name}})
		}
		if len(asked) < len(pages) {
			l.Continue = "next"
		}
		return nil
	}})
	code, out, errOut := cliWith(t, c, "history", "--lease-transaction", "74824")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `RECEIVED             NAME   TYPE           PHASE      SUMMARY
2025-03-01 09:00:00  evt-1  lease.move_in  Succeeded  Move-in evt-1
2025-03-01 09:01:00  evt-2  lease.move_in  Succeeded  Move-in evt-2
2025-03-01 09:00:00  evt-3  lease.move_in  Succeeded  Move-in evt-3
3 archived events
`
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
	if len(asked) != 2 || asked[1].Continue != "next" || asked[0].LabelSelector != "funnel.leasing.dev/lease-transaction-id=74824" || asked[0].Limit != historyPage {
		t.Errorf("requests %+v", asked)
	}
}
