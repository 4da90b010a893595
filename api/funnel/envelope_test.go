package funnel

import (
	"bytes"
	"errors"
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
		objectName string // "" for PartnerV2: checked against the body hash
	}{
		{"classic-lease_transaction.status_updated.json", FormatClassic, "8932127", "lease_transaction.status_updated", "2023-03-29T04:27:08Z", "evt-8932127"},
		{"v3-lease_transaction.unit_reserved.json", FormatV3, "8cc87045-1111-4a16-a882-454044e6762a", "lease_transaction.unit_reserved", "2024-10-09T13:49:31.658518Z", "evt-8cc87045-1111-4a16-a882-454044e6762a"},
		{"v3-lease.move_in.json", FormatV3, "3eb29a92-e480-40ee-9a9f-61fff5e3f3d5", "lease.move_in", "2023-03-11T14:23:56.01Z", "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d5"},
		{"v3-lease.move_in_canceled.json", FormatV3, "3eb29a92-e480-40ee-9a9f-61fff5e3f3d6", "lease.move_in_canceled", "2023-03-11T14:23:56.01Z", "evt-3eb29a92-e480-40ee-9a9f-61fff5e3f3d6"},
		{"partner-renter.created.json", FormatPartnerV2, "", "renter.created", "", ""},
		{"partner-renter.status-change.json", FormatPartnerV2, "", "renter.status-change", "", ""},
		{"partner-appointment.updated.json", FormatPartnerV2, "", "appointment.updated", "", ""},
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
			wantName := tt.objectName
			if tt.format == FormatPartnerV2 {
				wantName = "evt-p-" + sha256Hex32(body)
			}
			if got := env.ObjectName(body); got != wantName {
				t.Errorf("ObjectName = %q, want %q", got, wantName)
			}
		})
	}
}

func TestParseKeepsPrecision(t *testing.T) {
	t.Run("classic id above 2^64", func(t *testing.T) {
		body := []byte(`{"id": 123456789012345678901234567890, "event_type": "x.y", "event_data": {}}`)
		env := mustParse(t, body)
		if env.ID != "123456789012345678901234567890" {
			t.Errorf("ID = %q", env.ID)
		}
		if got := env.ObjectName(body); got != "evt-123456789012345678901234567890" {
			t.Errorf("ObjectName = %q", got)
		}
	})
	t.Run("40-digit classic id", func(t *testing.T) {
		id := strings.Repeat("9", 40)
		body := []byte(`{"id":` + id + `,"event_type":"x","event_data":{}}`)
		env := mustParse(t, body)
		if name := env.ObjectName(body); name != "evt-"+id || !isDNSSubdomain(name) {
			t.Errorf("ObjectName = %q", name)
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
	})
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		check  func(*Envelope) bool
		reason string
	}{
		{"unknown fields and type", `{"id":1,"event_type":"brand.new","event_data":{"a":1},"future":{"x":[]}}`,
			func(e *Envelope) bool { return e.Type == "brand.new" }, "type kept"},
		{"classic timestamp null", `{"id":1,"event_type":"x","event_timestamp":null,"event_data":{}}`,
			func(e *Envelope) bool { return e.OccurredAt == nil }, "OccurredAt nil"},
		{"classic timestamp absent", `{"id":1,"event_type":"x","event_data":{}}`,
			func(e *Envelope) bool { return e.OccurredAt == nil }, "OccurredAt nil"},
		{"classic id zero", `{"id":0,"event_type":"x","event_data":{}}`,
			func(e *Envelope) bool { return e.ID == "0" }, "ID 0"},
		{"idempotency key string", `{"id":1,"event_type":"x","idempotency_key":"k-1","event_data":{}}`,
			func(e *Envelope) bool { return e.IdempotencyKey == "k-1" }, "key kept"},
		{"idempotency key number kept as text", `{"id":1,"event_type":"x","idempotency_key":12345678901234567890,"event_data":{}}`,
			func(e *Envelope) bool { return e.IdempotencyKey == "12345678901234567890" }, "key digits kept"},
		{"v3 timestamp null", `{"id":"a","event":"x","timestamp":null,"data":{}}`,
			func(e *Envelope) bool { return e.Format == FormatV3 && e.OccurredAt == nil }, "V3 without time"},
		{"v3 timestamp without zone", `{"id":"a","event":"x","timestamp":"2021-08-01 15:00:00","data":{}}`,
			func(e *Envelope) bool { return e.OccurredAt.Equal(time.Date(2021, 8, 1, 15, 0, 0, 0, time.UTC)) }, "UTC"},
		{"v3 timestamp offset", `{"id":"a","event":"x","timestamp":"2023-03-11T09:23:56-05:00","data":{}}`,
			func(e *Envelope) bool { return e.OccurredAt.Equal(time.Date(2023, 3, 11, 14, 23, 56, 0, time.UTC)) }, "converted to UTC"},
		{"classic wins over event", `{"id":1,"event_type":"a","event":"b","event_data":{}}`,
			func(e *Envelope) bool { return e.Format == FormatClassic && e.Type == "a" }, "classic"},
		{"partner ignores timestamp", `{"event":"renter.created","timestamp":"garbage","data":{}}`,
			func(e *Envelope) bool { return e.Format == FormatPartnerV2 && e.OccurredAt == nil }, "partner"},
		{"escaped type", `{"event":"renter\u002ecreated","data":{}}`,
			func(e *Envelope) bool { return e.Type == "renter.created" }, "unescaped"},
		{"surrounding whitespace", " \n\t{\"event\":\"x\",\"data\":{}}\r\n ",
			func(e *Envelope) bool { return e.Type == "x" }, "parsed"},
		{"type of exactly 253 bytes", `{"event":"` + strings.Repeat("a", 253) + `","data":{}}`,
			func(e *Envelope) bool { return len(e.Type) == 253 }, "kept"},
		{"array data at depth 64 fails on its kind, not its depth", `{"event":"x","data":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`,
			nil, "not data object"},
		{"nesting of exactly 64", `{"event":"x","data":{"a":` + strings.Repeat("[", 62) + strings.Repeat("]", 62) + `}}`,
			func(e *Envelope) bool { return len(e.Data) > 0 }, "accepted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := Parse([]byte(tt.body))
			if tt.check == nil {
				// Used where only the depth limit is of interest: the error
				// must not be the depth error.
				if err == nil || strings.Contains(err.Error(), "nesting") {
					t.Fatalf("Parse: %v, want an error other than nesting", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tt.check(env) {
				t.Errorf("%s: got %+v", tt.reason, env)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	deep := `{"event":"x","data":{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}}`
	tests := []struct {
		name string
		body string
		want string
	}{
		{"empty", ``, "body is empty"},
		{"whitespace only", " \n\t ", "body is empty"},
		{"invalid JSON", `{"event":`, "invalid JSON"},
		{"trailing comma in object", `{"event":"x","data":{},}`, "invalid JSON at byte"},
		{"trailing comma in data", `{"event":"x","data":{"a":1,}}`, "invalid JSON"},
		{"trailing garbage", `{"event":"x","data":{}} x`, "after top-level value"},
		{"two values", `{"event":"x","data":{}}{}`, "invalid JSON"},
		{"single quotes", `{'event':'x'}`, "invalid JSON"},
		{"invalid UTF-8 in string", "{\"event\":\"x\xff\",\"data\":{}}", "not valid UTF-8 (bad byte at offset 11)"},
		{"invalid UTF-8 in data", "{\"event\":\"x\",\"data\":{\"a\":\"\xc3\x28\"}}", "not valid UTF-8"},
		{"byte order mark", "\xef\xbb\xbf{\"event\":\"x\",\"data\":{}}", "invalid JSON"},
		{"array", `[{"event":"x","data":{}}]`, "must be an object, got array"},
		{"string", `"event"`, "must be an object, got string"},
		{"null", `null`, "must be an object, got null"},
		{"number", `42`, "must be an object, got number"},
		{"empty object", `{}`, "no recognisable envelope"},
		{"unrelated object", `{"type":"x","payload":{}}`, "no recognisable envelope"},
		{"nesting too deep", deep, "deeper than 64"},
		{"nesting far too deep", strings.Repeat("[", 100000), "deeper than 64"},
		{"duplicate key", `{"event":"x","event":"y","data":{}}`, `"event" appears more than once`},
		{"classic id missing", `{"event_type":"x","event_data":{}}`, `classic envelope: "id" is missing`},
		{"classic id string", `{"id":"8932127","event_type":"x","event_data":{}}`, `classic envelope: "id" must be a non-negative integer, got string`},
		{"classic id null", `{"id":null,"event_type":"x","event_data":{}}`, `"id" must be a non-negative integer, got null`},
		{"classic id fraction", `{"id":1.5,"event_type":"x","event_data":{}}`, `"id" must be a non-negative integer, got 1.5`},
		{"classic id exponent", `{"id":1e3,"event_type":"x","event_data":{}}`, `got 1e3`},
		{"classic id negative", `{"id":-1,"event_type":"x","event_data":{}}`, `got -1`},
		{"classic id 41 digits", `{"id":` + strings.Repeat("1", 41) + `,"event_type":"x","event_data":{}}`, `"id" must have at most 40 digits, got 41`},
		{"classic type missing", `{"id":1,"event_data":{}}`, `classic envelope: "event_type" is missing`},
		{"classic type empty", `{"id":1,"event_type":"","event_data":{}}`, `"event_type" must not be empty`},
		{"classic type number", `{"id":1,"event_type":7,"event_data":{}}`, `"event_type" must be a non-empty string, got number`},
		{"classic type null", `{"id":1,"event_type":null,"event_data":{}}`, `got null`},
		{"type too long", `{"id":1,"event_type":"` + strings.Repeat("a", 254) + `","event_data":{}}`, `is 254 bytes long, at most 253 allowed`},
		{"type with newline", `{"id":1,"event_type":"a\nb","event_data":{}}`, `must not contain control characters`},
		{"v3 id with an unpaired surrogate", `{"id":"a\ud800","event":"x","data":{}}`, `v3 envelope: "id" must not contain U+FFFD or unpaired surrogate escapes`},
		{"type with U+FFFD", "{\"event\":\"a\uFFFDb\",\"data\":{}}", `"event" must not contain U+FFFD`},
		{"type with NUL", `{"event":"a\u0000b","data":{}}`, `must not contain control characters`},
		{"classic timestamp string", `{"id":1,"event_type":"x","event_timestamp":"1680064028","event_data":{}}`, `"event_timestamp" must be an integer number of epoch seconds or null, got string`},
		{"classic timestamp fraction", `{"id":1,"event_type":"x","event_timestamp":1680064028.5,"event_data":{}}`, `got 1680064028.5`},
		{"classic timestamp negative", `{"id":1,"event_type":"x","event_timestamp":-1,"event_data":{}}`, `"event_timestamp" -1 is out of range`},
		{"classic timestamp huge", `{"id":1,"event_type":"x","event_timestamp":99999999999999999999,"event_data":{}}`, `is out of range`},
		{"idempotency key object", `{"id":1,"event_type":"x","idempotency_key":{},"event_data":{}}`, `"idempotency_key" must be a string or null, got object`},
		{"classic data missing", `{"id":1,"event_type":"x"}`, `classic envelope: "event_data" is missing`},
		{"classic data null", `{"id":1,"event_type":"x","event_data":null}`, `"event_data" must be an object, got null`},
		{"classic data array", `{"id":1,"event_type":"x","event_data":[]}`, `"event_data" must be an object, got array`},
		{"classic with data instead of event_data", `{"id":1,"event_type":"x","data":{}}`, `"event_data" is missing`},
		{"v3 id number", `{"id":5,"event":"x","data":{}}`, `v3 envelope: "id" must be a non-empty string, got number`},
		{"v3 id null", `{"id":null,"event":"x","data":{}}`, `"id" must be a non-empty string, got null`},
		{"v3 id empty", `{"id":"","event":"x","data":{}}`, `v3 envelope: "id" must not be empty`},
		{"v3 id too long", `{"id":"` + strings.Repeat("a", 254) + `","event":"x","data":{}}`, `"id" is 254 bytes long`},
		{"v3 event empty", `{"id":"a","event":"","data":{}}`, `v3 envelope: "event" must not be empty`},
		{"v3 timestamp number", `{"id":"a","event":"x","timestamp":1680064028,"data":{}}`, `"timestamp" must be an ISO-8601 string or null, got number`},
		{"v3 timestamp garbage", `{"id":"a","event":"x","timestamp":"yesterday","data":{}}`, `"timestamp" is not an ISO-8601 time`},
		{"v3 timestamp bad month", `{"id":"a","event":"x","timestamp":"2023-13-11T00:00:00Z","data":{}}`, `month 13 is out of range`},
		{"v3 data missing", `{"id":"a","event":"x"}`, `v3 envelope: "data" is missing`},
		{"v3 data string", `{"id":"a","event":"x","data":"{}"}`, `"data" must be an object, got string`},
		{"partner event number", `{"event":1,"data":{}}`, `partner v2 envelope: "event" must be a non-empty string, got number`},
		{"partner data missing", `{"event":"renter.created"}`, `partner v2 envelope: "data" is missing`},
		{"partner data null", `{"event":"renter.created","data":null}`, `"data" must be an object, got null`},
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
