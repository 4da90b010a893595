package funnel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Format names one of the three envelope shapes Funnel's docs use
// (docs/architecture.md, What Funnel sends). It is recorded on every event
// because the shapes carry different identities: an integer id, a UUID, or
// none at all.
type Format string

// The three envelope formats.
const (
	// FormatClassic is the Event Object: integer id, event_type,
	// event_timestamp (epoch seconds), idempotency_key, event_data.
	FormatClassic Format = "Classic"
	// FormatV3 is the V3 webhook envelope: string (UUID) id, event,
	// ISO-8601 timestamp, data.
	FormatV3 Format = "V3"
	// FormatPartnerV2 is the Partner API v2 prospect webhook: event and data
	// only, no id and no timestamp.
	FormatPartnerV2 Format = "PartnerV2"
)

// Limits that Parse enforces. They bound what reaches object names, labels
// and the API server, and they are exported so that CRD validation can use
// the same numbers.
const (
	// MaxNestingDepth is the deepest JSON nesting accepted in a body,
	// counting the envelope object itself as level 1.
	MaxNestingDepth = 64
	// MaxTypeBytes is the longest event type accepted, in bytes.
	MaxTypeBytes = 253
)

// Envelope is one webhook body reduced to what all three formats share, so
// that the rest of the operator never needs to know which shape arrived.
//
// Parse is lenient: it refuses only a body that is not a JSON object with an
// event type. Everything else that differs from the docs (a timestamp in
// milliseconds, an id as a string, data null) is read as well as it can be
// and recorded in Issues, never a reason to lose the event.
type Envelope struct {
	// Format is the envelope shape the body was recognised as.
	Format Format
	// ID is the event id: an integer's exact decimal digits (never converted
	// through a float; a numeric string gives its digits too), any other
	// string as sent. Empty when the envelope has none that can be read, as
	// for PartnerV2: such an event is identified by its content.
	ID string
	// Type is the event type (event_type or event), as sent.
	Type string
	// OccurredAt is when the event happened (event_timestamp or timestamp),
	// in UTC; nil for PartnerV2 and when the envelope has none that can be
	// read.
	OccurredAt *time.Time
	// IdempotencyKey is the Classic idempotency_key, "" when null or absent,
	// a number's text or, for other JSON, its canonical text. Its meaning is
	// undocumented; it is kept, never used for identity.
	IdempotencyKey string
	// Data is the event's data object, byte for byte as in the body; {} when
	// it is null or absent, and {"value": <data>} when it is not an object.
	Data json.RawMessage
	// Extra is a JSON object of the top-level members no format defines,
	// each value verbatim; nil when there are none.
	Extra json.RawMessage
	// Issues lists what did not match the docs, in body order.
	Issues []Issue
}

// Issue is one way an event differs from what Funnel documents. An Invalid
// issue contradicts what the docs mark required and not nullable; the others
// note an undocumented shape that was read anyway.
type Issue struct {
	// Field is the path at fault, e.g. "event_timestamp" or
	// "data.charges[1].amount".
	Field string `json:"field"`
	// Reason says what is wrong and how it was read.
	Reason string `json:"reason"`
	// Invalid is true when the docs are contradicted, not merely stretched.
	Invalid bool `json:"invalid,omitempty"`
}

// String returns e.g. `data.lease_id: must be an integer, got string "L-55"`.
func (i Issue) String() string { return i.Field + ": " + i.Reason }

// ParseError says why a body is not a webhook envelope at all. Its message is
// short and names the field, so the receiver can send it back as the body of
// a 400.
type ParseError struct {
	// Format is the envelope shape the body was recognised as, "" when it
	// failed before that (empty, not JSON, not an object, no envelope).
	Format Format
	// Field is the top-level key at fault, "" when the body as a whole is.
	Field string
	// Reason says what is wrong.
	Reason string
	// NotJSON is true when the body is not JSON at all (the receiver then
	// answers 415 unless the sender said it was JSON).
	NotJSON bool
}

// Error returns e.g. `classic envelope: "event_type" must be a non-empty string, got number`.
func (e *ParseError) Error() string {
	var b strings.Builder
	switch e.Format {
	case FormatClassic:
		b.WriteString("classic envelope: ")
	case FormatV3:
		b.WriteString("v3 envelope: ")
	case FormatPartnerV2:
		b.WriteString("partner v2 envelope: ")
	}
	if e.Field != "" {
		b.WriteString(strconv.Quote(e.Field))
		b.WriteByte(' ')
	}
	b.WriteString(e.Reason)
	return b.String()
}

// fieldSpec names the top-level keys of a format and what the docs say of them.
type fieldSpec struct {
	id, typ, timestamp, data string
	// idRequired, timestampRequired, dataRequired: documented as not nullable.
	idRequired, timestampRequired, dataRequired bool
}

var formats = map[Format]fieldSpec{
	FormatClassic:   {id: "id", typ: "event_type", timestamp: "event_timestamp", data: "event_data", idRequired: true, timestampRequired: true, dataRequired: true},
	FormatV3:        {id: "id", typ: "event", timestamp: "timestamp", data: "data"},
	FormatPartnerV2: {typ: "event", data: "data"},
}

// utf8BOM is what some encoders put before a UTF-8 body; it is not part of the JSON.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Parse recognises and reads a webhook body. An object with event_type or
// event_data is Classic; one with event and id is V3; one with event and no
// id is Partner v2. Only a body that is not a JSON object with a readable
// event type is refused, with a *ParseError; everything else is read, and
// what differs from the docs is listed in Issues.
//
// Memory: Parse keeps offsets into body rather than decoded values, so it
// holds little beyond the body itself whatever the shape of the JSON.
func Parse(body []byte) (*Envelope, error) {
	body = bytes.TrimPrefix(body, utf8BOM)
	top, err := parseTopLevel(body)
	if err != nil {
		return nil, err
	}
	var f Format
	switch {
	case top.has("event_type") || top.has("event_data"):
		f = FormatClassic
	case top.has("event") && top.has("id"):
		f = FormatV3
	case top.has("event"):
		f = FormatPartnerV2
	default:
		return nil, &ParseError{Reason: `no recognisable envelope: expected "event_type" or "event_data" (classic) or "event" (V3, Partner v2)`}
	}
	spec := formats[f]
	env := &Envelope{Format: f, Issues: top.issues}
	if env.Type, err = readType(f, spec.typ, top); err != nil {
		return nil, err
	}
	if spec.id != "" {
		env.readID(spec, top)
	}
	if spec.timestamp != "" {
		env.readTimestamp(spec, top)
	}
	if f == FormatClassic {
		env.readIdempotencyKey(top)
	}
	env.readData(spec, top)
	env.Extra = top.extra(spec, f == FormatClassic)
	return env, nil
}

// topLevel is the body's object: its members, last one winning for a repeated key.
type topLevel struct {
	body   []byte
	fields map[string]span
	order  []string
	issues []Issue
}

func (t *topLevel) has(key string) bool { _, ok := t.fields[key]; return ok }

// raw returns the value of key, trimmed; nil when absent.
func (t *topLevel) raw(key string) []byte {
	m, ok := t.fields[key]
	if !ok {
		return nil
	}
	return t.body[m.valStart:m.valEnd]
}

// extra returns the members no format defines as one JSON object, values verbatim.
func (t *topLevel) extra(spec fieldSpec, classic bool) json.RawMessage {
	known := map[string]bool{spec.id: true, spec.typ: true, spec.timestamp: true, spec.data: true, "": true}
	if classic {
		known["idempotency_key"] = true
	}
	var b bytes.Buffer
	for _, k := range t.order {
		if known[k] {
			continue
		}
		m := t.fields[k]
		if b.Len() == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		b.Write(t.body[m.keyStart:m.keyEnd])
		b.WriteByte(':')
		b.Write(t.body[m.valStart:m.valEnd])
	}
	if b.Len() == 0 {
		return nil
	}
	b.WriteByte('}')
	return b.Bytes()
}

// parseTopLevel checks the body as a whole and indexes its top-level members.
func parseTopLevel(body []byte) (*topLevel, error) {
	trimmed := trimJSONSpace(body)
	if len(trimmed) == 0 {
		return nil, &ParseError{Reason: "body is empty"}
	}
	if i := firstInvalidUTF8(body); i >= 0 {
		return nil, &ParseError{Reason: fmt.Sprintf("body is not valid UTF-8 (bad byte at offset %d)", i), NotJSON: true}
	}
	// Before encoding/json sees the body: it bounds the work of what follows.
	if err := checkDepth(body, MaxNestingDepth); err != nil {
		return nil, &ParseError{Reason: err.Error()}
	}
	if !json.Valid(trimmed) {
		// Unmarshal explains what Valid only reports; it checks the syntax before it
		// decodes anything.
		err := json.Unmarshal(trimmed, new(json.RawMessage))
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, &ParseError{Reason: fmt.Sprintf("invalid JSON at byte %d: %s", syntax.Offset, syntax.Error()), NotJSON: true}
		}
		return nil, &ParseError{Reason: fmt.Sprintf("invalid JSON: %v", err), NotJSON: true}
	}
	if trimmed[0] != '{' {
		return nil, &ParseError{Reason: "top-level JSON value must be an object, got " + jsonKind(trimmed)}
	}
	t := &topLevel{body: trimmed, fields: map[string]span{}}
	repeated := map[string]bool{}
	eachMember(trimmed, 0, func(m span) {
		key := decodeString(trimmed[m.keyStart:m.keyEnd])
		if _, dup := t.fields[key]; !dup {
			t.order = append(t.order, key)
		} else if !repeated[key] {
			repeated[key] = true
			field := key
			if field == "" {
				field = `""`
			}
			t.issues = append(t.issues, Issue{Field: field, Reason: "appears more than once; the last value is used"})
		}
		t.fields[key] = m
	})
	return t, nil
}

// readType reads the event type, the one thing an event cannot do without: it decides
// how the event is processed and routed.
func readType(f Format, key string, top *topLevel) (string, error) {
	raw := top.raw(key)
	if raw == nil {
		return "", &ParseError{Format: f, Field: key, Reason: "is missing"}
	}
	if jsonKind(raw) != "string" {
		return "", &ParseError{Format: f, Field: key, Reason: "must be a non-empty string, got " + jsonKind(raw)}
	}
	s := decodeString(raw)
	switch {
	case s == "":
		return "", &ParseError{Format: f, Field: key, Reason: "must not be empty"}
	case len(s) > MaxTypeBytes:
		return "", &ParseError{Format: f, Field: key, Reason: fmt.Sprintf("is %d bytes long, at most %d allowed", len(s), MaxTypeBytes)}
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", &ParseError{Format: f, Field: key, Reason: "must not contain control characters"}
	case strings.ContainsRune(s, utf8.RuneError):
		// encoding/json decodes every unpaired surrogate escape to U+FFFD: accepting it
		// would let distinct types merge.
		return "", &ParseError{Format: f, Field: key, Reason: "must not contain U+FFFD or unpaired surrogate escapes"}
	}
	return s, nil
}

func (e *Envelope) note(field, reason string, invalid bool) {
	e.Issues = append(e.Issues, Issue{Field: field, Reason: reason, Invalid: invalid})
}

// readID reads the event id: a JSON integer, or a string. An id that cannot be read
// leaves ID empty, and the event is identified by its content.
func (e *Envelope) readID(spec fieldSpec, top *topLevel) {
	raw := top.raw(spec.id)
	documented := "a string (UUID)"
	if e.Format == FormatClassic {
		documented = "an integer"
	}
	unreadable := func(got string) {
		e.note(spec.id, fmt.Sprintf("is %s, documented as %s; the event is identified by its content", got, documented), spec.idRequired)
	}
	switch jsonKind(raw) {
	case "nothing":
		unreadable("missing")
	case "null":
		unreadable("null")
	case "number":
		text := string(raw)
		if isNonNegativeIntegerLiteral(text) {
			e.ID = text
			if e.Format != FormatClassic {
				e.note(spec.id, "is a number, documented as a string (UUID)", false)
			}
			return
		}
		e.ID = canonicalNumber(text)
		e.note(spec.id, fmt.Sprintf("%s is not a non-negative integer; kept as %s", shorten(text), e.ID), false)
	case "string":
		s := decodeString(raw)
		switch {
		case s == "":
			unreadable("empty")
		case strings.ContainsRune(s, utf8.RuneError):
			// Unpaired surrogate escapes all decode to U+FFFD: the escaped text keeps
			// distinct ids distinct.
			e.ID = string(raw[1 : len(raw)-1])
			e.note(spec.id, "contains U+FFFD or an unpaired surrogate escape; kept as its JSON text", false)
		case e.Format == FormatClassic && isDigits(s):
			e.ID = strings.TrimLeft(s, "0")
			if e.ID == "" {
				e.ID = "0"
			}
			e.note(spec.id, "is a string, documented as an integer; read as "+shorten(e.ID), false)
		default:
			e.ID = s
			if e.Format == FormatClassic {
				e.note(spec.id, "is a string, documented as an integer", false)
			}
		}
	default:
		unreadable("a JSON " + jsonKind(raw))
	}
}

// readTimestamp reads when the event happened: epoch seconds (integer or fraction),
// milliseconds, microseconds or nanoseconds, as a number or a numeric string, or an
// ISO-8601 string, whatever the format documents.
func (e *Envelope) readTimestamp(spec fieldSpec, top *topLevel) {
	raw := top.raw(spec.timestamp)
	documented := "an ISO-8601 string"
	if e.Format == FormatClassic {
		documented = "integer epoch seconds"
	}
	var (
		t      time.Time
		reason string
		shape  string // how the value differs from the docs, "" when it does not
	)
	switch jsonKind(raw) {
	case "nothing", "null":
		if spec.timestampRequired {
			state := "missing"
			if raw != nil {
				state = "null"
			}
			e.note(spec.timestamp, "is "+state+", documented as "+documented, true)
		}
		return
	case "number":
		t, reason = epochTime(string(raw))
		if e.Format != FormatClassic {
			shape = "is a number"
		} else if !isIntegerLiteral(string(raw)) || !isEpochSeconds(string(raw)) {
			shape = "is not integer epoch seconds"
		}
	case "string":
		s := decodeString(raw)
		if isNumberText(s) {
			t, reason = epochTime(s)
			shape = "is a numeric string"
		} else {
			t, reason = parseTime(s)
			if reason != "" {
				reason = "is not a time (" + quoteShort(s) + "): " + reason
			}
			if e.Format == FormatClassic {
				shape = "is an ISO-8601 string"
			}
		}
	default:
		reason = "is a JSON " + jsonKind(raw)
	}
	if reason != "" {
		e.note(spec.timestamp, reason+", documented as "+documented+"; occurredAt is left empty", spec.timestampRequired)
		return
	}
	e.OccurredAt = &t
	if shape != "" {
		e.note(spec.timestamp, shape+", documented as "+documented+"; read as "+t.Format(time.RFC3339Nano), false)
	}
}

// isNumberText reports whether s is a JSON number.
func isNumberText(s string) bool {
	return s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s))
}

// isEpochSeconds reports whether an integer is small enough to be read as seconds.
func isEpochSeconds(text string) bool {
	return len(strings.TrimPrefix(text, "-")) <= 11
}

// Epoch bounds: RFC 3339, which the API server writes times in, has years 0001 to 9999.
const (
	minEpochSeconds = -62135596800 // 0001-01-01T00:00:00Z
	maxEpochSeconds = 253402300799 // 9999-12-31T23:59:59Z
)

// epochTime reads a number of epoch seconds, or of milliseconds, microseconds or
// nanoseconds: a magnitude of 10^11 and more is not seconds (that would be after the
// year 5000), so each further factor of 1000 is read as the next smaller unit. The
// number's text is read exactly, fraction and exponent included.
func epochTime(text string) (time.Time, string) {
	if k := strings.IndexAny(text, "eE"); k >= 0 {
		// Bound the exponent before big.Rat expands it into digits.
		if e, err := strconv.Atoi(strings.TrimPrefix(text[k+1:], "+")); err != nil || e > 30 || e < -30 {
			return time.Time{}, shorten(text) + " is out of range"
		}
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return time.Time{}, shorten(text) + " is not a number"
	}
	abs := new(big.Rat).Abs(r)
	for _, unit := range []int64{1, 1e3, 1e6, 1e9} {
		if abs.Cmp(new(big.Rat).SetInt64(1e11*unit)) < 0 || unit == 1e9 {
			nanos := new(big.Rat).Mul(r, new(big.Rat).SetFrac64(1e9, unit))
			ns := new(big.Int).Quo(nanos.Num(), nanos.Denom()) // truncated towards zero
			secs, rem := new(big.Int).QuoRem(ns, big.NewInt(1e9), new(big.Int))
			if !secs.IsInt64() || secs.Int64() < minEpochSeconds || secs.Int64() > maxEpochSeconds {
				break
			}
			return time.Unix(secs.Int64(), rem.Int64()).UTC(), ""
		}
	}
	return time.Time{}, shorten(text) + " is out of range (years 0001 to 9999)"
}

// readIdempotencyKey reads the Classic idempotency_key: a string, or any other JSON kept
// as its text.
func (e *Envelope) readIdempotencyKey(top *topLevel) {
	raw := top.raw("idempotency_key")
	switch jsonKind(raw) {
	case "nothing", "null":
	case "string":
		e.IdempotencyKey = decodeString(raw)
	case "number":
		e.IdempotencyKey = string(raw)
	default:
		var b bytes.Buffer
		writeCanonical(&b, raw, 0)
		e.IdempotencyKey = b.String()
		e.note("idempotency_key", "is a JSON "+jsonKind(raw)+", documented as a string or null; kept as its JSON text", false)
	}
}

// readData reads the data object. Null or absent data becomes {}; any other value that
// is not an object is kept under "value", so nothing Funnel sent is dropped.
func (e *Envelope) readData(spec fieldSpec, top *topLevel) {
	raw := top.raw(spec.data)
	switch k := jsonKind(raw); k {
	case "object":
		e.Data = raw
	case "nothing", "null":
		state := "missing"
		if raw != nil {
			state = "null"
		}
		e.Data = json.RawMessage(`{}`)
		e.note(spec.data, "is "+state+", documented as an object; stored as {}", spec.dataRequired)
	default:
		e.Data = json.RawMessage(`{"value":` + string(raw) + `}`)
		e.note(spec.data, "is a JSON "+k+", documented as an object; stored as data.value", true)
	}
}
