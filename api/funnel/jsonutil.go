package funnel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// isJSONSpace reports whether c is whitespace in the JSON grammar (RFC 8259),
// which is narrower than unicode.IsSpace.
func isJSONSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// trimJSONSpace removes JSON whitespace from both ends of b.
func trimJSONSpace(b []byte) []byte {
	for len(b) > 0 && isJSONSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isJSONSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// jsonKind names the kind of the JSON value raw starts with, for error
// messages. raw is assumed to be valid JSON.
func jsonKind(raw []byte) string {
	raw = trimJSONSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// isJSONNull reports whether raw is the JSON literal null.
func isJSONNull(raw []byte) bool {
	return string(trimJSONSpace(raw)) == "null"
}

// isDigits reports whether s is one or more ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isIntegerLiteral reports whether s is a JSON number without fraction or
// exponent: -?(0|[1-9][0-9]*). Checking the text keeps ids exact, whatever
// their size, where a float64 would round them.
func isIntegerLiteral(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	return isDigits(s) && (s == "0" || s[0] != '0')
}

// isNonNegativeIntegerLiteral is isIntegerLiteral without the minus sign: the
// shape of every Funnel id.
func isNonNegativeIntegerLiteral(s string) bool {
	return isIntegerLiteral(s) && s[0] != '-'
}

// describeJSON says what raw is in an error message: the kind for strings,
// objects and the like, the (shortened) text for numbers, whose kind alone
// would not explain why they were refused.
func describeJSON(raw []byte) string {
	raw = trimJSONSpace(raw)
	if k := jsonKind(raw); k != "number" {
		return k
	}
	return shorten(string(raw))
}

// shorten cuts s to a length that keeps error messages short.
func shorten(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}

// quoteShort quotes s for an error message, shortened first.
func quoteShort(s string) string {
	return strconv.Quote(shorten(s))
}

// checkDepth refuses JSON nested deeper than max containers. It is a flat
// scan over the bytes (strings and escapes skipped), so hostile input cannot
// make it recurse.
func checkDepth(b []byte, max int) error {
	depth := 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > max {
				return fmt.Errorf("JSON nesting is deeper than %d levels", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// firstInvalidUTF8 returns the offset of the first byte of b that is not part
// of valid UTF-8, or -1.
func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// The functions below walk JSON that json.Valid has accepted, by byte offsets into the
// input: they never build a Go value of the document, so what they hold stays a small
// fraction of the body (the receiver parses bodies of up to 1 MiB from the network).

// skipSpace returns the offset of the first non-whitespace byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && isJSONSpace(b[i]) {
		i++
	}
	return i
}

// valueEnd returns the offset just past the JSON value that starts at b[i] (no leading
// whitespace). b must be valid JSON.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		j := i
		for j < len(b) && !isJSONSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		return j
	}
}

// stringEnd returns the offset just past the string literal that starts at b[i].
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// span is a member of a JSON object as offsets into the document: the key literal
// (quotes included) and the value.
type span struct {
	keyStart, keyEnd, valStart, valEnd int32
}

// members lists the members of the object that starts at b[i], in document order.
func members(b []byte, i int) []span {
	var out []span
	i = skipSpace(b, i+1) // past '{'
	for i < len(b) && b[i] == '"' {
		var m span
		m.keyStart, m.keyEnd = int32(i), int32(stringEnd(b, i))
		i = skipSpace(b, int(m.keyEnd)) + 1 // past ':'
		i = skipSpace(b, i)
		m.valStart, m.valEnd = int32(i), int32(valueEnd(b, i))
		out = append(out, m)
		i = skipSpace(b, int(m.valEnd))
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out
}

// elements lists the values of the array that starts at b[i] as [start, end) pairs.
func elements(b []byte, i int) [][2]int32 {
	var out [][2]int32
	i = skipSpace(b, i+1) // past '['
	for i < len(b) && b[i] != ']' {
		end := valueEnd(b, i)
		out = append(out, [2]int32{int32(i), int32(end)})
		i = skipSpace(b, end)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return out
}

// decodeString decodes a string literal. Literals without escapes are returned as they
// are, without going through encoding/json.
func decodeString(lit []byte) string {
	inner := lit[1 : len(lit)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner)
	}
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return string(inner) // not reachable for valid JSON
	}
	return s
}

// keyLess orders object keys by their decoded text; keys without escapes (nearly all)
// are compared in place.
func keyLess(b []byte, x, y span) int {
	kx, ky := b[x.keyStart+1:x.keyEnd-1], b[y.keyStart+1:y.keyEnd-1]
	if bytes.IndexByte(kx, '\\') < 0 && bytes.IndexByte(ky, '\\') < 0 {
		return bytes.Compare(kx, ky)
	}
	return strings.Compare(decodeString(b[x.keyStart:x.keyEnd]), decodeString(b[y.keyStart:y.keyEnd]))
}

// canonicalMembers returns the members of the object at b[i] sorted by key, keeping
// only the last of duplicate keys (as encoding/json and the API server read them).
func canonicalMembers(b []byte, i int) []span {
	ms := members(b, i)
	slices.SortStableFunc(ms, func(x, y span) int { return keyLess(b, x, y) })
	out := ms[:0]
	for j, m := range ms {
		if j+1 < len(ms) && keyLess(b, m, ms[j+1]) == 0 {
			continue // a later duplicate follows
		}
		out = append(out, m)
	}
	return out
}

// writer is what canonical JSON is written to: a buffer, or a hash through bufio.
type writer interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
}

// writeCanonical writes the valid JSON value at b[i:] in a canonical form: object keys
// sorted (the last of duplicates kept), no whitespace, strings in one escaping, numbers
// as their exact value in one notation (1.0, 1 and 1e0 are alike; no float64 rounding).
// Two serialisations of one JSON value, by any encoder, give the same bytes.
func writeCanonical(w writer, b []byte, i int) {
	switch b[i] {
	case '{':
		_ = w.WriteByte('{')
		for j, m := range canonicalMembers(b, i) {
			if j > 0 {
				_ = w.WriteByte(',')
			}
			writeCanonicalString(w, decodeString(b[m.keyStart:m.keyEnd]))
			_ = w.WriteByte(':')
			writeCanonical(w, b, int(m.valStart))
		}
		_ = w.WriteByte('}')
	case '[':
		_ = w.WriteByte('[')
		for j, e := range elements(b, i) {
			if j > 0 {
				_ = w.WriteByte(',')
			}
			writeCanonical(w, b, int(e[0]))
		}
		_ = w.WriteByte(']')
	case '"':
		writeCanonicalString(w, decodeString(b[i:stringEnd(b, i)]))
	case 't', 'f', 'n':
		_, _ = w.Write(b[i:valueEnd(b, i)])
	default:
		_, _ = w.WriteString(canonicalNumber(string(b[i:valueEnd(b, i)])))
	}
}

// writeCanonicalString writes s as a JSON string escaping only what JSON requires.
func writeCanonicalString(w writer, s string) {
	const hexDigits = "0123456789abcdef"
	_ = w.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			_ = w.WriteByte('\\')
			_ = w.WriteByte(c)
		case c < 0x20:
			_, _ = w.WriteString(`\u00`)
			_ = w.WriteByte(hexDigits[c>>4])
			_ = w.WriteByte(hexDigits[c&0xf])
		default:
			_ = w.WriteByte(c)
		}
	}
	_ = w.WriteByte('"')
}

// canonicalNumber writes a JSON number as its significant digits and a decimal
// exponent, e.g. 250000 → 25e4, 1.50 → 15e-1, -0.0 → 0, so that one value has one text
// whatever the notation. A number whose exponent does not fit an int64 keeps its text.
func canonicalNumber(text string) string {
	neg := strings.HasPrefix(text, "-")
	mant, exp := strings.TrimPrefix(text, "-"), int64(0)
	if k := strings.IndexAny(mant, "eE"); k >= 0 {
		e, err := strconv.ParseInt(strings.TrimPrefix(mant[k+1:], "+"), 10, 64)
		if err != nil || e > 1<<40 || e < -(1<<40) {
			return text
		}
		mant, exp = mant[:k], e
	}
	if intPart, frac, ok := strings.Cut(mant, "."); ok {
		mant = intPart + frac
		exp -= int64(len(frac))
	}
	mant = strings.TrimLeft(mant, "0")
	if mant == "" {
		return "0"
	}
	trimmed := strings.TrimRight(mant, "0")
	exp += int64(len(mant) - len(trimmed))
	out := trimmed
	if neg {
		out = "-" + out
	}
	if exp != 0 {
		out += "e" + strconv.FormatInt(exp, 10)
	}
	return out
}
