package funnel

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseExamples(t *testing.T) {
	tests := []struct {
		file       string
		format     Format
		id         string
		typ        string
		occurredAt string // RFC 3339 with nanoseconds, "" for none
		namePrefix string // the event name for receiver "funnel" starts so
	}{
		{"classic-lease_transaction.status_updated.json", FormatClassic, "8932127", "lease_transaction.status_updated", "2023-03-29T04:27:08Z", "evt-8932127-"},
		{"v3-lease_transaction.unit_reserved.json", FormatV3, "8cc87045-1111-4a16-a882-454044e6762a", "lease_transaction.unit_reserved", "2024-10-09T13:49:31.658518Z", "evt-8cc87045-1111-4a16-a882-454044e6762a-"},
		{"v3-lease.move_in.json", FormatV3, "3eb29a92-e480-40ee-9a9f-61fff5e3f3d5", "lease.move_in", "2023-03-11T14:23:56.01Z", "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d5-"},
		{"v3-lease.move_in_canceled.json", FormatV3, "3eb29a92-e480-40ee-9a9f-61fff5e3f3d6", "lease.move_in_canceled", "2023-03-11T14:23:56.01Z", "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d6-"},
		{"partner-renter.created.json", FormatPartnerV2, "", "renter.created", "", "evt-p-"},
		{"partner-renter.status-change.json", FormatPartnerV2, "", "renter.status-change", "", "evt-p-"},
		{"partner-appointment.updated.json", FormatPartnerV2, "", "appointment.updated", "", "evt-p-"},
	}
	if len(tests) != len(exampleFiles) {
		t.Fatalf("%d cases for %d example files", len(tests), len(exampleFiles))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body := readTestdata(t, tt.file)
			env := mustParse(t, body)
			if env.Format != tt.format || env.ID != tt.id || env.Type != tt.typ {
				t.Errorf("got format %q id %q type %q, want %q %q %q", env.Format, env.ID, env.Type, tt.format, tt.id, tt.typ)
			}
			switch {
			case tt.occurredAt == "" && env.OccurredAt != nil:
				t.Errorf("OccurredAt = %v, want nil", env.OccurredAt)
			case tt.occurredAt != "":
				want, err := time.Parse(time.RFC3339Nano, tt.occurredAt)
				if err != nil {
					t.Fatal(err)
				}
				if env.OccurredAt == nil || !env.OccurredAt.Equal(want) || env.OccurredAt.Location() != time.UTC {
					t.Errorf("OccurredAt = %v, want %v in UTC", env.OccurredAt, want)
				}
			}
			if env.IdempotencyKey != "" {
				t.Errorf("IdempotencyKey = %q, want empty (null in the example)", env.IdempotencyKey)
			}
			if want := dataOfExample(t, body); !bytes.Equal(env.Data, want) {
				t.Errorf("Data is not verbatim:\n got %s\nwant %s", env.Data, want)
			}
			if len(env.Issues) != 0 || env.Extra != nil {
				t.Errorf("a documented example has issues %v or extra fields %s", env.Issues, env.Extra)
			}
			name := Naming{Receiver: "funnel"}.Identify(env, time.Now()).Name
			if !strings.HasPrefix(name, tt.namePrefix) || !isDNSSubdomain(name) || len(name) > 63 {
				t.Errorf("name %q, want a short DNS subdomain starting %q", name, tt.namePrefix)
			}
		})
	}
}

func TestParseKeepsPrecision(t *testing.T) {
	t.Run("classic id above 2^64", func(t *testing.T) {
		env := mustParse(t, []byte(`{"id": 123456789012345678901234567890, "event_type": "x.y", "event_data": {}}`))
		if env.ID != "123456789012345678901234567890" {
			t.Errorf("ID = %q", env.ID)
		}
		if name := (Naming{Receiver: "r"}).Identify(env, time.Now()).Name; !strings.HasPrefix(name, "evt-i-") {
			t.Errorf("name = %q", name)
		}
	})
	t.Run("microseconds", func(t *testing.T) {
		env := mustParse(t, []byte(`{"id":"a","event":"x","timestamp":"2024-10-09T13:49:31.658518+00:00","data":{}}`))
		if env.OccurredAt.Nanosecond() != 658518000 {
			t.Errorf("nanoseconds = %d", env.OccurredAt.Nanosecond())
		}
	})
	t.Run("data verbatim with big integers and odd spacing", func(t *testing.T) {
		data := "{ \"lease_transaction_id\" :  9007199254740993,\n\t\"amount\": 1.50e+2, \"n\": 123456789012345678901234567890 ,\"s\":\"\\u00e9\" }"
		env := mustParse(t, []byte(`{"id": 1, "event_type": "x", "event_data": `+data+` , "extra": [1]}`))
		if string(env.Data) != data {
			t.Errorf("Data = %s, want %s", env.Data, data)
		}
		if string(env.Extra) != `{"extra":[1]}` {
			t.Errorf("Extra = %s", env.Extra)
		}
	})
}

// issue is what a lenient case must record: the field and whether it is invalid.
type issue struct {
	field   string
	invalid bool
}

func TestParseLenient(t *testing.T) {
	at := func(s string) *time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return &tm
	}
	const when = "2023-03-29T04:27:08Z"
	classic := func(id, ts string) string {
		return `{"id":` + id + `,"event_type":"lease_transaction.status_updated","event_timestamp":` + ts + `,"event_data":{"a":1}}`
	}
	tests := []struct {
		name     string
		body     string
		format   Format
		id       string
		occurred *time.Time
		data     string
		issues   []issue
	}{
		{"documented classic", classic("8932127", "1680064028"), FormatClassic, "8932127", at(when), `{"a":1}`, nil},
		{"byte order mark", "\xef\xbb\xbf" + classic("1", "1680064028"), FormatClassic, "1", at(when), `{"a":1}`, nil},
		{"epoch seconds with a fraction", classic("1", "1680064028.5"), FormatClassic, "1", at("2023-03-29T04:27:08.5Z"), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"epoch milliseconds", classic("1", "1680064028123"), FormatClassic, "1", at("2023-03-29T04:27:08.123Z"), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"epoch microseconds", classic("1", "1680064028123456"), FormatClassic, "1", at("2023-03-29T04:27:08.123456Z"), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"epoch nanoseconds", classic("1", "1680064028123456789"), FormatClassic, "1", at("2023-03-29T04:27:08.123456789Z"), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"epoch seconds in exponent notation", classic("1", "1.680064028e9"), FormatClassic, "1", at(when), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"epoch seconds as a string", classic("1", `"1680064028"`), FormatClassic, "1", at(when), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"ISO-8601 in a classic envelope", classic("1", `"2023-03-29T06:27:08+02:00"`), FormatClassic, "1", at(when), `{"a":1}`, []issue{{"event_timestamp", false}}},
		{"classic timestamp null", classic("1", "null"), FormatClassic, "1", nil, `{"a":1}`, []issue{{"event_timestamp", true}}},
		{"classic timestamp absent", `{"id":1,"event_type":"x","event_data":{}}`, FormatClassic, "1", nil, `{}`, []issue{{"event_timestamp", true}}},
		{"classic timestamp unreadable", classic("1", `"soon"`), FormatClassic, "1", nil, `{"a":1}`, []issue{{"event_timestamp", true}}},
		{"classic timestamp out of range", classic("1", "1e30"), FormatClassic, "1", nil, `{"a":1}`, []issue{{"event_timestamp", true}}},
		{"classic timestamp with a huge exponent", classic("1", "1e999999999"), FormatClassic, "1", nil, `{"a":1}`, []issue{{"event_timestamp", true}}},
		{"classic id as a numeric string", classic(`"8932127"`, "1680064028"), FormatClassic, "8932127", at(when), `{"a":1}`, []issue{{"id", false}}},
		{"classic id as a string with leading zeros", classic(`"007"`, "1680064028"), FormatClassic, "7", at(when), `{"a":1}`, []issue{{"id", false}}},
		{"classic id not an integer", classic("1.50", "1680064028"), FormatClassic, "15e-1", at(when), `{"a":1}`, []issue{{"id", false}}},
		{"classic id a UUID string", classic(`"8CC87045-1111-4A16-A882-454044E6762A"`, "1680064028"), FormatClassic, "8CC87045-1111-4A16-A882-454044E6762A", at(when), `{"a":1}`, []issue{{"id", false}}},
		{"classic id null", classic("null", "1680064028"), FormatClassic, "", at(when), `{"a":1}`, []issue{{"id", true}}},
		{"classic id missing", `{"event_type":"x","event_timestamp":1680064028,"event_data":{}}`, FormatClassic, "", at(when), `{}`, []issue{{"id", true}}},
		{"classic id an object", classic(`{"n":1}`, "1680064028"), FormatClassic, "", at(when), `{"a":1}`, []issue{{"id", true}}},
		{"classic data null", `{"id":1,"event_type":"x","event_timestamp":1680064028,"event_data":null}`, FormatClassic, "1", at(when), `{}`, []issue{{"event_data", true}}},
		{"classic data absent", `{"id":1,"event_type":"x","event_timestamp":1680064028}`, FormatClassic, "1", at(when), `{}`, []issue{{"event_data", true}}},
		{"classic data an array", `{"id":1,"event_type":"x","event_timestamp":1680064028,"event_data":[1, 2]}`, FormatClassic, "1", at(when), `{"value":[1, 2]}`, []issue{{"event_data", true}}},
		{"v3 timestamp as epoch seconds", `{"id":"a","event":"x","timestamp":1680064028,"data":{}}`, FormatV3, "a", at(when), `{}`, []issue{{"timestamp", false}}},
		{"v3 timestamp unreadable", `{"id":"a","event":"x","timestamp":"yesterday","data":{}}`, FormatV3, "a", nil, `{}`, []issue{{"timestamp", false}}},
		{"v3 timestamp null", `{"id":"a","event":"x","timestamp":null,"data":{}}`, FormatV3, "a", nil, `{}`, nil},
		{"v3 timestamp without zone", `{"id":"a","event":"x","timestamp":"2021-08-01 15:00:00","data":{}}`, FormatV3, "a", at("2021-08-01T15:00:00Z"), `{}`, nil},
		{"v3 id a number", `{"id":5,"event":"x","data":{}}`, FormatV3, "5", nil, `{}`, []issue{{"id", false}}},
		{"v3 id null", `{"id":null,"event":"x","data":{}}`, FormatV3, "", nil, `{}`, []issue{{"id", false}}},
		{"v3 id empty", `{"id":"","event":"x","data":{}}`, FormatV3, "", nil, `{}`, []issue{{"id", false}}},
		{"v3 id longer than a name", `{"id":"` + strings.Repeat("a", 300) + `","event":"x","data":{}}`, FormatV3, strings.Repeat("a", 300), nil, `{}`, nil},
		{"v3 id with an unpaired surrogate", `{"id":"a\ud800","event":"x","data":{}}`, FormatV3, `a\ud800`, nil, `{}`, []issue{{"id", false}}},
		{"v3 data null", `{"id":"a","event":"x","data":null}`, FormatV3, "a", nil, `{}`, []issue{{"data", false}}},
		{"v3 data a string", `{"id":"a","event":"x","data":"{}"}`, FormatV3, "a", nil, `{"value":"{}"}`, []issue{{"data", true}}},
		{"partner data absent", `{"event":"renter.created"}`, FormatPartnerV2, "", nil, `{}`, []issue{{"data", false}}},
		{"partner ignores timestamp", `{"event":"renter.created","timestamp":"garbage","data":{}}`, FormatPartnerV2, "", nil, `{}`, nil},
		{"a repeated key: the last wins", `{"event":"x","event":"renter.created","data":{}}`, FormatPartnerV2, "", nil, `{}`, []issue{{"event", false}}},
		{"classic wins over event", `{"id":1,"event_type":"a","event":"b","event_timestamp":1680064028,"event_data":{}}`, FormatClassic, "1", at(when), `{}`, nil},
		{"nesting of exactly 64", `{"event":"x","data":{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}`, FormatPartnerV2, "", nil, `{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := mustParse(t, []byte(tt.body))
			if env.Format != tt.format || env.ID != tt.id {
				t.Errorf("format %q id %q, want %q %q", env.Format, env.ID, tt.format, tt.id)
			}
			switch {
			case tt.occurred == nil && env.OccurredAt != nil:
				t.Errorf("OccurredAt = %v, want none", env.OccurredAt)
			case tt.occurred != nil && (env.OccurredAt == nil || !env.OccurredAt.Equal(*tt.occurred)):
				t.Errorf("OccurredAt = %v, want %v", env.OccurredAt, tt.occurred)
			}
			if string(env.Data) != tt.data {
				t.Errorf("Data = %s, want %s", env.Data, tt.data)
			}
			var got []issue
			for _, i := range env.Issues {
				got = append(got, issue{i.Field, i.Invalid})
				if i.Reason == "" {
					t.Errorf("issue %q without a reason", i.Field)
				}
			}
			if !slices.Equal(got, tt.issues) {
				t.Errorf("issues %v, want %v", env.Issues, tt.issues)
			}
		})
	}
}

func TestParseKeepsTheRest(t *testing.T) {
	long := strings.Repeat("k", 600)
	env := mustParse(t, []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":"`+long+`","event_data":{},"attempt":2,"sent_at":"now"}`))
	if env.IdempotencyKey != long {
		t.Errorf("long idempotency key not kept whole: %d bytes", len(env.IdempotencyKey))
	}
	if string(env.Extra) != `{"attempt":2,"sent_at":"now"}` {
		t.Errorf("Extra = %s", env.Extra)
	}
	env = mustParse(t, []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":{"b":1, "a":[true]},"event_data":{}}`))
	if env.IdempotencyKey != `{"a":[true],"b":1}` || len(env.Issues) != 1 || env.Issues[0].Field != "idempotency_key" {
		t.Errorf("object idempotency key: %q, issues %v", env.IdempotencyKey, env.Issues)
	}
	env = mustParse(t, []byte(`{"id":1,"event_type":"x","event_timestamp":1,"idempotency_key":12345678901234567890,"event_data":{}}`))
	if env.IdempotencyKey != "12345678901234567890" {
		t.Errorf("number idempotency key: %q", env.IdempotencyKey)
	}
}

func TestParseErrors(t *testing.T) {
	deep := `{"event":"x","data":{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}`
	tests := []struct {
		name    string
		body    string
		want    string
		notJSON bool
	}{
		{"empty", ``, "body is empty", false},
		{"whitespace only", " \n\t ", "body is empty", false},
		{"invalid JSON", `{"event":`, "invalid JSON", true},
		{"trailing comma in object", `{"event":"x","data":{},}`, "invalid JSON at byte", true},
		{"trailing comma in data", `{"event":"x","data":{"a":1,}}`, "invalid JSON", true},
		{"trailing garbage", `{"event":"x","data":{}} x`, "after top-level value", true},
		{"two values", `{"event":"x","data":{}}{}`, "invalid JSON", true},
		{"single quotes", `{'event':'x'}`, "invalid JSON", true},
		{"a form", `payload=%7B%22event%22%7D`, "invalid JSON", true},
		{"invalid UTF-8 in string", "{\"event\":\"x\xff\",\"data\":{}}", "not valid UTF-8 (bad byte at offset 11)", true},
		{"invalid UTF-8 in data", "{\"event\":\"x\",\"data\":{\"a\":\"\xc3\x28\"}}", "not valid UTF-8", true},
		{"array", `[{"event":"x","data":{}}]`, "must be an object, got array", false},
		{"string", `"event"`, "must be an object, got string", false},
		{"null", `null`, "must be an object, got null", false},
		{"number", `42`, "must be an object, got number", false},
		{"empty object", `{}`, "no recognisable envelope", false},
		{"unrelated object", `{"type":"x","payload":{}}`, "no recognisable envelope", false},
		{"nesting too deep", deep, "deeper than 64", false},
		{"nesting far too deep", strings.Repeat("[", 100000), "deeper than 64", false},
		{"classic type missing", `{"id":1,"event_data":{}}`, `classic envelope: "event_type" is missing`, false},
		{"classic type empty", `{"id":1,"event_type":"","event_data":{}}`, `"event_type" must not be empty`, false},
		{"classic type number", `{"id":1,"event_type":7,"event_data":{}}`, `"event_type" must be a non-empty string, got number`, false},
		{"classic type null", `{"id":1,"event_type":null,"event_data":{}}`, `got null`, false},
		{"type too long", `{"id":1,"event_type":"` + strings.Repeat("a", 254) + `","event_data":{}}`, `is 254 bytes long, at most 253 allowed`, false},
		{"type with newline", `{"id":1,"event_type":"a\nb","event_data":{}}`, `must not contain control characters`, false},
		{"type with U+FFFD", "{\"event\":\"a\uFFFDb\",\"data\":{}}", `"event" must not contain U+FFFD`, false},
		{"type with an unpaired surrogate", `{"event":"a\udc00","data":{}}`, `"event" must not contain U+FFFD`, false},
		{"type with NUL", `{"event":"a\u0000b","data":{}}`, `must not contain control characters`, false},
		{"v3 event empty", `{"id":"a","event":"","data":{}}`, `v3 envelope: "event" must not be empty`, false},
		{"partner event number", `{"event":1,"data":{}}`, `partner v2 envelope: "event" must be a non-empty string, got number`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := Parse([]byte(tt.body))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", env)
			}
			var perr *ParseError
			if !errors.As(err, &perr) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if perr.NotJSON != tt.notJSON {
				t.Errorf("NotJSON = %v, want %v", perr.NotJSON, tt.notJSON)
			}
			if env != nil {
				t.Errorf("envelope returned with error: %+v", env)
			}
		})
	}
}

func TestParseDocumentedTrailingComma(t *testing.T) {
	_, err := Parse(readTestdata(t, "bad-classic-trailing-comma.json"))
	if err == nil || !strings.Contains(err.Error(), "invalid JSON") || !strings.Contains(err.Error(), "looking for beginning of object key string") {
		t.Fatalf("Parse = %v, want an invalid JSON error about the trailing comma", err)
	}
}

func TestParseErrorMessage(t *testing.T) {
	tests := []struct {
		err  ParseError
		want string
	}{
		{ParseError{Format: FormatClassic, Field: "id", Reason: "must be a non-negative integer, got string"}, `classic envelope: "id" must be a non-negative integer, got string`},
		{ParseError{Format: FormatV3, Field: "data", Reason: "is missing"}, `v3 envelope: "data" is missing`},
		{ParseError{Format: FormatPartnerV2, Field: "event", Reason: "is missing"}, `partner v2 envelope: "event" is missing`},
		{ParseError{Reason: "body is empty"}, `body is empty`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}
