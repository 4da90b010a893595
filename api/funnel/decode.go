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

var (
	idType       = reflect.TypeFor[ID]()
	centsType    = reflect.TypeFor[Cents]()
	dateType     = reflect.TypeFor[Date]()
	dateTimeType = reflect.TypeFor[DateTime]()
)

// DecodeData decodes an event's data object into v, a pointer to one of this
// package's event structs (or any struct built the same way), and checks it
// against what Funnel documents. Validation informs, it does not block: it
// reads every field it can and returns what differs from the docs as Issues.
// Only a field tagged funnel:"required" (documented as required and not
// nullable) that is missing, null or of another kind is Invalid; a value of
// another kind than documented elsewhere is noted and read if it can be (an
// integer sent as a numeric string, a number where a string was expected),
// else left empty; a date that does not parse is kept as sent and noted; a
// value outside a funnel:"oneof=a b c" list is noted. Unknown fields are
// ignored, and keys match exactly, unlike encoding/json's case-insensitive
// matching. The error is for a v of the wrong Go type only.
func DecodeData(data json.RawMessage, v any) ([]Issue, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return nil, errors.New("funnel.DecodeData: v must be a non-nil pointer to a struct")
	}
	var d decoder
	if i := firstInvalidUTF8(data); i >= 0 {
		d.issue("data", fmt.Sprintf("is not valid UTF-8 (bad byte at offset %d)", i), true)
		return d.issues, nil
	}
	if fields, ok := d.object("data", data, true); ok {
		d.fields("data", fields, rv.Elem())
	}
	return d.issues, nil
}

// decoder collects the issues of one DecodeData.
type decoder struct {
	issues []Issue
}

func (d *decoder) issue(field, reason string, invalid bool) {
	d.issues = append(d.issues, Issue{Field: field, Reason: reason, Invalid: invalid})
}

// object splits a JSON object into its members; ok is false (and an issue recorded)
// when raw is not one.
func (d *decoder) object(path string, raw []byte, invalid bool) (map[string]json.RawMessage, bool) {
	if !json.Valid(raw) {
		reason := "is not valid JSON"
		if err := json.Unmarshal(raw, new(json.RawMessage)); err != nil {
			reason += " (" + err.Error() + ")"
		}
		d.issue(path, reason, true)
		return nil, false
	}
	if k := jsonKind(raw); k != "object" {
		d.issue(path, "must be an object, got "+k, invalid)
		return nil, false
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		d.issue(path, "is not a valid object: "+err.Error(), true)
		return nil, false
	}
	return fields, true
}

// fields fills the struct v from fields. Embedded structs share the object of their
// parent, as in encoding/json.
func (d *decoder) fields(path string, fields map[string]json.RawMessage, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			// Includes unexported embedded structs, whose fields reflect cannot set.
			continue
		}
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			d.fields(path, fields, v.Field(i))
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
				d.issue(fieldPath, "required "+kindName(sf.Type)+" is "+state, true)
			}
			continue
		}
		d.value(fieldPath, raw, v.Field(i), oneOf, required)
	}
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

// value reads one non-null JSON value into v, as documented or as well as it can;
// required makes a value that cannot be read Invalid.
func (d *decoder) value(path string, raw []byte, v reflect.Value, oneOf []string, required bool) {
	if v.Kind() == reflect.Pointer {
		elem := reflect.New(v.Type().Elem())
		d.value(path, raw, elem.Elem(), oneOf, required)
		v.Set(elem)
		return
	}
	kind := jsonKind(raw)
	var str string
	if kind == "string" {
		str = decodeString(raw)
	}
	want := article(kindName(v.Type()))
	// unreadable: the value is left empty.
	unreadable := func() {
		got := kind
		switch kind {
		case "number":
			got += " " + shorten(string(trimJSONSpace(raw)))
		case "string":
			got += " " + quoteShort(str)
		}
		d.issue(path, "must be "+want+", got "+got, required)
	}
	// read: the value is used, but it is not of the documented kind.
	read := func(how string) {
		d.issue(path, "is "+how+", documented as "+want+"; read as it is", false)
	}
	switch v.Type() {
	case idType, centsType:
		text := string(trimJSONSpace(raw))
		switch {
		case kind == "number" && isIntegerLiteral(text):
			if v.Type() == idType && text[0] == '-' {
				read("negative")
			}
		case kind == "string" && isIntegerLiteral(str):
			text = str
			read("a numeric string")
		case kind == "number" || kind == "string" && isNumberText(str):
			if kind == "string" {
				text = str
			}
			d.issue(path, "is not an integer ("+shorten(text)+"), documented as "+want+"; read as it is", required)
		default:
			unreadable()
			return
		}
		v.SetString(text)
		return
	case dateType, dateTimeType:
		if kind != "string" {
			unreadable()
			return
		}
		if _, reason := parseTime(str); reason != "" {
			d.issue(path, "is not "+want+": "+quoteShort(str)+" ("+reason+"); kept as sent", required)
		}
		v.SetString(str)
		return
	}
	switch v.Kind() {
	case reflect.String:
		switch kind {
		case "string":
		case "number", "boolean":
			str = string(trimJSONSpace(raw))
			read("a " + kind)
		default:
			unreadable()
			return
		}
		if len(oneOf) > 0 && !slices.Contains(oneOf, str) {
			d.issue(path, quoteShort(str)+" is not one of the documented values ("+strings.Join(oneOf, ", ")+"); read as it is", false)
		}
		v.SetString(str)
	case reflect.Bool:
		switch {
		case kind == "boolean":
			v.SetBool(string(trimJSONSpace(raw)) == "true")
		case kind == "string" && (str == "true" || str == "false"):
			read("a string")
			v.SetBool(str == "true")
		default:
			unreadable()
		}
	case reflect.Slice:
		if kind != "array" {
			unreadable()
			return
		}
		b := trimJSONSpace(raw)
		elems := elements(b, 0)
		s := reflect.MakeSlice(v.Type(), 0, len(elems))
		for i, e := range elems {
			elemPath := path + "[" + strconv.Itoa(i) + "]"
			elem := b[e[0]:e[1]]
			if isJSONNull(elem) {
				d.issue(elemPath, "is null, documented as "+article(kindName(v.Type().Elem()))+"; skipped", false)
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.value(elemPath, elem, ev, nil, false)
			s = reflect.Append(s, ev)
		}
		v.Set(s)
	case reflect.Struct:
		if kind != "object" {
			unreadable()
			return
		}
		if fields, ok := d.object(path, raw, required); ok {
			d.fields(path, fields, v)
		}
	default:
		// A struct field of a type this decoder does not know: a bug in the event struct,
		// reported rather than panicking.
		d.issue(path, "has unsupported Go type "+v.Type().String(), true)
	}
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
