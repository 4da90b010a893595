package main

import (
	"maps"
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
