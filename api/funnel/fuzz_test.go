package funnel

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// subjectKeys are the only keys SubjectLabels and Details.Subjects may use.
var subjectKeys = map[string]bool{
	LabelLeaseTransactionID: true, LabelCommunityID: true, LabelUnitID: true, LabelClientID: true, LabelRenterID: true,
}

func checkSubjects(t *testing.T, what string, m map[string]string) {
	t.Helper()
	if m == nil {
		t.Errorf("%s: nil map", what)
	}
	for k, v := range m {
		if !subjectKeys[k] || v == "" || !labelValueRE.MatchString(v) || len(v) > 63 {
			t.Errorf("%s: bad label %q=%q", what, k, v)
		}
	}
}

func addSeeds(f *testing.F, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range append(exampleFiles, "bad-classic-trailing-comma.json") {
		f.Add(readTestdata(f, name))
	}
	addSeeds(f,
		[]byte(`{"id": 123456789012345678901234567890, "event_type": "x", "event_data": {"n": 9007199254740993}}`),
		[]byte(`{"id":"8CC87045-1111-4A16-A882-454044E6762A","event":"x","timestamp":"2023-03-11 14:23:56","data":{}}`),
		[]byte(`{"id":"8932127","event_type":"x","event_timestamp":1680064028123.5,"event_data":null,"idempotency_key":{"a":1}}`),
		[]byte(`{"id":5,"event":"x","timestamp":"1680064028","data":[1,{"b":2,"b":3}],"extra":"<&>"}`),
		[]byte("\xef\xbb\xbf{\"event\":\"x\",\"data\":{\"n\":1.0e-3,\"s\":\"\\u00e9\\/\"}}"),
		[]byte(`{"id":"not a uuid","event":"x","timestamp":null,"data":{"a":[{"b":null}]}}`),
		[]byte(`{"event":"renter.created","data":{},"event":"x"}`),
		[]byte(`{"event":"x","data":{"a":`+strings.Repeat("[", 70)+strings.Repeat("]", 70)+`}}`),
		[]byte("{\"event\":\"\\u0000\",\"data\":{}}"),
		[]byte(`[]`), []byte(``), []byte(`null`),
	)
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := Parse(body)
		if err != nil {
			var perr *ParseError
			if !errors.As(err, &perr) || env != nil {
				t.Fatalf("Parse error %v (%T) with envelope %v", err, err, env)
			}
			if msg := err.Error(); msg == "" || len(msg) > 512 || !utf8.ValidString(msg) {
				t.Fatalf("unusable error message %q", msg)
			}
			return
		}
		if env.Format != FormatClassic && env.Format != FormatV3 && env.Format != FormatPartnerV2 {
			t.Fatalf("format %q", env.Format)
		}
		if env.Format == FormatPartnerV2 && (env.ID != "" || env.OccurredAt != nil) {
			t.Fatalf("partner envelope with id %q or time %v", env.ID, env.OccurredAt)
		}
		if env.Type == "" || len(env.Type) > MaxTypeBytes || strings.IndexFunc(env.Type, unicode.IsControl) >= 0 {
			t.Fatalf("type %q", env.Type)
		}
		id := Naming{Receiver: "funnel"}.Identify(env, receivedAt)
		if v := VariantName(id.Name, id.Digest); !isDNSSubdomain(id.Name) || !isDNSSubdomain(v) || len(v) > 63 {
			t.Fatalf("name %q is not a short DNS-1123 subdomain", id.Name)
		}
		if env.OccurredAt != nil {
			if env.OccurredAt.Location() != time.UTC {
				t.Fatalf("OccurredAt %v not in UTC", env.OccurredAt)
			}
			if _, err := env.OccurredAt.MarshalJSON(); err != nil {
				t.Fatalf("OccurredAt cannot be written back: %v", err)
			}
		}
		if !json.Valid(env.Data) || env.Data[0] != '{' {
			t.Fatalf("Data %q is not a JSON object", env.Data)
		}
		if env.Extra != nil && (!json.Valid(env.Extra) || env.Extra[0] != '{') {
			t.Fatalf("Extra %q is not a JSON object", env.Extra)
		}
		for _, i := range env.Issues {
			if i.Field == "" || i.Reason == "" || !utf8.ValidString(i.Reason) {
				t.Fatalf("issue %+v", i)
			}
		}
		again, err := Parse(body)
		if err != nil || again.Digest() != id.Digest || len(id.Digest) != 64 {
			t.Fatalf("Digest is not stable: %q, %v", id.Digest, err)
		}
		if v := LabelValue(env.Type); len(v) > 63 || !labelValueRE.MatchString(v) || v == "" {
			t.Fatalf("LabelValue(%q) = %q", env.Type, v)
		}
		checkSubjects(t, "SubjectLabels", SubjectLabels(env.Type, env.Data))
		checkSubjects(t, "Subjects", Lookup(env.Type).Decode(env.Data).Subjects)

		// Any re-serialisation of an accepted body is the same event: another key order,
		// whitespace and string escaping (encoding/json's), numbers kept as text.
		for i, re := range reserialise(t, body) {
			env2, err := Parse(re)
			if err != nil {
				t.Fatalf("re-serialisation %d is refused: %v\n%s\n%s", i, err, body, re)
			}
			if id2 := (Naming{Receiver: "funnel"}).Identify(env2, receivedAt); id2 != id {
				t.Fatalf("re-serialisation %d is another event: %+v, want %+v\n%s\n%s", i, id2, id, body, re)
			}
		}
	})
}

// reserialise decodes body as a generic JSON value and encodes it again in three ways:
// compact with HTML escaping, compact without it, and indented. Keys come out sorted. It
// returns nothing for bodies that cannot be re-encoded faithfully: unpaired surrogate
// escapes decode to U+FFFD, which changes the content.
func reserialise(t *testing.T, body []byte) [][]byte {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimPrefix(body, utf8BOM)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	compact, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	if bytes.ContainsRune(compact, utf8.RuneError) {
		return nil
	}
	var plain bytes.Buffer
	enc := json.NewEncoder(&plain)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("re-encoding: %v", err)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, compact, "", "\t"); err != nil {
		t.Fatalf("indenting: %v", err)
	}
	return [][]byte{compact, plain.Bytes(), indented.Bytes()}
}

func FuzzDecode(f *testing.F) {
	for _, name := range exampleFiles {
		env, err := Parse(readTestdata(f, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(env.Data))
	}
	addSeeds(f,
		[]byte(`{"lease_transaction_id":"1","client_id":-1,"unit_id":1.5,"community_id":null}`),
		[]byte(`{"charges":[null,{"amount":"1"},{"amount":99999999999999999999999999,"charge_type":"Monthly"}],"move_in_date":"2023-02-29","pms_identifier":"x"}`),
		[]byte(`{"people":[{"sms_opt_in":"yes"}],"layouts":[1],"funnel_renter_id":1}`),
		[]byte(`{"status":"maybe","funnel_renter_id":1,"funnel_tour_id":2,"start":"2021-08-01 25:00"}`),
		[]byte(`{"a":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}`),
		[]byte(`[]`), []byte(`null`), []byte(``), []byte("{\"a\":\"\xff\"}"),
	)
	types := append(KnownTypes(), "unknown.type", "")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range types {
			d := Lookup(typ).Decode(data)
			for _, i := range d.Issues {
				if !strings.HasPrefix(i.Field, "data") || i.Reason == "" || !utf8.ValidString(i.Reason) {
					t.Fatalf("%s: issue %+v", typ, i)
				}
			}
			if n := utf8.RuneCountInString(d.Summary); n == 0 || n > MaxSummaryRunes {
				t.Fatalf("%s: summary of %d runes: %q", typ, n, d.Summary)
			}
			if strings.IndexFunc(d.Summary, unicode.IsControl) >= 0 {
				t.Fatalf("%s: summary %q is not one line", typ, d.Summary)
			}
			checkSubjects(t, typ+" Subjects", d.Subjects)
		}
		if canonical, err := CanonicalJSON(data); err == nil {
			if twice, err := CanonicalJSON(canonical); err != nil || !bytes.Equal(twice, canonical) {
				t.Fatalf("CanonicalJSON is not idempotent: %s then %s (%v)", canonical, twice, err)
			}
		}
	})
}
