package funnel

import (
	"encoding/json"
	"maps"
	"regexp"
	"strings"
	"testing"
)

// labelValueRE is Kubernetes' label value rule, written independently of
// isLabelValue.
var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

func TestLabelValue(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct{ in, want string }{
		{"", ""},
		{"lease_transaction.status_updated", "lease_transaction.status_updated"},
		{"renter.status-change", "renter.status-change"},
		{"A1", "A1"},
		{strings.Repeat("x", 63), strings.Repeat("x", 63)},
		{"foo bar", "foo_bar"},
		{"foo/bar:baz", "foo_bar_baz"},
		{"lease.mové_in", "lease.mov__in"},
		{".hidden.", "hidden"},
		{"-x-", "x"},
		{"_a b_", "a_b"},
		{"a\x00b", "a_b"},
		{"a\xffb", "a_b"},
		{"日本", hashTag("日本")},
		{"!!!", hashTag("!!!")},
		{"-", hashTag("-")},
		{long, strings.Repeat("a", 52) + "-" + hashTag(long)},
		{strings.Repeat("a", 51) + "." + strings.Repeat("b", 20), strings.Repeat("a", 51) + "-" + hashTag(strings.Repeat("a", 51)+"."+strings.Repeat("b", 20))},
		{strings.Repeat("a b", 30), strings.Repeat("a_b", 17) + "a-" + hashTag(strings.Repeat("a b", 30))},
	}
	for _, tt := range tests {
		got := LabelValue(tt.in)
		if got != tt.want {
			t.Errorf("LabelValue(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > 63 || !labelValueRE.MatchString(got) {
			t.Errorf("LabelValue(%q) = %q is not a valid label value", tt.in, got)
		}
	}
	if LabelValue(long+"1") == LabelValue(long+"2") {
		t.Error("two long inputs with a common prefix share a label value")
	}
}

// hashTag is the suffix LabelValue appends, computed independently.
func hashTag(s string) string { return sha256Hex32([]byte(s))[:10] }

func TestSubjectLabelsExamples(t *testing.T) {
	tests := map[string]map[string]string{
		"classic-lease_transaction.status_updated.json": {LabelLeaseTransactionID: "74824", LabelClientID: "12453", LabelCommunityID: "43522"},
		"v3-lease_transaction.unit_reserved.json":       {LabelLeaseTransactionID: "74824", LabelClientID: "12457533", LabelUnitID: "4352", LabelCommunityID: "435242"},
		"v3-lease.move_in.json":                         {},
		"v3-lease.move_in_canceled.json":                {},
		"partner-renter.created.json":                   {LabelRenterID: "456678", LabelCommunityID: "1234"},
		"partner-renter.status-change.json":             {LabelRenterID: "456678", LabelCommunityID: "1234"},
		"partner-appointment.updated.json":              {LabelRenterID: "456", LabelCommunityID: "123"},
	}
	if len(tests) != len(exampleFiles) {
		t.Fatalf("%d cases for %d example files", len(tests), len(exampleFiles))
	}
	for file, want := range tests {
		env := mustParse(t, readTestdata(t, file))
		if got := SubjectLabels(env.Type, env.Data); !maps.Equal(got, want) {
			t.Errorf("%s: SubjectLabels = %v, want %v", file, got, want)
		}
	}
}

func TestSubjectLabels(t *testing.T) {
	tests := []struct {
		name string
		data string
		want map[string]string
	}{
		{"string ids that are label values", `{"lease_transaction_id":"74824","client_id":"c-1"}`,
			map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "c-1"}},
		{"community_id wins", `{"community_id":1,"funnel_community_id":2,"funnel_team_id":3}`,
			map[string]string{LabelCommunityID: "1"}},
		{"funnel_community_id before team", `{"funnel_community_id":2,"funnel_team_id":3}`,
			map[string]string{LabelCommunityID: "2"}},
		{"invalid community_id falls through", `{"community_id":"not valid!","funnel_team_id":3}`,
			map[string]string{LabelCommunityID: "3"}},
		{"null, float, negative, bool, object, empty, invalid", `{"lease_transaction_id":null,"client_id":1.5,"unit_id":-4,"community_id":true,"funnel_renter_id":{},"funnel_team_id":""}`,
			map[string]string{}},
		{"exponent is not an integer", `{"unit_id":1e3}`, map[string]string{}},
		{"big integer kept", `{"unit_id":123456789012345678901234567890}`,
			map[string]string{LabelUnitID: "123456789012345678901234567890"}},
		{"too long for a label", `{"unit_id":` + strings.Repeat("9", 64) + `}`, map[string]string{}},
		{"no guessing from lists", `{"pms_unit_ids":["123"],"listings":[{"funnel_unit_id":5}]}`, map[string]string{}},
		{"nested ids ignored", `{"lease":{"unit_id":5}}`, map[string]string{}},
		{"not an object", `[1,2]`, map[string]string{}},
		{"null", `null`, map[string]string{}},
		{"invalid JSON", `{"unit_id":`, map[string]string{}},
		{"empty", ``, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SubjectLabels("any.type", json.RawMessage(tt.data))
			if got == nil || !maps.Equal(got, tt.want) {
				t.Errorf("SubjectLabels = %v, want %v", got, tt.want)
			}
		})
	}
}
