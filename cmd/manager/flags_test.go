package main

import (
	"maps"
	"strings"
	"testing"

	"github.com/funnel-operator/funnel-operator/api/funnel"
)

func TestParseEventConcurrency(t *testing.T) {
	tests := []struct {
		in   string
		want map[funnel.Family]int
		err  bool
	}{
		{in: "", want: map[funnel.Family]int{}},
		{in: " lease_transaction=8, prospect=3 ,", want: map[funnel.Family]int{funnel.FamilyLeaseTransaction: 8, funnel.FamilyProspect: 3}},
		{in: "unknown=1000", want: map[funnel.Family]int{funnel.FamilyUnknown: 1000}},
		{in: "lease", err: true},
		{in: "lease=0", err: true},
		{in: "lease=x", err: true},
		{in: "renter=2", err: true},
		{in: "lease=1001", err: true},
	}
	for _, tt := range tests {
		got, err := parseEventConcurrency(tt.in)
		if (err != nil) != tt.err || (!tt.err && !maps.Equal(got, tt.want)) {
			t.Errorf("parseEventConcurrency(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := parseCIDRs(" 127.0.0.1/32, ::1 ,10.0.0.7/8,,::ffff:192.168.0.0/112,192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1/32", "::1/128", "10.0.0.0/8", "192.168.0.0/16", "192.0.2.1/32"}
	if len(got) != len(want) {
		t.Fatalf("parseCIDRs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("parseCIDRs[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"localhost", "10.0.0.0/33", "10.0.0/8", "1.2.3.4/x"} {
		if _, err := parseCIDRs(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseCIDRs(%q) = %v, want an error naming it", bad, err)
		}
	}
	if got, err := parseCIDRs(""); err != nil || len(got) != 0 {
		t.Errorf("parseCIDRs(\"\") = %v, %v", got, err)
	}
}
