package funnel

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ID is a Funnel integer id kept as its exact decimal digits, so an id of any
// size survives unchanged where a float64 would round it above 2^53.
type ID string

// MarshalJSON writes the id as a JSON integer, or null when it is empty.
func (id ID) MarshalJSON() ([]byte, error) { return marshalInteger("funnel.ID", string(id), false) }

// UnmarshalJSON accepts only a non-negative JSON integer (or null, which
// leaves the id unchanged): a string or a fraction is an error, unlike with
// json.Number.
func (id *ID) UnmarshalJSON(b []byte) error {
	text, err := unmarshalInteger("funnel.ID", b, false)
	if err == nil && text != "" {
		*id = ID(text)
	}
	return err
}

// Cents is an amount of money in cents, a JSON integer kept as its exact
// text. It may be negative (a credit).
type Cents string

// Big returns the amount as a big.Int; ok is false when c is not an integer.
func (c Cents) Big() (v *big.Int, ok bool) {
	if !isIntegerLiteral(string(c)) {
		return nil, false
	}
	return new(big.Int).SetString(string(c), 10)
}

// MarshalJSON writes the amount as a JSON integer, or null when it is empty.
func (c Cents) MarshalJSON() ([]byte, error) { return marshalInteger("funnel.Cents", string(c), true) }

// UnmarshalJSON accepts only a JSON integer (or null, which leaves c
// unchanged).
func (c *Cents) UnmarshalJSON(b []byte) error {
	text, err := unmarshalInteger("funnel.Cents", b, true)
	if err == nil && text != "" {
		*c = Cents(text)
	}
	return err
}

// marshalInteger writes the integer text s of the named type as JSON,
// null when empty.
func marshalInteger(typeName, s string, signed bool) ([]byte, error) {
	if s == "" {
		return []byte("null"), nil
	}
	if !isIntegerLiteral(s) || !signed && s[0] == '-' {
		return nil, fmt.Errorf("%s %s is not %s", typeName, quoteShort(s), integerKind(signed))
	}
	return []byte(s), nil
}

// unmarshalInteger returns the text of the JSON integer b, "" for null.
func unmarshalInteger(typeName string, b []byte, signed bool) (string, error) {
	if isJSONNull(b) {
		return "", nil
	}
	text := string(trimJSONSpace(b))
	if !isIntegerLiteral(text) || !signed && text[0] == '-' {
		return "", fmt.Errorf("%s must be %s, got %s", typeName, integerKind(signed), describeJSON(b))
	}
	return text, nil
}

func integerKind(signed bool) string {
	if signed {
		return "an integer"
	}
	return "a non-negative integer"
}

// Date is a calendar date as sent (e.g. "2023-03-11"). It stays text so the
// data is never reinterpreted; DecodeData checks that ParseTime accepts it.
type Date string

// Time returns the date as midnight UTC (or the instant, if Funnel sent one).
func (d Date) Time() (time.Time, error) { return ParseTime(string(d)) }

// DateTime is a date and time as sent, often without a time zone (Partner
// v2's "2021-08-01 15:00:00"). DecodeData checks that ParseTime accepts it.
type DateTime string

// Time returns the instant in UTC; a zone-less value is read as UTC.
func (d DateTime) Time() (time.Time, error) { return ParseTime(string(d)) }

// FieldError says which field of an event's data is wrong and how, so that
// the reason a FunnelEvent failed validation can be shown to a person.
type FieldError struct {
	// Field is the path from the data object, e.g. "data.lease_transaction_id"
	// or "data.charges[1].amount".
	Field string
	// Reason says what is wrong, e.g. "required integer is missing".
	Reason string
}

// Error returns e.g. `data.lease_transaction_id: required integer is missing`.
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

var (
	idType       = reflect.TypeFor[ID]()
	centsType    = reflect.TypeFor[Cents]()
	dateType     = reflect.TypeFor[Date]()
	dateTimeType = reflect.TypeFor[DateTime]()
)

// DecodeData decodes an event's data object into v, a pointer to one of this
// package's event structs (or any struct built the same way), and checks it
// as it goes: types exact (a string is never an id, a number never a
// string), dates readable by ParseTime, fields tagged funnel:"required"
// present and not null, fields tagged funnel:"oneof=a b c" within their
// list. Other fields may be absent or null; unknown fields are ignored.
// Keys match exactly, unlike encoding/json's case-insensitive matching.
// Every data error is a *FieldError.
func DecodeData(data json.RawMessage, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return errors.New("funnel.DecodeData: v must be a non-nil pointer to a struct")
	}
	if i := firstInvalidUTF8(data); i >= 0 {
		return &FieldError{Field: "data", Reason: fmt.Sprintf("is not valid UTF-8 (bad byte at offset %d)", i)}
	}
	fields, err := objectFields("data", data)
	if err != nil {
		return err
	}
	return decodeFields("data", fields, rv.Elem())
}

// objectFields splits a JSON object into its members.
func objectFields(path string, raw []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(raw) {
		reason := "is not valid JSON"
		if err := json.Unmarshal(raw, new(json.RawMessage)); err != nil {
			reason += " (" + err.Error() + ")"
		}
		return nil, &FieldError{Field: path, Reason: reason}
	}
	if k := jsonKind(raw); k != "object" {
		return nil, &FieldError{Field: path, Reason: "must be an object, got " + k}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, &FieldError{Field: path, Reason: "is not a valid object: " + err.Error()}
	}
	return fields, nil
}

// decodeFields fills the struct v from fields. Embedded structs share the
// object of their parent, as in encoding/json.
func decodeFields(path string, fields map[string]json.RawMessage, v reflect.Value) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			// Includes unexported embedded structs, whose fields reflect
			// cannot set.
			continue
		}
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			if err := decodeFields(path, fields, v.Field(i)); err != nil {
				return err
			}
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		required, oneOf := fieldRules(sf.Tag.Get("funnel"))
		fieldPath := path + "." + name
		raw, present := fields[name]
		if !present || isJSONNull(raw) {
			if required {
				state := "missing"
				if present {
					state = "null"
				}
				return &FieldError{Field: fieldPath, Reason: "required " + kindName(sf.Type) + " is " + state}
			}
			continue
		}
		if err := decodeValue(fieldPath, raw, v.Field(i), oneOf); err != nil {
			return err
		}
	}
	return nil
}

// fieldRules reads a funnel struct tag: "required" and/or "oneof=a b c".
func fieldRules(tag string) (required bool, oneOf []string) {
	for _, part := range strings.Split(tag, ",") {
		switch {
		case part == "required":
			required = true
		case strings.HasPrefix(part, "oneof="):
			oneOf = strings.Fields(strings.TrimPrefix(part, "oneof="))
		}
	}
	return required, oneOf
}

// decodeValue checks one non-null JSON value against the Go type of v and
// stores it.
func decodeValue(path string, raw []byte, v reflect.Value, oneOf []string) error {
	if v.Kind() == reflect.Pointer {
		elem := reflect.New(v.Type().Elem())
		if err := decodeValue(path, raw, elem.Elem(), oneOf); err != nil {
			return err
		}
		v.Set(elem)
		return nil
	}
	wrongType := func() error {
		got := jsonKind(raw)
		if got == "number" && (v.Type() == idType || v.Type() == centsType) {
			// A fraction or exponent: the text says what the kind cannot.
			got = describeJSON(raw)
		}
		return &FieldError{Field: path, Reason: "must be " + article(kindName(v.Type())) + ", got " + got}
	}
	switch v.Type() {
	case idType, centsType:
		text := string(trimJSONSpace(raw))
		if !isIntegerLiteral(text) {
			return wrongType()
		}
		if v.Type() == idType && text[0] == '-' {
			return &FieldError{Field: path, Reason: "must be a non-negative integer, got " + shorten(text)}
		}
		v.SetString(text)
		return nil
	case dateType, dateTimeType:
		var s string
		if jsonKind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
			return wrongType()
		}
		if _, reason := parseTime(s); reason != "" {
			return &FieldError{Field: path, Reason: "must be " + article(kindName(v.Type())) + ", got " + quoteShort(s) + " (" + reason + ")"}
		}
		v.SetString(s)
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		var s string
		if jsonKind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
			return wrongType()
		}
		if len(oneOf) > 0 && !slices.Contains(oneOf, s) {
			return &FieldError{Field: path, Reason: "must be one of " + strings.Join(oneOf, ", ") + "; got " + quoteShort(s)}
		}
		v.SetString(s)
	case reflect.Bool:
		var b bool
		if jsonKind(raw) != "boolean" || json.Unmarshal(raw, &b) != nil {
			return wrongType()
		}
		v.SetBool(b)
	case reflect.Slice:
		var elems []json.RawMessage
		if jsonKind(raw) != "array" || json.Unmarshal(raw, &elems) != nil {
			return wrongType()
		}
		s := reflect.MakeSlice(v.Type(), len(elems), len(elems))
		for i, elem := range elems {
			elemPath := path + "[" + strconv.Itoa(i) + "]"
			if isJSONNull(elem) {
				return &FieldError{Field: elemPath, Reason: "must be " + article(kindName(v.Type().Elem())) + ", got null"}
			}
			if err := decodeValue(elemPath, elem, s.Index(i), nil); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.Struct:
		if jsonKind(raw) != "object" {
			return wrongType()
		}
		fields, err := objectFields(path, raw)
		if err != nil {
			return err
		}
		return decodeFields(path, fields, v)
	default:
		// A struct field of a type this decoder does not know: a bug in the
		// event struct, reported rather than panicking.
		return &FieldError{Field: path, Reason: "has unsupported Go type " + v.Type().String()}
	}
	return nil
}

// kindName names the JSON kind a Go type expects, for messages.
func kindName(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case idType, centsType:
		return "integer"
	case dateType:
		return "ISO-8601 date"
	case dateTimeType:
		return "ISO-8601 date-time"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array"
	case reflect.Struct:
		return "object"
	}
	return t.String()
}

// article prefixes a or an.
func article(noun string) string {
	if noun != "" && strings.ContainsRune("aeiouAEIOU", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}
