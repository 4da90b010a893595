package funnel

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

var receivedAt = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func identify(t *testing.T, receiver, body string) Identity {
	t.Helper()
	return Naming{Receiver: receiver}.Identify(mustParse(t, []byte(body)), receivedAt)
}

func TestIdentifySameEvent(t *testing.T) {
	// Each group is one event, serialised and sent in ways a retry may differ by.
	groups := map[string][]string{
		"classic": {
			`{"id":8932127,"event_type":"lease_transaction.status_updated","event_timestamp":1680064028,"idempotency_key":null,"event_data":{"lease_transaction_id":74824,"current_status":"Approved"}}`,
			"{ \"event_data\" : { \"current_status\" : \"Approved\" , \"lease_transaction_id\" : 74824 } ,\n \"event_timestamp\": 1680064028, \"event_type\": \"lease_transaction.status_updated\", \"id\": 8932127 }",
			`{"id":"8932127","event_type":"lease_transaction.status_updated","event_timestamp":"1680064028","event_data":{"lease_transaction_id":74824,"current_status":"Approved"}}`,
			`{"id":8932127,"event_type":"lease_transaction.status_updated","event_timestamp":1680064028000,"event_data":{"lease_transaction_id":7.4824e4,"current_status":"Appro\u0076ed"}}`,
			`{"id":8932127,"event_type":"Lease_Transaction.Status_Updated","event_timestamp":"2023-03-29T04:27:08Z","event_data":{"lease_transaction_id":74824.0,"current_status":"Approved"},"attempt":3}`,
			"\xef\xbb\xbf" + `{"id":8932127,"event_type":"lease_transaction.status_updated","event_timestamp":1680064028,"event_data":{"lease_transaction_id":74824,"current_status":"Approved"}}`,
		},
		"v3 uuid": {
			`{"id":"8cc87045-1111-4a16-a882-454044e6762a","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"charges":[{"amount":250000}]}}`,
			`{"id":"8CC87045-1111-4A16-A882-454044E6762A","event":"lease.move_in","timestamp":"2023-03-11T09:23:56.01-05:00","data":{"charges":[{"amount":2.5e5}]}}`,
			`{"data":{"charges":[{"amount":250000}]},"timestamp":1678544636010,"event":"lease.move_in","id":"8cc87045-1111-4A16-a882-454044e6762a"}`,
		},
		"partner": {
			`{"event":"renter.status-change","data":{"funnel_renter_id":456678,"funnel_team_id":1234,"status":"Applicant"}}`,
			`{"data":{"status":"Applicant","funnel_team_id":1234,"funnel_renter_id":456678},"event":"renter.status-change"}`,
			"{\n  \"event\": \"renter.status-change\",\n  \"data\": {\"funnel_renter_id\": 456678.0, \"funnel_team_id\": 1234, \"status\": \"\\u0041pplicant\"},\n  \"sent\": 2\n}",
		},
	}
	for name, bodies := range groups {
		first := identify(t, "funnel", bodies[0])
		for i, body := range bodies[1:] {
			if got := identify(t, "funnel", body); got != first {
				t.Errorf("%s: serialisation %d is another event: %+v, want %+v", name, i+1, got, first)
			}
		}
		if !isDNSSubdomain(first.Name) || len(first.Name) > 63 {
			t.Errorf("%s: name %q is not a short DNS subdomain", name, first.Name)
		}
	}
}

func TestIdentifyDistinctEvents(t *testing.T) {
	base := `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023-03-11"}}`
	b := identify(t, "funnel", base)
	other := map[string]Identity{
		// Funnel's own docs show lease.move_in and lease.move_in_canceled with one id.
		"same id, another type":   identify(t, "funnel", strings.Replace(base, `"lease.move_in"`, `"lease.move_in_canceled"`, 1)),
		"same id, other receiver": identify(t, "other", base),
		"another id":              identify(t, "funnel", strings.Replace(base, "f3d5", "f3d6", 1)),
	}
	for what, id := range other {
		if id.Name == b.Name {
			t.Errorf("%s: same name %s", what, id.Name)
		}
	}
	// Same identity, other content: one name, two digests, and a variant name of its own.
	changed := identify(t, "funnel", strings.Replace(base, "2023-03-11\"}", "2023-03-12\"}", 1))
	if changed.Name != b.Name || changed.Digest == b.Digest {
		t.Fatalf("same id and type with other data: %+v vs %+v", changed, b)
	}
	v := VariantName(changed.Name, changed.Digest)
	if v == b.Name || v != VariantName(changed.Name, changed.Digest) || !strings.HasPrefix(v, b.Name+"-") || !isDNSSubdomain(v) || len(v) > 63 {
		t.Errorf("variant name %q", v)
	}
	if VariantName(b.Name, b.Digest) == v {
		t.Error("two contents share a variant name")
	}
}

func TestIdentifyNames(t *testing.T) {
	tests := []struct {
		body, prefix string
		hexLen       int
	}{
		{`{"id":8932127,"event_type":"x","event_data":{}}`, "evt-8932127-", 10},
		{`{"id":0,"event_type":"x","event_data":{}}`, "evt-0-", 10},
		{`{"id":"8CC87045-1111-4A16-A882-454044E6762A","event":"x","data":{}}`, "evt-8cc87045-1111-4a16-a882-454044e6762a-", 10},
		{`{"id":` + strings.Repeat("9", 20) + `,"event_type":"x","event_data":{}}`, "evt-" + strings.Repeat("9", 20) + "-", 10},
		{`{"id":` + strings.Repeat("9", 21) + `,"event_type":"x","event_data":{}}`, "evt-i-", 32},
		{`{"id":"Event #42","event":"x","data":{}}`, "evt-i-", 32},
		{`{"id":"` + strings.Repeat("a", 300) + `","event":"x","data":{}}`, "evt-i-", 32},
		{`{"event":"renter.created","data":{}}`, "evt-p-", 32},
		{`{"id":null,"event_type":"x","event_data":{}}`, "evt-c-", 32},
	}
	for _, tt := range tests {
		name := identify(t, "funnel", tt.body).Name
		rest, ok := strings.CutPrefix(name, tt.prefix)
		if !ok || len(rest) != tt.hexLen || strings.Trim(rest, "0123456789abcdef") != "" || !isDNSSubdomain(name) || len(name) > 63 {
			t.Errorf("%s: name %q, want %q + %d hex", tt.body, name, tt.prefix, tt.hexLen)
		}
	}
}

func TestIdentifyDedupeWindow(t *testing.T) {
	body := mustParse(t, []byte(`{"event":"renter.status-change","data":{"funnel_renter_id":1,"status":"Applicant"}}`))
	n := Naming{Receiver: "funnel", DedupeWindow: 24 * time.Hour}
	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	morning, evening := n.Identify(body, day.Add(time.Hour)), n.Identify(body, day.Add(23*time.Hour))
	if morning != evening {
		t.Errorf("one window, two identities: %+v, %+v", morning, evening)
	}
	next := n.Identify(body, day.Add(25*time.Hour))
	if next.Name == morning.Name || next.Previous != morning.Name {
		t.Errorf("next window: %+v; want a new name whose Previous is %s", next, morning.Name)
	}
	if (Naming{Receiver: "funnel"}).Identify(body, day.Add(time.Hour)) != morning {
		t.Error("the default window is not 24h")
	}
	if other := (Naming{Receiver: "funnel", DedupeWindow: 48 * time.Hour}).Identify(body, day.Add(time.Hour)); other.Name == morning.Name {
		t.Error("another window length gives the same names")
	}
	withID := Naming{Receiver: "funnel"}.Identify(mustParse(t, []byte(`{"id":1,"event_type":"x","event_data":{}}`)), day)
	if withID.Previous != "" {
		t.Errorf("an event with an id has a previous window: %+v", withID)
	}
}

func TestEventName(t *testing.T) {
	body := []byte(`{"id":8932127,"event_type":"x","event_data":{}}`)
	name, err := EventName("funnel", body, receivedAt)
	if err != nil || name != identify(t, "funnel", string(body)).Name {
		t.Errorf("EventName = %q, %v", name, err)
	}
	if _, err := EventName("funnel", []byte(`[]`), receivedAt); err == nil {
		t.Error("EventName of a body that does not parse: no error")
	}
}

func TestDigest(t *testing.T) {
	base := `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023-03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890}}`
	digest := func(body string) string { return mustParse(t, []byte(body)).Digest() }
	want := digest(base)
	if len(want) != 64 {
		t.Fatalf("Digest %q is not hex sha256", want)
	}

	same := map[string]string{
		"whitespace":                 "{ \"id\" : \"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5\",\n \"event\":\"lease.move_in\", \"timestamp\":\"2023-03-11T14:23:56.010+00:00\",\n\"data\": {\n  \"move_in_date\": \"2023-03-11\",\n  \"charges\": [ { \"amount\": 250000, \"x\": null } ],\n  \"big\": 123456789012345678901234567890\n}\n}",
		"key order":                  `{"data":{"big":123456789012345678901234567890,"charges":[{"x":null,"amount":250000}],"move_in_date":"2023-03-11"},"timestamp":"2023-03-11T14:23:56.010+00:00","event":"lease.move_in","id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5"}`,
		"same instant, other offset": `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T09:23:56.01-05:00","data":{"move_in_date":"2023-03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890}}`,
		"escaped string":             `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023\u002d03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890}}`,
		"unknown top key":            `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023-03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890},"retry":3}`,
		"number notation":            `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023-03-11","charges":[{"amount":2.500e5,"x":null}],"big":1.23456789012345678901234567890e29}}`,
		"uuid letter case":           `{"id":"3EB29A92-E480-40EE-9A9F-61FFF5E3F3D5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023-03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890}}`,
		"type letter case":           `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"Lease.Move_In","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"2023-03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890}}`,
		"repeated key, last wins":    `{"id":"3eb29a92-e480-40ee-9a9f-61fff5e3f3d5","event":"lease.move_in","timestamp":"2023-03-11T14:23:56.010+00:00","data":{"move_in_date":"x","move_in_date":"2023-03-11","charges":[{"amount":250000,"x":null}],"big":123456789012345678901234567890}}`,
	}
	for name, body := range same {
		if got := digest(body); got != want {
			t.Errorf("%s: digest changed", name)
		}
	}

	different := map[string]string{
		"id":           strings.Replace(base, "f3d5", "f3d6", 1),
		"type":         strings.Replace(base, `"lease.move_in"`, `"lease.move_in_canceled"`, 1),
		"timestamp":    strings.Replace(base, ".010+", ".011+", 1),
		"no timestamp": strings.Replace(base, `"timestamp":"2023-03-11T14:23:56.010+00:00",`, ``, 1),
		"amount":       strings.Replace(base, "250000", "250001", 1),
		"big integer":  strings.Replace(base, "123456789012345678901234567890", "123456789012345678901234567891", 1),
		"fraction":     strings.Replace(base, "250000", "250000.5", 1),
		"null value":   strings.Replace(base, `"x":null`, `"x":false`, 1),
		"string value": strings.Replace(base, `"2023-03-11","charges"`, `"2023-03-12","charges"`, 1),
		"array order":  strings.Replace(base, `[{"amount":250000,"x":null}]`, `[{"amount":250000,"x":null},{}]`, 1),
		"key name":     strings.Replace(base, `"x":null`, `"y":null`, 1),
		"string case":  strings.Replace(base, `"2023-03-11","charges"`, `"2023-03-11 ","charges"`, 1),
	}
	for name, body := range different {
		if body == base {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if got := digest(body); got == want {
			t.Errorf("%s: digest did not change", name)
		}
	}

	classic := `{"id":1,"event_type":"x","event_timestamp":1680064028,"idempotency_key":"k","event_data":{}}`
	if digest(classic) == digest(strings.Replace(classic, `"k"`, `"j"`, 1)) {
		t.Error("idempotency key does not change the digest")
	}
	// The same fields in another format are another event.
	v3 := mustParse(t, []byte(`{"id":"1","event":"x","data":{}}`))
	v3.Format = FormatClassic
	if v3.Digest() == mustParse(t, []byte(`{"id":"1","event":"x","data":{}}`)).Digest() {
		t.Error("format does not change the digest")
	}
	var nilEnv *Envelope
	if nilEnv.Digest() != "" {
		t.Error("nil envelope has a digest")
	}
	handBuilt := &Envelope{Format: FormatV3, ID: "a", Type: "x", Data: json.RawMessage(`{bad`)}
	if d := handBuilt.Digest(); len(d) != 64 || d == (&Envelope{Format: FormatV3, ID: "a", Type: "x", Data: json.RawMessage(`{bad2`)}).Digest() {
		t.Errorf("hand-built envelope with invalid data: digest %q", d)
	}
}

func TestCanonicalJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{" {\n \"a\" : [ 1 , 2.50 , -0 , 1e400, -0.012E+3 ] } ", `{"a":[1,25e-1,0,1e400,-12]}`},
		{`{"n":123456789012345678901234567890}`, `{"n":12345678901234567890123456789e1}`},
		{`{"n":100,"m":1.0,"k":0.0001}`, `{"k":1e-4,"m":1,"n":1e2}`},
		{`{"z":{"y":null,"x":true},"a":"<&>"}`, `{"a":"<&>","z":{"x":true,"y":null}}`},
		{`{"s":"\u00e9\n\u0041\"\\\/\u0001"}`, `{"s":"é\u000aA\"\\/\u0001"}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`{"\u0062":1,"a":2,"b":3}`, `{"a":2,"b":3}`},
		{`"just a string"`, `"just a string"`},
		{`[]`, `[]`},
		{`{}`, `{}`},
		{`{"é":1,"e":2}`, `{"e":2,"é":1}`},
	}
	for _, tt := range tests {
		got, err := CanonicalJSON([]byte(tt.in))
		if err != nil {
			t.Errorf("CanonicalJSON(%s): %v", tt.in, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("CanonicalJSON(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"a":1,}`, `{} {}`, "\"\xff\"", `nul`, strings.Repeat("[", 65) + strings.Repeat("]", 65)} {
		if got, err := CanonicalJSON([]byte(bad)); err == nil {
			t.Errorf("CanonicalJSON(%q) = %s, want an error", bad, got)
		}
	}
}

// TestCanonicalStringsDecodeAsEncodingJSON: canonical strings are written straight from
// the body; they must decode escapes exactly as encoding/json does, or a retry escaped
// differently would be another event.
func TestCanonicalStringsDecodeAsEncodingJSON(t *testing.T) {
	for _, lit := range []string{
		`""`, `"plain"`, `"é"`, `"\u00e9"`, `"\/"`, `"\"\\"`, `"\b\f\n\r\t"`, `"\u0000\u001f\u0020"`,
		`"\ud83d\ude00"`, `"\ud800"`, `"\udc00"`, `"\ud800\udc00"`, `"\udc00\ud800"`, `"\ud800\u0041"`,
		`"\ud800\ud800\udc00"`, `"a\u2028b"`, `"\uFFFD"`, `"x\ud83d"`,
	} {
		var s string
		if err := json.Unmarshal([]byte(lit), &s); err != nil {
			t.Fatalf("%s: %v", lit, err)
		}
		var want strings.Builder
		want.WriteByte('"')
		for _, r := range s {
			switch {
			case r == '"' || r == '\\':
				want.WriteString(`\` + string(r))
			case r < 0x20:
				fmt.Fprintf(&want, `\u%04x`, r)
			default:
				want.WriteRune(r)
			}
		}
		want.WriteByte('"')
		got, err := CanonicalJSON([]byte(lit))
		if err != nil || string(got) != want.String() {
			t.Errorf("CanonicalJSON(%s) = %s, %v; want %s", lit, got, err, want.String())
		}
	}
}
