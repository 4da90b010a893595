package funnel

import (
	"encoding/json"
	"errors"
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
			d, err := h.Decode(env.Data)
			if err != nil {
				t.Fatalf("Decode: %v", err)
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

// handlerCase is one Decode of hand-written data: a summary and subjects
// when valid, an error (field and reason) when not.
type handlerCase struct {
	name     string
	typ      string
	data     string
	summary  string            // checked when err is ""
	subjects map[string]string // checked when not nil
	err      string            // the full FieldError message expected
}

func runHandlerCases(t *testing.T, cases []handlerCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Lookup(tt.typ).Decode(json.RawMessage(tt.data))
			if tt.err != "" {
				var ferr *FieldError
				if !errors.As(err, &ferr) {
					t.Fatalf("Decode error = %v (%T), want *FieldError %q", err, err, tt.err)
				}
				if err.Error() != tt.err {
					t.Errorf("Decode error = %q, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d.Summary != tt.summary {
				t.Errorf("Summary = %q, want %q", d.Summary, tt.summary)
			}
			if tt.subjects != nil && !maps.Equal(d.Subjects, tt.subjects) {
				t.Errorf("Subjects = %v, want %v", d.Subjects, tt.subjects)
			}
			if labels := SubjectLabels(tt.typ, json.RawMessage(tt.data)); !maps.Equal(labels, d.Subjects) {
				t.Errorf("SubjectLabels %v differ from the typed subjects %v", labels, d.Subjects)
			}
		})
	}
}

// TestHandlerEveryKnownType decodes a realistic payload of each known type.
func TestHandlerEveryKnownType(t *testing.T) {
	cases := []handlerCase{
		{name: "unit_reserved", typ: TypeUnitReserved,
			data:     `{"lease_transaction_id":74830,"lease_transaction_type":"Transfer","client_id":501,"guestcard_pms_identifier":null,"tenant_pms_identifier":"t77","unit_id":12,"unit_pms_identifier":"B-204","community_id":9,"community_pms_identifier":null}`,
			summary:  "Unit 12 reserved by Transfer 74830",
			subjects: map[string]string{LabelLeaseTransactionID: "74830", LabelClientID: "501", LabelUnitID: "12", LabelCommunityID: "9"}},
		{name: "unit_released", typ: TypeUnitReleased,
			data:     `{"lease_transaction_id":74825,"lease_transaction_type":"Renewal","client_id":12453,"tenant_pms_identifier":"t1234","unit_pms_identifier":"u1234","community_id":43522,"community_pms_identifier":null}`,
			summary:  "Unit u1234 released by Renewal 74825",
			subjects: map[string]string{LabelLeaseTransactionID: "74825", LabelClientID: "12453", LabelCommunityID: "43522"}},
		{name: "status_updated", typ: TypeStatusUpdated,
			data:     `{"lease_transaction_id":74824,"lease_transaction_type":"Lease Revision","current_status":"Countersigned","previous_status":"Signed","client_id":1,"community_id":2}`,
			summary:  "Lease Revision 74824: Signed → Countersigned",
			subjects: map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "1", LabelCommunityID: "2"}},
		{name: "terms_updated", typ: TypeTermsUpdated,
			data:     `{"lease_transaction_id":74824,"lease_transaction_type":"Application","client_id":12453,"community_id":43522,"move_in_date":"2023-04-01","lease_term":12}`,
			summary:  "Terms updated for Application 74824",
			subjects: map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "12453", LabelCommunityID: "43522"}},
		{name: "updated", typ: TypeLeaseTransactionUpdated,
			data:     `{"lease_transaction_id":74824,"lease_transaction_type":"Application","client_id":12453,"community_id":43522,"lease_id":null,"update_type":"CoApplicant invited"}`,
			summary:  "Application 74824 updated: CoApplicant invited",
			subjects: map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "12453", LabelCommunityID: "43522"}},
		{name: "fees_updated", typ: TypeFeesUpdated,
			data:     `{"lease_transaction_id":74824,"client_id":12453,"fee":{"name":"Application fee","status":"paid","amount":5000}}`,
			summary:  "Fees updated for lease transaction 74824",
			subjects: map[string]string{LabelLeaseTransactionID: "74824", LabelClientID: "12453"}},
		{name: "rentable_item_selected", typ: TypeRentableItemSelected,
			data:     `{"lease_transaction_id":74824,"lease_transaction_type":"Application","community_id":43522,"rentable_item":{"id":9,"type":"Parking","name":"P-12"}}`,
			summary:  "Rentable item selected for Application 74824",
			subjects: map[string]string{LabelLeaseTransactionID: "74824", LabelCommunityID: "43522"}},
		{name: "rentable_item_deselected", typ: TypeRentableItemDeselected,
			data:     `{"lease_id":3131,"unit_id":4352,"rentable_item":{"id":9}}`,
			summary:  "Rentable item deselected for lease 3131",
			subjects: map[string]string{LabelUnitID: "4352"}},
		{name: "resident_move_in", typ: TypeResidentMoveIn,
			data:     `{"lease_id":3131,"client_id":12453,"unit_id":4352,"community_id":43522,"move_in_date":"2023-03-11"}`,
			summary:  "Resident move-in for lease 3131",
			subjects: map[string]string{LabelClientID: "12453", LabelUnitID: "4352", LabelCommunityID: "43522"}},
		{name: "resident_move_in_canceled", typ: TypeResidentMoveInCanceled,
			data:     `{"client_id":12453,"reason":"lease changed"}`,
			summary:  "Resident move-in canceled for client 12453",
			subjects: map[string]string{LabelClientID: "12453"}},
		{name: "quote.created", typ: TypeQuoteCreated,
			data:     `{"lease_transaction_id":74824,"lease_transaction_type":"Application","quote":{"id":5,"price":250000,"lease_term":12}}`,
			summary:  "Quote created for Application 74824",
			subjects: map[string]string{LabelLeaseTransactionID: "74824"}},
		{name: "lease.move_in", typ: TypeMoveIn,
			data: `{"move_in_date":"2023-03-11","pms_identifier":"t1","community_pms_identifier":"123","charges":[
				{"charge_type":"Monthly","pms_identifier":"rent","start_date":"2023-03-11","end_date":"2024-03-10","amount":250000,"description":"Rent"},
				{"charge_type":"One-Time","pms_identifier":"admin","start_date":"2023-03-11","end_date":"2023-03-11","amount":50000,"description":"Admin fee"},
				{"charge_type":"monthly","pms_identifier":"garage","start_date":"2023-03-11","end_date":null,"amount":123456789,"description":"Garage"}]}`,
			summary:  "Move-in 2023-03-11 for t1: 3 charges, $1,237,067.89/mo",
			subjects: map[string]string{}},
		{name: "lease.move_in_canceled", typ: TypeMoveInCanceled,
			data:     `{"move_in_date":"2024-01-15","pms_identifier":"t42","community_pms_identifier":"c9"}`,
			summary:  "Move-in 2024-01-15 canceled for t42",
			subjects: map[string]string{}},
		{name: "renter.created", typ: TypeRenterCreated,
			data:     `{"funnel_renter_id":9,"funnel_community_id":8,"status":"Prospect","people":[{"first_name":"Ann","last_name":"Lee","email":"ann@example.com","phone_1":"","phone_2":"","sms_opt_in":false}],"move_in_date":"2024-06-01","created_at":"2024-05-01T10:00:00","layouts":["studio"],"listings":[],"messages":[]}`,
			summary:  "Renter 9 created (Prospect, 1 person)",
			subjects: map[string]string{LabelRenterID: "9", LabelCommunityID: "8"}},
		{name: "renter.status-change", typ: TypeRenterStatusChange,
			data:     `{"funnel_renter_id":9,"funnel_team_id":8,"status":"Resident"}`,
			summary:  "Renter 9 is now Resident",
			subjects: map[string]string{LabelRenterID: "9", LabelCommunityID: "8"}},
		{name: "appointment.updated", typ: TypeAppointmentUpdated,
			data:     `{"funnel_renter_id":9,"funnel_tour_id":7,"funnel_community_id":8,"pms_unit_ids":[],"tour_type":"Self-guided","start":"2021-08-02T10:30:00-04:00","end":"2021-08-02T11:00:00-04:00","status":"no-show"}`,
			summary:  "Self-guided tour 7 for renter 9 on 2021-08-02 14:30: no-show",
			subjects: map[string]string{LabelRenterID: "9", LabelCommunityID: "8"}},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.typ] = true
	}
	for _, typ := range KnownTypes() {
		if !covered[typ] {
			t.Errorf("no realistic payload for %s", typ)
		}
	}
	runHandlerCases(t, cases)
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

func TestHandlerRejects(t *testing.T) {
	const reserved = `"lease_transaction_type":"Application","client_id":2,"unit_id":3,"community_id":4`
	runHandlerCases(t, []handlerCase{
		{name: "missing required id", typ: TypeUnitReserved, data: `{` + reserved + `}`,
			err: "data.lease_transaction_id: required integer is missing"},
		{name: "null required id", typ: TypeUnitReserved, data: `{"lease_transaction_id":null,` + reserved + `}`,
			err: "data.lease_transaction_id: required integer is null"},
		{name: "string id", typ: TypeUnitReserved, data: `{"lease_transaction_id":"74824",` + reserved + `}`,
			err: "data.lease_transaction_id: must be an integer, got string"},
		{name: "fractional id", typ: TypeUnitReserved, data: `{"lease_transaction_id":74824.5,` + reserved + `}`,
			err: "data.lease_transaction_id: must be an integer, got 74824.5"},
		{name: "negative id", typ: TypeUnitReserved, data: `{"lease_transaction_id":-1,` + reserved + `}`,
			err: "data.lease_transaction_id: must be a non-negative integer, got -1"},
		{name: "missing required string", typ: TypeUnitReserved, data: `{"lease_transaction_id":1,"client_id":2,"unit_id":3,"community_id":4}`,
			err: "data.lease_transaction_type: required string is missing"},
		{name: "unit_reserved needs unit_id", typ: TypeUnitReserved, data: `{"lease_transaction_id":1,"lease_transaction_type":"Application","client_id":2,"community_id":4}`,
			err: "data.unit_id: required integer is missing"},
		{name: "nullable string of the wrong type", typ: TypeUnitReserved, data: `{"lease_transaction_id":1,` + reserved + `,"guestcard_pms_identifier":1234}`,
			err: "data.guestcard_pms_identifier: must be a string, got number"},
		{name: "unit_released needs client_id", typ: TypeUnitReleased, data: `{"lease_transaction_id":1,"lease_transaction_type":"Application","community_id":4}`,
			err: "data.client_id: required integer is missing"},
		{name: "status number", typ: TypeStatusUpdated, data: `{"lease_transaction_id":1,"current_status":3}`,
			err: "data.current_status: must be a string, got number"},
		{name: "status_updated without current status", typ: TypeStatusUpdated, data: `{"lease_transaction_id":1,"previous_status":"Submitted"}`,
			err: "data.current_status: required string is missing"},
		{name: "updated lease_id as string", typ: TypeLeaseTransactionUpdated, data: `{"lease_transaction_id":1,"lease_id":"L-1"}`,
			err: "data.lease_id: must be an integer, got string"},
		{name: "updated without transaction", typ: TypeLeaseTransactionUpdated, data: `{"update_type":"Dependent added"}`,
			err: "data.lease_transaction_id: required integer is missing"},
		{name: "undocumented type with a string id", typ: TypeTermsUpdated, data: `{"lease_transaction_id":"74824"}`,
			err: "data.lease_transaction_id: must be an integer, got string"},
		{name: "undocumented type with an object type", typ: TypeQuoteCreated, data: `{"lease_transaction_type":{}}`,
			err: "data.lease_transaction_type: must be a string, got object"},
		{name: "move_in without date", typ: TypeMoveIn, data: `{"pms_identifier":"t0"}`,
			err: "data.move_in_date: required ISO-8601 date is missing"},
		{name: "move_in bad date", typ: TypeMoveIn, data: `{"move_in_date":"2023-02-30","pms_identifier":"t0"}`,
			err: `data.move_in_date: must be an ISO-8601 date, got "2023-02-30" (day 30 is out of range for 2023-02)`},
		{name: "move_in without pms_identifier", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11"}`,
			err: "data.pms_identifier: required string is missing"},
		{name: "charges not an array", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":{}}`,
			err: "data.charges: must be an array, got object"},
		{name: "charge amount string", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":[{"charge_type":"Monthly","amount":1},{"charge_type":"Monthly","amount":"5000"}]}`,
			err: "data.charges[1].amount: must be an integer, got string"},
		{name: "charge amount with cents fraction", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":[{"charge_type":"Monthly","amount":25.5}]}`,
			err: "data.charges[0].amount: must be an integer, got 25.5"},
		{name: "charge without amount", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":[{"charge_type":"Monthly"}]}`,
			err: "data.charges[0].amount: required integer is missing"},
		{name: "charge null", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":[null]}`,
			err: "data.charges[0]: must be an object, got null"},
		{name: "charge end date bad", typ: TypeMoveIn, data: `{"move_in_date":"2023-03-11","pms_identifier":"t0","charges":[{"charge_type":"Monthly","amount":1,"end_date":"soon"}]}`,
			err: `data.charges[0].end_date: must be an ISO-8601 date, got "soon" (expected a date YYYY-MM-DD at the start)`},
		{name: "move_in_canceled date number", typ: TypeMoveInCanceled, data: `{"move_in_date":20230311,"pms_identifier":"t0"}`,
			err: "data.move_in_date: must be an ISO-8601 date, got number"},
		{name: "renter without id", typ: TypeRenterCreated, data: `{"status":"Prospect"}`,
			err: "data.funnel_renter_id: required integer is missing"},
		{name: "sms_opt_in as string", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"people":[{"first_name":"A","sms_opt_in":"yes"}]}`,
			err: "data.people[0].sms_opt_in: must be a boolean, got string"},
		{name: "layout not a string", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"layouts":["studio",2]}`,
			err: "data.layouts[1]: must be a string, got number"},
		{name: "listing unit id as string", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"listings":[{"funnel_unit_id":"123"}]}`,
			err: "data.listings[0].funnel_unit_id: must be an integer, got string"},
		{name: "message received_at bad", typ: TypeRenterCreated, data: `{"funnel_renter_id":1,"messages":[{"message":"hi","received_at":"yesterday"}]}`,
			err: `data.messages[0].received_at: must be an ISO-8601 date-time, got "yesterday" (expected a date YYYY-MM-DD at the start)`},
		{name: "status-change without status", typ: TypeRenterStatusChange, data: `{"funnel_renter_id":1}`,
			err: "data.status: required string is missing"},
		{name: "status-change team id as float", typ: TypeRenterStatusChange, data: `{"funnel_renter_id":1,"funnel_team_id":1.0,"status":"x"}`,
			err: "data.funnel_team_id: must be an integer, got 1.0"},
		{name: "appointment status maybe", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"status":"maybe"}`,
			err: `data.status: must be one of completed, no-show, cancelled, canceled, unknown; got "maybe"`},
		{name: "appointment status capitalised", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"status":"Completed"}`,
			err: `data.status: must be one of completed, no-show, cancelled, canceled, unknown; got "Completed"`},
		{name: "appointment status number", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"status":3}`,
			err: "data.status: must be a string, got number"},
		{name: "appointment without tour", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"status":"completed"}`,
			err: "data.funnel_tour_id: required integer is missing"},
		{name: "appointment bad start", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"start":"2021-08-01 25:00:00"}`,
			err: `data.start: must be an ISO-8601 date-time, got "2021-08-01 25:00:00" (time of day 25:00:00 is out of range)`},
		{name: "pms_unit_ids not strings", typ: TypeAppointmentUpdated, data: `{"funnel_renter_id":1,"funnel_tour_id":2,"pms_unit_ids":[123]}`,
			err: "data.pms_unit_ids[0]: must be a string, got number"},
		{name: "known type, data an array", typ: TypeRenterCreated, data: `[]`,
			err: "data: must be an object, got array"},
		{name: "known type, data null", typ: TypeMoveIn, data: `null`,
			err: "data: must be an object, got null"},
		{name: "known type, data invalid", typ: TypeMoveIn, data: `{"move_in_date":`,
			err: "data: is not valid JSON (unexpected end of JSON input)"},
		{name: "known type, data empty", typ: TypeMoveIn, data: ``,
			err: "data: is not valid JSON (unexpected end of JSON input)"},
		{name: "known type, invalid UTF-8", typ: TypeRenterStatusChange, data: "{\"funnel_renter_id\":1,\"status\":\"\xff\"}",
			err: "data: is not valid UTF-8 (bad byte at offset 32)"},
		{name: "unknown type, data an array", typ: "foo.bar", data: `[1]`,
			err: "data: must be an object, got array"},
		{name: "unknown type, data invalid", typ: "foo.bar", data: `{`,
			err: "data: is not valid JSON (unexpected end of JSON input)"},
	})
}

func TestSummaryIsOneBoundedLine(t *testing.T) {
	long := strings.Repeat("é", 300)
	d, err := Lookup(TypeMoveInCanceled).Decode(json.RawMessage(`{"move_in_date":"2023-03-11","pms_identifier":"` + long + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := utf8.RuneCountInString(d.Summary); n != MaxSummaryRunes || !strings.HasSuffix(d.Summary, "…") {
		t.Errorf("summary has %d runes, want %d ending in …", n, MaxSummaryRunes)
	}
	d, err = Lookup(TypeRenterStatusChange).Decode(json.RawMessage(`{"funnel_renter_id":1,"status":"A\nB\u2028C\tD\u0085"}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Summary != "Renter 1 is now A B C D " {
		t.Errorf("Summary = %q, want control characters replaced by spaces", d.Summary)
	}
	d, err = Lookup("a\nb").Decode(json.RawMessage(`{}`))
	if err != nil || d.Summary != "Event a b (0 fields)" {
		t.Errorf("unknown type summary = %q, %v", d.Summary, err)
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
	for _, typ := range []string{"foo.bar", "", "lease_transaction.new_thing", "Lease.Move_In", "lease.move_in "} {
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
	if err := DecodeData(mustParse(t, readTestdata(t, "v3-lease.move_in.json")).Data, &moveIn); err != nil {
		t.Fatal(err)
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
	if err := DecodeData(mustParse(t, readTestdata(t, "v3-lease_transaction.unit_reserved.json")).Data, &reserved); err != nil {
		t.Fatal(err)
	}
	if reserved.GuestcardPMSIdentifier == nil || *reserved.GuestcardPMSIdentifier != "p1234" || reserved.ClientID != "12457533" {
		t.Errorf("UnitReserved = %+v", reserved)
	}

	var renter RenterCreated
	if err := DecodeData(mustParse(t, readTestdata(t, "partner-renter.created.json")).Data, &renter); err != nil {
		t.Fatal(err)
	}
	if len(renter.People) != 2 || !renter.People[0].SMSOptIn || renter.People[1].SMSOptIn || renter.Listings[0].FunnelUnitID != "123" ||
		renter.Messages[0].ReceivedAt != "2019-01-01T04:55:55" || !slices.Equal(renter.Layouts, []string{"1-bedroom", "2-bedroom"}) {
		t.Errorf("RenterCreated = %+v", renter)
	}

	var updated LeaseTransactionUpdated
	if err := DecodeData(json.RawMessage(`{"lease_transaction_id":9007199254740993,"lease_id":null}`), &updated); err != nil {
		t.Fatal(err)
	}
	if updated.LeaseTransactionID != "9007199254740993" || updated.LeaseID != nil {
		t.Errorf("LeaseTransactionUpdated = %+v", updated)
	}

	for _, v := range []any{nil, moveIn, &[]int{}, (*MoveIn)(nil)} {
		if err := DecodeData(json.RawMessage(`{}`), v); err == nil {
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
	if err := DecodeData(json.RawMessage(`{"a":1,"b":2}`), &embedsUnexported); err != nil || embedsUnexported.B != "2" || embedsUnexported.A != "" {
		t.Errorf("DecodeData with an unexported embedded struct = %+v, %v", embedsUnexported, err)
	}
	var odd struct {
		C complex64 `json:"c"`
	}
	if err := DecodeData(json.RawMessage(`{"c":1}`), &odd); err == nil || !strings.Contains(err.Error(), "unsupported Go type") {
		t.Errorf("DecodeData with an unsupported field = %v", err)
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

func TestFieldErrorMessage(t *testing.T) {
	err := &FieldError{Field: "data.lease_transaction_id", Reason: "required integer is missing"}
	if err.Error() != "data.lease_transaction_id: required integer is missing" {
		t.Errorf("Error() = %q", err.Error())
	}
}
