package funnel

import (
	"encoding/json"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHandlerExamples(t *testing.T) {
	tests := []struct {
		file     string
		family   Family
		summary  string
		subjects map[string]string
	}{
		{"classic-lease_transaction.status_updated.json", FamilyLeaseTransaction, "Application 74824: Submitted → Approved",
			map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "12453", LabelCommunityID: "43522"}},
		{"v3-lease_transaction.unit_reserved.json", FamilyLeaseTransaction, "Unit 4352 reserved by Application 74824",
			map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "12457533", LabelUnitID: "4352", LabelCommunityID: "435242"}},
		{"v3-lease.move_in.json", FamilyLease, "Move-in 2023-03-11 for t0000000: 2 charges, $2,550.00/mo", map[string]string{}},
		{"v3-lease.move_in_canceled.json", FamilyLease, "Move-in 2023-03-11 canceled for t0000000", map[string]string{}},
		{"partner-renter.created.json", FamilyProspect, "Renter 456678 created (Prospect, 2 people, via apartments.com)",
			map[string]string{LabelRenterID: "456678", LabelCommunityID: "1234"}},
		{"partner-renter.status-change.json", FamilyProspect, "Renter 456678 is now Applicant",
			map[string]string{LabelRenterID: "456678", LabelCommunityID: "1234"}},
		{"partner-appointment.updated.json", FamilyProspect, "Guided tour 879 for renter 456 on 2021-08-01 15:00: completed",
			map[string]string{LabelRenterID: "456", LabelCommunityID: "123"}},
	}
	if len(tests) != len(exampleFiles) {
		t.Fatalf("%d cases for %d example files", len(tests), len(exampleFiles))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			env := mustParse(t, readTestdata(t, tt.file))
			h := Lookup(env.Type)
			if !h.Known || h.Family != tt.family || h.Type != env.Type {
				t.Errorf("Lookup(%q) = {Type %q Family %q Known %v}, want family %q, known", env.Type, h.Type, h.Family, h.Known, tt.family)
			}
			d := h.Decode(env.Data)
			if len(d.Issues) != 0 {
				t.Errorf("a documented example has issues: %v", d.Issues)
			}
			if d.Summary != tt.summary {
				t.Errorf("Summary = %q, want %q", d.Summary, tt.summary)
			}
			if !maps.Equal(d.Subjects, tt.subjects) || d.Subjects == nil {
				t.Errorf("Subjects = %v, want %v", d.Subjects, tt.subjects)
			}
			if labels := SubjectLabels(env.Type, env.Data); !maps.Equal(labels, d.Subjects) {
				t.Errorf("SubjectLabels %v differ from the typed subjects %v", labels, d.Subjects)
			}
		})
	}
}

// handlerCase is one Decode of hand-written data: its summary and subjects,
// and the issues it has ("!" before an invalid one).
type handlerCase struct {
	name     string
	typ      string
	data     string
	summary  string            // checked when not ""
	subjects map[string]string // checked when not nil
	issues   []string          // every Issue, "field: reason", "!" first when Invalid
}

func runHandlerCases(t *testing.T, cases []handlerCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			d := Lookup(tt.typ).Decode(json.RawMessage(tt.data))
			var issues []string
			for _, i := range d.Issues {
				s := i.String()
				if i.Invalid {
					s = "!" + s
				}
				issues = append(issues, s)
			}
			if !slices.Equal(issues, tt.issues) {
				t.Errorf("issues:\n got %q\nwant %q", issues, tt.issues)
			}
			if wantValid := !slices.ContainsFunc(tt.issues, func(s string) bool { return strings.HasPrefix(s, "!") }); d.Valid() != wantValid {
				t.Errorf("Valid() = %v, want %v", d.Valid(), wantValid)
			}
			if tt.summary != "" && d.Summary != tt.summary {
				t.Errorf("Summary = %q, want %q", d.Summary, tt.summary)
			}
			if tt.subjects != nil && !maps.Equal(d.Subjects, tt.subjects) {
				t.Errorf("Subjects = %v, want %v", d.Subjects, tt.subjects)
			}
			if labels := SubjectLabels(tt.typ, json.RawMessage(tt.data)); !maps.Equal(labels, d.Subjects) {
				t.Errorf("SubjectLabels %v differ from the subjects %v", labels, d.Subjects)
			}
		})
	}
}

func TestHandlerTolerates(t *testing.T) {
	runHandlerCases(t, []handlerCase{
		{name: "unit_reserved with every nullable field null", typ: TypeUnitReserved,
			data:    `{"lease_transaction_id":1,"lease_transaction_type":"Application","client_id":2,"guestcard_pms_identifier":null,"tenant_pms_identifier":null,"unit_id":3,"unit_pms_identifier":null,"community_id":4,"community_pms_identifier":null}`,
			summary: "Unit 3 reserved by Application 1"},
		{name: "unit_reserved with unknown transaction type and extra fields", typ: TypeUnitReserved,
			data:    `{"lease_transaction_id":1,"lease_transaction_type":"Sublet","client_id":2,"unit_id":3,"community_id":4,"new_field":{"deep":[1,2,{"x":null}]}}`,
			summary: "Unit 3 reserved by Sublet 1"},
		{name: "unit_reserved ids above 2^64", typ: TypeUnitReserved,
			data:     `{"lease_transaction_id":123456789012345678901234567890,"lease_transaction_type":"Application","client_id":2,"unit_id":3,"community_id":4}`,
			summary:  "Unit 3 reserved by Application 123456789012345678901234567890",
			subjects: map[string]string{LabelLeaseTransactionID: "123456789012345678901234567890", LabelClientID: "2", LabelUnitID: "3", LabelCommunityID: "4"}},
		{name: "unit_released without any unit", typ: TypeUnitReleased,
			data:    `{"lease_transaction_id":74824,"lease_transaction_type":"Application","client_id":1,"community_id":2,"unit_pms_identifier":null}`,
			summary: "Unit released by Application 74824"},
		{name: "unit_released with unit_id", typ: TypeUnitReleased,
			data:    `{"lease_transaction_id":74824,"lease_transaction_type":"Application","client_id":1,"unit_id":4352,"unit_pms_identifier":"u1","community_id":2}`,
			summary: "Unit 4352 released by Application 74824"},
		{name: "status_updated with unknown statuses", typ: TypeStatusUpdated,
			data:    `{"lease_transaction_id":1,"lease_transaction_type":"Notice to Vacate","current_status":"Withdrawn By Funnel","previous_status":"Pending Review"}`,
			summary: "Notice to Vacate 1: Pending Review → Withdrawn By Funnel"},
		{name: "status_updated without previous status or type", typ: TypeStatusUpdated,
			data:    `{"lease_transaction_id":1,"current_status":"Submitted","previous_status":null,"lease_transaction_type":null,"client_id":null}`,
			summary: "Lease transaction 1: now Submitted"},
		{name: "updated with an unseen update_type and null lease_id", typ: TypeLeaseTransactionUpdated,
			data:    `{"lease_transaction_id":1,"update_type":"User countersigned","lease_id":null}`,
			summary: "Lease transaction 1 updated: User countersigned"},
		{name: "updated without update_type", typ: TypeLeaseTransactionUpdated,
			data:    `{"lease_transaction_id":1,"lease_transaction_type":"Renewal","lease_id":55}`,
			summary: "Renewal 1 updated"},
		{name: "undocumented type with no ids at all", typ: TypeFeesUpdated,
			data:    `{"fees":[{"name":"x"}]}`,
			summary: "Fees updated", subjects: map[string]string{}},
		{name: "undocumented type with community only", typ: TypeQuoteCreated,
			data:    `{"community_id":7,"lease_transaction_id":null}`,
			summary: "Quote created for community 7"},
		{name: "undocumented type with unit only", typ: TypeTermsUpdated,
			data:    `{"unit_id":7}`,
			summary: "Terms updated for unit 7"},
		{name: "move_in without charges", typ: TypeMoveIn,
			data:    `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":null}`,
			summary: "Move-in 2023-03-11 for t0: no charges"},
		{name: "move_in with only a one-time charge and a credit", typ: TypeMoveIn,
			data:    `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":[{"charge_type":"OneTime","amount":9900},{"charge_type":"Monthly","amount":-5050}]}`,
			summary: "Move-in 2023-03-11 for t0: 2 charges, -$50.50/mo"},
		{name: "move_in with a date-time move-in date", typ: TypeMoveIn,
			data:    `{"move_in_date":"2023-03-11T00:00:00Z","pms_identifier":"t0","charges":[{"charge_type":"Monthly","amount":1}]}`,
			summary: "Move-in 2023-03-11T00:00:00Z for t0: 1 charge, $0.01/mo"},
		{name: "renter.created with only the id", typ: TypeRenterCreated,
			data:    `{"funnel_renter_id":1}`,
			summary: "Renter 1 created", subjects: map[string]string{LabelRenterID: "1"}},
		{name: "renter.created with nulls", typ: TypeRenterCreated,
			data:    `{"funnel_renter_id":1,"funnel_community_id":null,"status":null,"people":null,"move_in_date":null,"layouts":null,"lead_source":"Zillow"}`,
			summary: "Renter 1 created (via Zillow)"},
		{name: "appointment cancelled", typ: TypeAppointmentUpdated,
			data:    `{"funnel_renter_id":1,"funnel_tour_id":2,"status":"cancelled"}`,
			summary: "Tour 2 for renter 1: cancelled"},
		{name: "appointment canceled", typ: TypeAppointmentUpdated,
			data:    `{"funnel_renter_id":1,"funnel_tour_id":2,"tour_type":"Virtual","start":"2021-08-01 15:00:00","status":"canceled"}`,
			summary: "Virtual tour 2 for renter 1 on 2021-08-01 15:00: canceled"},
		{name: "appointment unknown status", typ: TypeAppointmentUpdated,
			data:    `{"funnel_renter_id":1,"funnel_tour_id":2,"status":"unknown"}`,
			summary: "Tour 2 for renter 1: unknown"},
		{name: "appointment without status", typ: TypeAppointmentUpdated,
			data:    `{"funnel_renter_id":1,"funnel_tour_id":2,"status":null}`,
			summary: "Tour 2 for renter 1"},
		{name: "keys are case-sensitive", typ: TypeRenterStatusChange,
			data:    `{"funnel_renter_id":1,"status":"Applicant","STATUS":5,"Funnel_Renter_Id":"x"}`,
			summary: "Renter 1 is now Applicant"},
		{name: "unknown type", typ: "foo.bar",
			data:    `{"a":1,"b":[],"community_id":77}`,
			summary: "Event foo.bar (3 fields)", subjects: map[string]string{LabelCommunityID: "77"}},
		{name: "unknown type with one field", typ: "lease_transaction.brand_new",
			data:    `{"lease_transaction_id":"abc"}`,
			summary: "Event lease_transaction.brand_new (1 field)", subjects: map[string]string{LabelLeaseTransactionID: "abc"}},
		{name: "unknown empty type", typ: "",
			data:    `{}`,
			summary: "Event without a type (0 fields)", subjects: map[string]string{}},
	})
}

// TestHandlerIssues: validation informs. Only what the docs mark required and
// not nullable is Invalid; other undocumented shapes are read as well as they
// can be and noted, and the summary is still written.
func TestHandlerIssues(t *testing.T) {
	const reserved = `"lease_transaction_type":"Application","client_id":2,"unit_id":3,"community_id":4`
	const moveIn = `"move_in_date":"2023-03-11","pms_identifier":"t0"`
	runHandlerCases(t, []handlerCase{
		{name: "missing required id", typ: TypeUnitReserved, data: `{` + reserved + `}`,
			issues: []string{"!data.lease_transaction_id: required integer is missing"}},
		{name: "null required id", typ: TypeUnitReserved, data: `{"lease_transaction_id":null,` + reserved + `}`,
			issues: []string{"!data.lease_transaction_id: required integer is null"}},
		{name: "required id as a numeric string is read", typ: TypeUnitReserved, data: `{"lease_transaction_id":"74824",` + reserved + `}`,
			summary: "Unit 3 reserved by Application 74824",
			issues:  []string{"data.lease_transaction_id: is a numeric string, documented as an integer; read as it is"}},
		{name: "required id not a number", typ: TypeUnitReserved, data: `{"lease_transaction_id":"T-1",` + reserved + `}`,
			issues: []string{`!data.lease_transaction_id: must be an integer, got string "T-1"`}},
		{name: "required id with a fraction", typ: TypeUnitReserved, data: `{"lease_transaction_id":74824.5,` + reserved + `}`,
			issues: []string{"!data.lease_transaction_id: is not an integer (74824.5), documented as an integer; read as it is"}},
		{name: "negative id is read", typ: TypeUnitReserved, data: `{"lease_transaction_id":-1,` + reserved + `}`,
			issues: []string{"data.lease_transaction_id: is negative, documented as an integer; read as it is"}},
		{name: "missing required string", typ: TypeUnitReserved, data: `{"lease_transaction_id":1,"client_id":2,"unit_id":3,"community_id":4}`,
			summary: "Unit 3 reserved by lease transaction 1",
			issues:  []string{"!data.lease_transaction_type: required string is missing"}},
		{name: "unit_reserved needs unit_id", typ: TypeUnitReserved, data: `{"lease_transaction_id":1,"lease_transaction_type":"Application","client_id":2,"community_id":4}`,
			summary: "Unit reserved by Application 1",
			issues:  []string{"!data.unit_id: required integer is missing"}},
		{name: "nullable string as a number is read", typ: TypeUnitReserved, data: `{"lease_transaction_id":1,` + reserved + `,"guestcard_pms_identifier":1234}`,
			issues: []string{"data.guestcard_pms_identifier: is a number, documented as a string; read as it is"}},
		{name: "unit_released needs client_id", typ: TypeUnitReleased, data: `{"lease_transaction_id":1,"lease_transaction_type":"Application","community_id":4}`,
			issues: []string{"!data.client_id: required integer is missing"}},
		{name: "status a number", typ: TypeStatusUpdated, data: `{"lease_transaction_id":1,"current_status":3}`,
			summary: "Lease transaction 1: now 3",
			issues:  []string{"data.current_status: is a number, documented as a string; read as it is"}},
		{name: "status_updated without current status", typ: TypeStatusUpdated, data: `{"lease_transaction_id":1,"previous_status":"Submitted"}`,
			summary: "Lease transaction 1: status updated"},
		{name: "lease_id not an integer", typ: TypeLeaseTransactionUpdated, data: `{"lease_transaction_id":1,"lease_id":"L-55"}`,
			summary: "Lease transaction 1 updated",
			issues:  []string{`data.lease_id: must be an integer, got string "L-55"`}},
		{name: "updated without transaction", typ: TypeLeaseTransactionUpdated, data: `{"update_type":"Dependent added"}`,
			summary: "Lease transaction updated: Dependent added"},
		{name: "undocumented type with an object type", typ: TypeQuoteCreated, data: `{"lease_transaction_type":{}}`,
			summary: "Quote created", issues: []string{"data.lease_transaction_type: must be a string, got object"}},
		{name: "move_in with nothing", typ: TypeMoveIn, data: `{}`, summary: "Move-in: no charges"},
		{name: "move_in pms_identifier null", typ: TypeMoveInCanceled, data: `{"move_in_date":"2023-03-11","pms_identifier":null}`,
			summary: "Move-in 2023-03-11 canceled"},
		{name: "move_in bad date is kept", typ: TypeMoveIn, data: `{"move_in_date":"2023-02-30","pms_identifier":"t0"}`,
			summary: "Move-in 2023-02-30 for t0: no charges",
			issues:  []string{`data.move_in_date: is not an ISO-8601 date: "2023-02-30" (day 30 is out of range for 2023-02); kept as sent`}},
		{name: "charges not an array", typ: TypeMoveIn, data: `{` + moveIn + `,"charges":{}}`,
			issues: []string{"data.charges: must be an array, got object"}},
		{name: "charge amounts as a string and with cents", typ: TypeMoveIn,
			data:    `{` + moveIn + `,"charges":[{"charge_type":"Monthly","amount":1},{"charge_type":"Monthly","amount":"5000"},{"charge_type":"Monthly","amount":25.5}]}`,
			summary: "Move-in 2023-03-11 for t0: 3 charges, $50.01/mo",
			issues: []string{"data.charges[1].amount: is a numeric string, documented as an integer; read as it is",
				"data.charges[2].amount: is not an integer (25.5), documented as an integer; read as it is"}},
		{name: "a null charge and an empty end date", typ: TypeMoveIn, data: `{` + moveIn + `,"charges":[null,{"charge_type":"Monthly","amount":1,"end_date":""}]}`,
			summary: "Move-in 2023-03-11 for t0: 1 charge, $0.01/mo",
			issues: []string{"data.charges[0]: is null, documented as an object; skipped",
				`data.charges[1].end_date: is not an ISO-8601 date: "" (expected a date YYYY-MM-DD at the start); kept as sent`}},
		{name: "move_in_canceled date a number", typ: TypeMoveInCanceled, data: `{"move_in_date":20230311,"pms_identifier":"t0"}`,
			summary: "Move-in canceled for t0", issues: []string{"data.move_in_date: must be an ISO-8601 date, got number 20230311"}},
		{name: "renter without id", typ: TypeRenterCreated, data: `{"status":"Prospect"}`, summary: "Renter created (Prospect)"},
		{name: "sms_opt_in as yes", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"people":[{"first_name":"A","sms_opt_in":"yes"}]}`,
			issues: []string{`data.people[0].sms_opt_in: must be a boolean, got string "yes"`}},
		{name: "sms_opt_in as a string boolean", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"people":[{"first_name":"A","sms_opt_in":"true"}]}`,
			issues: []string{"data.people[0].sms_opt_in: is a string, documented as a boolean; read as it is"}},
		{name: "layout a number", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"layouts":["studio",2]}`,
			issues: []string{"data.layouts[1]: is a number, documented as a string; read as it is"}},
		{name: "listing unit id as a string", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"listings":[{"funnel_unit_id":"123"}]}`,
			issues: []string{"data.listings[0].funnel_unit_id: is a numeric string, documented as an integer; read as it is"}},
		{name: "message received_at bad", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"messages":[{"message":"hi","received_at":"yesterday"}]}`,
			issues: []string{`data.messages[0].received_at: is not an ISO-8601 date-time: "yesterday" (expected a date YYYY-MM-DD at the start); kept as sent`}},
		{name: "status-change without status", typ: TypeRenterStatusChange, data: `{"funnel_renter_id":1}`, summary: "Renter 1: status changed"},
		{name: "status-change team id as a float", typ: TypeRenterStatusChange, data: `{"funnel_renter_id":1,"funnel_team_id":1.0,"status":"x"}`,
			subjects: map[string]string{LabelRenterID: "1"},
			issues:   []string{"data.funnel_team_id: is not an integer (1.0), documented as an integer; read as it is"}},
		{name: "appointment of a tour being created", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"status":"scheduled"}`,
			summary: "Tour 2 for renter 1: scheduled",
			issues:  []string{`data.status: "scheduled" is not one of the documented values (completed, no-show, cancelled, canceled, unknown); read as it is`}},
		{name: "appointment status capitalised", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"status":"Completed"}`,
			issues: []string{`data.status: "Completed" is not one of the documented values (completed, no-show, cancelled, canceled, unknown); read as it is`}},
		{name: "appointment without tour", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"status":"completed"}`,
			summary: "Tour for renter 1: completed"},
		{name: "appointment bad start", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"start":"2021-08-01 25:00:00"}`,
			summary: "Tour 2 for renter 1",
			issues:  []string{`data.start: is not an ISO-8601 date-time: "2021-08-01 25:00:00" (time of day 25:00:00 is out of range); kept as sent`}},
		{name: "pms_unit_ids numbers", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"pms_unit_ids":[123]}`,
			issues: []string{"data.pms_unit_ids[0]: is a number, documented as a string; read as it is"}},
		{name: "known type, data an array", typ: TypeRenterCreated, data: `[]`, summary: "Renter created",
			issues: []string{"!data: must be an object, got array"}},
		{name: "known type, data null", typ: TypeMoveIn, data: `null`,
			issues: []string{"!data: must be an object, got null"}},
		{name: "known type, data invalid", typ: TypeMoveIn, data: `{"move_in_date":`,
			issues: []string{"!data: is not valid JSON (unexpected end of JSON input)"}},
		{name: "known type, data empty", typ: TypeMoveIn, data: ``,
			issues: []string{"!data: is not valid JSON (unexpected end of JSON input)"}},
		{name: "known type, invalid UTF-8", typ: TypeRenterStatusChange, data: "{\"funnel_renter_id\":1,\"status\":\"\xff\"}",
			summary: "Renter: status changed", issues: []string{"!data: is not valid UTF-8 (bad byte at offset 32)"}},
		{name: "unknown type, data an array", typ: "foo.bar", data: `[1]`, summary: "Event foo.bar (0 fields)",
			issues: []string{"!data: must be an object, got array"}},
		{name: "unknown type, data invalid", typ: "foo.bar", data: `{`,
			issues: []string{"!data: is not valid JSON (unexpected end of JSON input)"}},
	})
}

func TestSummaryIsOneBoundedLine(t *testing.T) {
	long := strings.Repeat("é", 300)
	d := Lookup(TypeMoveInCanceled).Decode(json.RawMessage(`{"move_in_date":"2023-03-11","pms_identifier":"` + long + `"}`))
	if n := utf8.RuneCountInString(d.Summary); n != MaxSummaryRunes || !strings.HasSuffix(d.Summary, "…") {
		t.Errorf("summary has %d runes, want %d ending in …", n, MaxSummaryRunes)
	}
	d = Lookup(TypeRenterStatusChange).Decode(json.RawMessage(`{"funnel_renter_id":1,"status":"A\nB\u2028C\tD\u0085"}`))
	if d.Summary != "Renter 1 is now A B C D " {
		t.Errorf("Summary = %q, want control characters replaced by spaces", d.Summary)
	}
	d = Lookup("a\nb").Decode(json.RawMessage(`{}`))
	if d.Summary != "Event a b (0 fields)" {
		t.Errorf("unknown type summary = %q", d.Summary)
	}
}

func TestRegistry(t *testing.T) {
	want := []string{
		"appointment.updated",
		"lease.move_in",
		"lease.move_in_canceled",
		"lease.resident_move_in",
		"lease.resident_move_in_canceled",
		"lease_transaction.fees_updated",
		"lease_transaction.rentable_item_deselected",
		"lease_transaction.rentable_item_selected",
		"lease_transaction.status_updated",
		"lease_transaction.terms_updated",
		"lease_transaction.unit_released",
		"lease_transaction.unit_reserved",
		"lease_transaction.updated",
		"quote.created",
		"renter.created",
		"renter.status-change",
	}
	if got := KnownTypes(); !slices.Equal(got, want) {
		t.Errorf("KnownTypes = %v, want %v", got, want)
	}
	families := map[Family][]string{
		FamilyLeaseTransaction: {"lease_transaction.fees_updated", "lease_transaction.rentable_item_deselected", "lease_transaction.rentable_item_selected", "lease_transaction.status_updated", "lease_transaction.terms_updated", "lease_transaction.unit_released", "lease_transaction.unit_reserved", "lease_transaction.updated"},
		FamilyLease:            {"lease.move_in", "lease.move_in_canceled", "lease.resident_move_in", "lease.resident_move_in_canceled"},
		FamilyQuote:            {"quote.created"},
		FamilyProspect:         {"appointment.updated", "renter.created", "renter.status-change"},
		FamilyUnknown:          nil,
	}
	for f, types := range families {
		if got := TypesOf(f); !slices.Equal(got, types) {
			t.Errorf("TypesOf(%s) = %v, want %v", f, got, types)
		}
		for _, typ := range types {
			if FamilyOf(typ) != f || Lookup(typ).Family != f || !Lookup(typ).Known {
				t.Errorf("%s: FamilyOf %s, Lookup %+v, want family %s, known", typ, FamilyOf(typ), Lookup(typ), f)
			}
		}
	}
	for _, typ := range []string{"Lease.Move_In", "LEASE.MOVE_IN"} {
		if h := Lookup(typ); !h.Known || h.Type != TypeMoveIn || h.Family != FamilyLease || FamilyOf(typ) != FamilyLease {
			t.Errorf("Lookup(%q) = %+v, want the lease.move_in handler: types match in any letter case", typ, h)
		}
	}
	for _, typ := range []string{"foo.bar", "", "lease_transaction.new_thing", "lease.move_in "} {
		h := Lookup(typ)
		if h.Known || h.Family != FamilyUnknown || h.Type != typ || h.Decode == nil || FamilyOf(typ) != FamilyUnknown {
			t.Errorf("Lookup(%q) = %+v, want a generic handler", typ, h)
		}
	}
	// Callers cannot change the registry through the returned slice.
	KnownTypes()[0] = "changed"
	if KnownTypes()[0] != "appointment.updated" {
		t.Error("KnownTypes shares its slice")
	}
}

func TestDecodeDataTypedView(t *testing.T) {
	var moveIn MoveIn
	if issues, err := DecodeData(mustParse(t, readTestdata(t, "v3-lease.move_in.json")).Data, &moveIn); err != nil || issues != nil {
		t.Fatal(issues, err)
	}
	if moveIn.MoveInDate != "2023-03-11" || moveIn.PMSIdentifier != "t0000000" || moveIn.CommunityPMSIdentifier != "123" || len(moveIn.Charges) != 2 {
		t.Fatalf("MoveIn = %+v", moveIn)
	}
	if c := moveIn.Charges[1]; c.Amount != "5000" || c.Description != "Dog Rent" || c.PMSIdentifier != "pet" || c.EndDate != "2024-03-10" || !c.Monthly() {
		t.Errorf("Charges[1] = %+v", c)
	}
	if got := moveIn.MonthlyTotal(); got.Cmp(big.NewInt(255000)) != 0 {
		t.Errorf("MonthlyTotal = %v", got)
	}

	var reserved UnitReserved
	if issues, err := DecodeData(mustParse(t, readTestdata(t, "v3-lease_transaction.unit_reserved.json")).Data, &reserved); err != nil || issues != nil {
		t.Fatal(issues, err)
	}
	if reserved.GuestcardPMSIdentifier == nil || *reserved.GuestcardPMSIdentifier != "p1234" || reserved.ClientID != "12457533" {
		t.Errorf("UnitReserved = %+v", reserved)
	}

	var renter RenterCreated
	if issues, err := DecodeData(mustParse(t, readTestdata(t, "partner-renter.created.json")).Data, &renter); err != nil || issues != nil {
		t.Fatal(issues, err)
	}
	if len(renter.People) != 2 || !renter.People[0].SMSOptIn || renter.People[1].SMSOptIn || renter.Listings[0].FunnelUnitID != "123" ||
		renter.Messages[0].ReceivedAt != "2019-01-01T04:55:55" || !slices.Equal(renter.Layouts, []string{"1-bedroom", "2-bedroom"}) {
		t.Errorf("RenterCreated = %+v", renter)
	}

	var updated LeaseTransactionUpdated
	if issues, err := DecodeData(json.RawMessage(`{"lease_transaction_id":9007199254740993,"lease_id":null}`), &updated); err != nil || issues != nil {
		t.Fatal(issues, err)
	}
	if updated.LeaseTransactionID != "9007199254740993" || updated.LeaseID != nil {
		t.Errorf("LeaseTransactionUpdated = %+v", updated)
	}

	for _, v := range []any{nil, moveIn, &[]int{}, (*MoveIn)(nil)} {
		if _, err := DecodeData(json.RawMessage(`{}`), v); err == nil {
			t.Errorf("DecodeData into %T succeeded", v)
		}
	}
	type hidden struct {
		A ID `json:"a"`
	}
	var embedsUnexported struct {
		hidden
		B ID `json:"b"`
	}
	if issues, err := DecodeData(json.RawMessage(`{"a":1,"b":2}`), &embedsUnexported); err != nil || issues != nil || embedsUnexported.B != "2" || embedsUnexported.A != "" {
		t.Errorf("DecodeData with an unexported embedded struct = %+v, %v %v", embedsUnexported, issues, err)
	}
	var odd struct {
		C complex64 `json:"c"`
	}
	if issues, _ := DecodeData(json.RawMessage(`{"c":1}`), &odd); len(issues) != 1 || !strings.Contains(issues[0].Reason, "unsupported Go type") {
		t.Errorf("DecodeData with an unsupported field = %v", issues)
	}
}

func TestScalarJSON(t *testing.T) {
	var s struct {
		ID    ID    `json:"id"`
		Cents Cents `json:"cents"`
		Opt   *ID   `json:"opt"`
		Empty ID    `json:"empty"`
		Date  Date  `json:"date"`
	}
	in := `{"id":123456789012345678901234567890,"cents":-5050,"opt":null,"date":"2023-03-11"}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.ID != "123456789012345678901234567890" || s.Cents != "-5050" || s.Opt != nil {
		t.Errorf("decoded %+v", s)
	}
	out, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":123456789012345678901234567890,"cents":-5050,"opt":null,"empty":null,"date":"2023-03-11"}`; string(out) != want {
		t.Errorf("Marshal = %s, want %s", out, want)
	}
	if tm, err := s.Date.Time(); err != nil || tm.Format("2006-01-02T15:04:05Z07:00") != "2023-03-11T00:00:00Z" {
		t.Errorf("Date.Time = %v, %v", tm, err)
	}
	if v, ok := s.Cents.Big(); !ok || v.Int64() != -5050 {
		t.Errorf("Cents.Big = %v, %v", v, ok)
	}
	for _, bad := range []string{`{"id":"1"}`, `{"id":1.5}`, `{"id":-1}`, `{"id":true}`, `{"cents":"1"}`, `{"cents":1e2}`} {
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
	if _, err := json.Marshal(ID("12a")); err == nil {
		t.Error("Marshal of an invalid ID succeeded")
	}
	if _, err := json.Marshal(Cents("1.5")); err == nil {
		t.Error("Marshal of invalid Cents succeeded")
	}
	if _, ok := Cents("x").Big(); ok {
		t.Error("Cents(x).Big succeeded")
	}
}

func TestDollars(t *testing.T) {
	tests := []struct {
		cents string
		want  string
	}{
		{"0", "$0.00"},
		{"5", "$0.05"},
		{"100", "$1.00"},
		{"255000", "$2,550.00"},
		{"99999", "$999.99"},
		{"100000", "$1,000.00"},
		{"-5050", "-$50.50"},
		{"-5", "-$0.05"},
		{"123456789012345678901234567890", "$1,234,567,890,123,456,789,012,345,678.90"},
	}
	for _, tt := range tests {
		v, _ := new(big.Int).SetString(tt.cents, 10)
		if got := dollars(v); got != tt.want {
			t.Errorf("dollars(%s) = %q, want %q", tt.cents, got, tt.want)
		}
	}
}

func TestIssueString(t *testing.T) {
	if got := (Issue{Field: "data.lease_transaction_id", Reason: "required integer is missing", Invalid: true}).String(); got != "data.lease_transaction_id: required integer is missing" {
		t.Errorf("String() = %q", got)
	}
}
