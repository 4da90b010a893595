package funnel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Format names one of the three envelope shapes Funnel's docs use
// (webhooks.md §1). It is recorded on every event because the shapes carry
// different identities: an integer id, a UUID, or none at all.
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
	// MaxClassicIDDigits is the most digits a classic integer id may have;
	// "evt-" plus 40 digits is still a short object name.
	MaxClassicIDDigits = 40
	// MaxV3IDBytes is the longest V3 id accepted, in bytes.
	MaxV3IDBytes = 253
)

// Envelope is one webhook body reduced to what all three formats share, so
// that the rest of the operator never needs to know which shape arrived.
type Envelope struct {
	// Format is the envelope shape the body was recognised as.
	Format Format
	// ID is the event id: for Classic the integer's exact decimal digits
	// (never converted through a float), for V3 the string as sent, for
	// PartnerV2 empty.
	ID string
	// Type is the event type (event_type or event), as sent.
	Type string
	// OccurredAt is when the event happened (event_timestamp or timestamp),
	// in UTC; nil for PartnerV2 and when the envelope has none.
	OccurredAt *time.Time
	// IdempotencyKey is the Classic idempotency_key, "" when null or absent.
	// Its meaning is undocumented; it is kept, never used for identity.
	IdempotencyKey string
	// Data is the event's data object, byte for byte as in the body.
	Data json.RawMessage
}

// ParseError says why a body is not an acceptable webhook envelope. Its
// message is short and names the field, so the receiver can send it back as
// the body of a 400.
type ParseError struct {
	// Format is the envelope shape the body was recognised as, "" when it
	// failed before that (empty, not JSON, not an object, no envelope).
	Format Format
	// Field is the top-level key at fault, "" when the body as a whole is.
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error returns e.g. `classic envelope: "id" must be a non-negative integer, got string`.
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

// Parse recognises and checks a webhook body. An object with event_type or
// event_data is Classic; one with event and id is V3; one with event and no
// id is Partner v2. Unknown top-level fields and unknown event types are
// accepted; everything the operator derives identity from is checked
// strictly. Every error is a *ParseError.
func Parse(body []byte) (*Envelope, error) {
	fields, err := parseTopLevel(body)
	if err != nil {
		return nil, err
	}
	_, hasEventType := fields["event_type"]
	_, hasEventData := fields["event_data"]
	_, hasEvent := fields["event"]
	_, hasID := fields["id"]
	switch {
	case hasEventType || hasEventData:
		return parseClassic(fields)
	case hasEvent && hasID:
		return parseV3(fields)
	case hasEvent:
		return parsePartnerV2(fields)
	}
	return nil, &ParseError{Reason: `no recognisable envelope: expected "event_type" or "event_data" (classic) or "event" (V3, Partner v2)`}
}

// parseTopLevel checks the body as a whole and returns its top-level members,
// each value byte for byte as in the body.
func parseTopLevel(body []byte) (map[string]json.RawMessage, error) {
	trimmed := trimJSONSpace(body)
	if len(trimmed) == 0 {
		return nil, &ParseError{Reason: "body is empty"}
	}
	if i := firstInvalidUTF8(body); i >= 0 {
		return nil, &ParseError{Reason: fmt.Sprintf("body is not valid UTF-8 (bad byte at offset %d)", i)}
	}
	// Before encoding/json sees the body: it bounds the work of what follows.
	if err := checkDepth(body, MaxNestingDepth); err != nil {
		return nil, &ParseError{Reason: err.Error()}
	}
	if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, &ParseError{Reason: fmt.Sprintf("invalid JSON at byte %d: %s", syntax.Offset, syntax.Error())}
		}
		return nil, &ParseError{Reason: "invalid JSON: " + err.Error()}
	}
	if trimmed[0] != '{' {
		return nil, &ParseError{Reason: "top-level JSON value must be an object, got " + jsonKind(trimmed)}
	}

	// A token walk over the (now known valid) object: unlike decoding into a
	// map it sees duplicate keys, and Decode into a RawMessage copies each
	// value's bytes unchanged.
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, &ParseError{Reason: "invalid JSON: " + err.Error()}
	}
	fields := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &ParseError{Reason: "invalid JSON: " + err.Error()}
		}
		key, ok := tok.(string)
		if !ok {
			return nil, &ParseError{Reason: "invalid JSON: object key is not a string"}
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, &ParseError{Reason: "invalid JSON: " + err.Error()}
		}
		if _, dup := fields[key]; dup {
			// Parsers disagree on which duplicate wins; refusing is the only
			// answer that cannot be read two ways.
			return nil, &ParseError{Field: key, Reason: "appears more than once at the top level"}
		}
		fields[key] = raw
	}
	return fields, nil
}

func parseClassic(fields map[string]json.RawMessage) (*Envelope, error) {
	const f = FormatClassic
	env := &Envelope{Format: f}

	raw, ok := fields["id"]
	if !ok {
		return nil, &ParseError{Format: f, Field: "id", Reason: "is missing"}
	}
	id := string(trimJSONSpace(raw))
	if !isNonNegativeIntegerLiteral(id) {
		return nil, &ParseError{Format: f, Field: "id", Reason: "must be a non-negative integer, got " + describeJSON(raw)}
	}
	if len(id) > MaxClassicIDDigits {
		return nil, &ParseError{Format: f, Field: "id", Reason: fmt.Sprintf("must have at most %d digits, got %d", MaxClassicIDDigits, len(id))}
	}
	env.ID = id

	var err error
	if env.Type, err = parseType(f, "event_type", fields); err != nil {
		return nil, err
	}

	if raw, ok := fields["event_timestamp"]; ok && !isJSONNull(raw) {
		t, reason := epochSeconds(string(trimJSONSpace(raw)))
		if reason != "" {
			return nil, &ParseError{Format: f, Field: "event_timestamp", Reason: reason}
		}
		env.OccurredAt = &t
	}

	if raw, ok := fields["idempotency_key"]; ok && !isJSONNull(raw) {
		switch jsonKind(raw) {
		case "string":
			if err := json.Unmarshal(raw, &env.IdempotencyKey); err != nil {
				return nil, &ParseError{Format: f, Field: "idempotency_key", Reason: "is not a valid string: " + err.Error()}
			}
		case "number":
			// Its type is only inferred from a null example; a number is
			// kept as its exact text rather than refusing the event.
			env.IdempotencyKey = string(trimJSONSpace(raw))
		default:
			return nil, &ParseError{Format: f, Field: "idempotency_key", Reason: "must be a string or null, got " + jsonKind(raw)}
		}
	}

	if env.Data, err = parseData(f, "event_data", fields); err != nil {
		return nil, err
	}
	return env, nil
}

// maxEpochSeconds is 9999-12-31T23:59:59Z, the last instant RFC 3339 can write.
const maxEpochSeconds = 253402300799

// epochSeconds reads a Classic event_timestamp, integer Unix seconds.
func epochSeconds(text string) (time.Time, string) {
	if !isIntegerLiteral(text) {
		return time.Time{}, "must be an integer number of epoch seconds or null, got " + describeJSON([]byte(text))
	}
	secs, err := strconv.ParseInt(text, 10, 64)
	if err != nil || secs < 0 || secs > maxEpochSeconds {
		return time.Time{}, fmt.Sprintf("%s is out of range (epoch seconds from 0 to %d)", shorten(text), int64(maxEpochSeconds))
	}
	return time.Unix(secs, 0).UTC(), ""
}

func parseV3(fields map[string]json.RawMessage) (*Envelope, error) {
	const f = FormatV3
	env := &Envelope{Format: f}

	raw := fields["id"]
	if jsonKind(raw) != "string" {
		return nil, &ParseError{Format: f, Field: "id", Reason: "must be a non-empty string, got " + jsonKind(raw)}
	}
	if err := json.Unmarshal(raw, &env.ID); err != nil {
		return nil, &ParseError{Format: f, Field: "id", Reason: "is not a valid string: " + err.Error()}
	}
	if reason := checkName(env.ID, MaxV3IDBytes); reason != "" {
		return nil, &ParseError{Format: f, Field: "id", Reason: reason}
	}

	var err error
	if env.Type, err = parseType(f, "event", fields); err != nil {
		return nil, err
	}

	if raw, ok := fields["timestamp"]; ok && !isJSONNull(raw) {
		var s string
		if jsonKind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
			return nil, &ParseError{Format: f, Field: "timestamp", Reason: "must be an ISO-8601 string or null, got " + jsonKind(raw)}
		}
		t, reason := parseTime(s)
		if reason != "" {
			return nil, &ParseError{Format: f, Field: "timestamp", Reason: "is not an ISO-8601 time (" + quoteShort(s) + "): " + reason}
		}
		env.OccurredAt = &t
	}

	if env.Data, err = parseData(f, "data", fields); err != nil {
		return nil, err
	}
	return env, nil
}

func parsePartnerV2(fields map[string]json.RawMessage) (*Envelope, error) {
	const f = FormatPartnerV2
	env := &Envelope{Format: f}
	var err error
	if env.Type, err = parseType(f, "event", fields); err != nil {
		return nil, err
	}
	if env.Data, err = parseData(f, "data", fields); err != nil {
		return nil, err
	}
	return env, nil
}

// parseType reads the event type from fields[key].
func parseType(f Format, key string, fields map[string]json.RawMessage) (string, error) {
	raw, ok := fields[key]
	if !ok {
		return "", &ParseError{Format: f, Field: key, Reason: "is missing"}
	}
	var s string
	if jsonKind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
		return "", &ParseError{Format: f, Field: key, Reason: "must be a non-empty string, got " + jsonKind(raw)}
	}
	if reason := checkName(s, MaxTypeBytes); reason != "" {
		return "", &ParseError{Format: f, Field: key, Reason: reason}
	}
	return s, nil
}

// checkName holds a type or id to what can be stored and shown safely: not
// empty, bounded, no control characters. U+FFFD is refused too, because
// encoding/json decodes every unpaired surrogate escape ("\ud800",
// "\udfff", ...) to it: accepting it would let distinct ids merge.
func checkName(s string, max int) string {
	switch {
	case s == "":
		return "must not be empty"
	case len(s) > max:
		return fmt.Sprintf("is %d bytes long, at most %d allowed", len(s), max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	case strings.ContainsRune(s, utf8.RuneError):
		return "must not contain U+FFFD or unpaired surrogate escapes"
	}
	return ""
}

// parseData returns fields[key], which must be a JSON object.
func parseData(f Format, key string, fields map[string]json.RawMessage) (json.RawMessage, error) {
	raw, ok := fields[key]
	if !ok {
		return nil, &ParseError{Format: f, Field: key, Reason: "is missing"}
	}
	if k := jsonKind(raw); k != "object" {
		return nil, &ParseError{Format: f, Field: key, Reason: "must be an object, got " + k}
	}
	return raw, nil
}
