package funnel

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestObjectName(t *testing.T) {
	partnerBody := []byte(`{"event":"renter.created","data":{"funnel_renter_id":1}}`)
	tests := []struct {
		name string
		env  *Envelope
		body []byte
		want string
	}{
		{"classic", &Envelope{Format: FormatClassic, ID: "8932127"}, nil, "evt-8932127"},
		{"classic zero", &Envelope{Format: FormatClassic, ID: "0"}, nil, "evt-0"},
		{"v3 uuid upper case", &Envelope{Format: FormatV3, ID: "8CC87045-1111-4A16-A882-454044E6762A"}, nil, "evt-8cc87045-1111-4a16-a882-454044e6762a"},
		{"v3 non-uuid", &Envelope{Format: FormatV3, ID: "Event #42"}, nil, "evt-v3-" + sha256Hex32([]byte("Event #42"))},
		{"v3 digits are hashed, never merged with classic", &Envelope{Format: FormatV3, ID: "8932127"}, nil, "evt-v3-" + sha256Hex32([]byte("8932127"))},
		{"v3 uuid without hyphens is hashed", &Envelope{Format: FormatV3, ID: "8cc8704511114a16a882454044e6762a"}, nil, "evt-v3-" + sha256Hex32([]byte("8cc8704511114a16a882454044e6762a"))},
		{"v3 uuid with non-hex is hashed", &Envelope{Format: FormatV3, ID: "8cc87045-1111-4a16-a882-454044e6762g"}, nil, "evt-v3-" + sha256Hex32([]byte("8cc87045-1111-4a16-a882-454044e6762g"))},
		{"partner", &Envelope{Format: FormatPartnerV2}, partnerBody, "evt-p-" + sha256Hex32(partnerBody)},
		{"hand-built classic with a bad id", &Envelope{Format: FormatClassic, ID: "-1"}, nil, "evt-c-" + sha256Hex32([]byte("-1"))},
		{"nil", nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.env.ObjectName(tt.body)
			if got != tt.want {
				t.Errorf("ObjectName = %q, want %q", got, tt.want)
			}
			if tt.env != nil && !isDNSSubdomain(got) {
				t.Errorf("ObjectName %q is not a DNS-1123 subdomain", got)
			}
		})
	}
}

func TestObjectNameDistinguishesPartnerBodies(t *testing.T) {
	a := []byte(`{"event":"renter.status-change","data":{"funnel_renter_id":1,"status":"Applicant"}}`)
	b := []byte(`{"event":"renter.status-change","data":{"funnel_renter_id":1,"status":"Resident"}}`)
	if mustParse(t, a).ObjectName(a) == mustParse(t, b).ObjectName(b) {
		t.Error("two different Partner v2 bodies share an object name")
	}
	if mustParse(t, a).ObjectName(a) != mustParse(t, a).ObjectName(a) {
		t.Error("ObjectName is not deterministic")
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
		"number text":  strings.Replace(base, "250000", "250000.0", 1),
		"null value":   strings.Replace(base, `"x":null`, `"x":false`, 1),
		"string value": strings.Replace(base, `"2023-03-11","charges"`, `"2023-03-12","charges"`, 1),
		"array order":  strings.Replace(base, `[{"amount":250000,"x":null}]`, `[{"amount":250000,"x":null},{}]`, 1),
		"key name":     strings.Replace(base, `"x":null`, `"y":null`, 1),
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
	tm := time.Unix(1680064028, 0)
	withTime := &Envelope{Format: FormatV3, ID: "a", Type: "x", OccurredAt: &tm, Data: json.RawMessage(`{}`)}
	if withTime.Digest() == (&Envelope{Format: FormatV3, ID: "a", Type: "x", Data: json.RawMessage(`{}`)}).Digest() {
		t.Error("occurredAt does not change the digest")
	}
}

func TestCanonicalJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{" {\n \"a\" : [ 1 , 2.50 , -0 , 1e400 ] } ", `{"a":[1,2.50,-0,1e400]}`},
		{`{"n":123456789012345678901234567890}`, `{"n":123456789012345678901234567890}`},
		{`{"z":{"y":null,"x":true},"a":"<&>"}`, `{"a":"<&>","z":{"x":true,"y":null}}`},
		{`{"s":"\u00e9\n\u0041"}`, `{"s":"é\nA"}`},
		{`"just a string"`, `"just a string"`},
		{`[]`, `[]`},
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
	for _, bad := range []string{``, `{`, `{"a":1,}`, `{} {}`, "\"\xff\"", `nul`} {
		if got, err := CanonicalJSON([]byte(bad)); err == nil {
			t.Errorf("CanonicalJSON(%q) = %s, want an error", bad, got)
		}
	}
}
