package funnel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
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
func members(b []byte, i int) []span { return appendMembers(nil, b, i) }

// eachMember calls fn with each member of the object that starts at b[i], in document
// order, without listing them.
func eachMember(b []byte, i int, fn func(span)) {
	i = skipSpace(b, i+1) // past '{'
	for i < len(b) && b[i] == '"' {
		var m span
		m.keyStart, m.keyEnd = int32(i), int32(stringEnd(b, i))
		i = skipSpace(b, int(m.keyEnd)) + 1 // past ':'
		i = skipSpace(b, i)
		m.valStart, m.valEnd = int32(i), int32(valueEnd(b, i))
		fn(m)
		i = skipSpace(b, int(m.valEnd))
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// appendMembers appends the members of the object that starts at b[i] to out, grown
// once to fit them (growing by appending would hold twice as much on large objects).
func appendMembers(out []span, b []byte, i int) []span {
	out = slices.Grow(out, countMembers(b, i))
	eachMember(b, i, func(m span) { out = append(out, m) })
	return out
}

// countMembers counts the members of the object that starts at b[i].
func countMembers(b []byte, i int) int {
	n := 0
	eachMember(b, i, func(span) { n++ })
	return n
}

// elements lists the values of the array that starts at b[i] as [start, end) pairs.
func elements(b []byte, i int) [][2]int32 { return appendElements(nil, b, i) }

// appendElements appends the values of the array that starts at b[i] to out.
func appendElements(out [][2]int32, b []byte, i int) [][2]int32 {
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

// member is an object member as canon lists it: where its key and value start, half a
// span, so that listing the members of a large object holds less (the ends are found
// again when needed; valEnd is not).
type member struct{ key, val int32 }

// span is m with its key's end; valEnd is left 0.
func (m member) span(b []byte) span {
	return span{keyStart: m.key, keyEnd: int32(stringEnd(b, int(m.key))), valStart: m.val}
}

// writer is what canonical JSON is written to: a buffer, or a hash through bufio.
type writer interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
}

// canon writes canonical JSON (writeCanonical). Its span buffers are stacks shared by
// every level of the document, so canonicalising allocates nothing per object or array.
type canon struct {
	w       writer
	b       []byte
	members []member
	// stored writes numbers as the API server keeps them (writeStoredNumber) rather than
	// exactly, made in scratch.
	stored  bool
	scratch []byte
}

// writeCanonical writes the valid JSON value at b[i:] in a canonical form: object keys
// sorted (the last of duplicates kept), no whitespace, strings in one escaping, numbers
// as their exact value in one notation (1.0, 1 and 1e0 are alike; no float64 rounding).
// Two serialisations of one JSON value, by any encoder, give the same bytes.
func writeCanonical(w writer, b []byte, i int) {
	c := canon{w: w, b: b}
	c.value(i)
}

// writeStoredCanonical is writeCanonical with numbers as the API server keeps them
// (writeStoredNumber): the canonical form of a JSON value before and after the API server
// stored it is the same.
func writeStoredCanonical(w writer, b []byte, i int) {
	c := canon{w: w, b: b, stored: true}
	c.value(i)
}

func (c *canon) value(i int) {
	w, b := c.w, c.b
	switch b[i] {
	case '{':
		base := len(c.members)
		c.members = slices.Grow(c.members, countMembers(b, i))
		eachMember(b, i, func(m span) { c.members = append(c.members, member{m.keyStart, m.valStart}) })
		ms := c.members[base:]
		slices.SortStableFunc(ms, func(x, y member) int { return keyLess(b, x.span(b), y.span(b)) })
		_ = w.WriteByte('{')
		first := true
		for j, mm := range ms {
			m := mm.span(b)
			if j+1 < len(ms) && keyLess(b, m, ms[j+1].span(b)) == 0 {
				continue // a later duplicate follows: the last one counts
			}
			if !first {
				_ = w.WriteByte(',')
			}
			first = false
			writeCanonicalLiteral(w, b[m.keyStart:m.keyEnd])
			_ = w.WriteByte(':')
			c.value(int(m.valStart))
		}
		_ = w.WriteByte('}')
		c.members = c.members[:base]
	case '[':
		// Elements keep their order: written as they come, never listed.
		_ = w.WriteByte('[')
		for j := skipSpace(b, i+1); b[j] != ']'; {
			if j > skipSpace(b, i+1) {
				_ = w.WriteByte(',')
			}
			c.value(j)
			if j = skipSpace(b, valueEnd(b, j)); b[j] == ',' {
				j = skipSpace(b, j+1)
			}
		}
		_ = w.WriteByte(']')
	case '"':
		writeCanonicalLiteral(w, b[i:stringEnd(b, i)])
	case 't', 'f', 'n':
		_, _ = w.Write(b[i:valueEnd(b, i)])
	default:
		if c.stored {
			c.writeStoredNumber(b[i:valueEnd(b, i)])
		} else {
			writeCanonicalNumber(w, b[i:valueEnd(b, i)])
		}
	}
}

// writeCanonicalLiteral writes the string literal lit (quotes included) decoded and
// escaped again, escaping only what JSON requires: `"`, `\` and control characters.
// Escapes decode as encoding/json decodes them (an unpaired surrogate is U+FFFD).
func writeCanonicalLiteral(w writer, lit []byte) {
	const hexDigits = "0123456789abcdef"
	_ = w.WriteByte('"')
	inner := lit[1 : len(lit)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		// Nothing escaped: valid JSON has no raw quote or control character here.
		_, _ = w.Write(inner)
		_ = w.WriteByte('"')
		return
	}
	writeRune := func(r rune) {
		switch {
		case r == '"' || r == '\\':
			_ = w.WriteByte('\\')
			_ = w.WriteByte(byte(r))
		case r < 0x20:
			_, _ = w.WriteString(`\u00`)
			_ = w.WriteByte(hexDigits[r>>4])
			_ = w.WriteByte(hexDigits[r&0xf])
		default:
			var buf [utf8.UTFMax]byte
			n := utf8.EncodeRune(buf[:], r)
			_, _ = w.Write(buf[:n])
		}
	}
	for i := 0; i < len(inner); {
		c := inner[i]
		if c != '\\' {
			_ = w.WriteByte(c)
			i++
			continue
		}
		switch esc := inner[i+1]; esc {
		case 'b':
			writeRune('\b')
		case 'f':
			writeRune('\f')
		case 'n':
			writeRune('\n')
		case 'r':
			writeRune('\r')
		case 't':
			writeRune('\t')
		case 'u':
			r := hexRune(inner[i+2 : i+6])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(inner) && inner[i] == '\\' && inner[i+1] == 'u' {
					r2 = hexRune(inner[i+2 : i+6])
				}
				if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
					r = pair
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			writeRune(r)
			continue
		default: // '"', '\\', '/'
			writeRune(rune(esc))
		}
		i += 2
	}
	_ = w.WriteByte('"')
}

// hexRune reads the four hex digits of a \u escape.
func hexRune(h []byte) rune {
	var r rune
	for _, c := range h {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		default:
			r = r<<4 | rune(c-'A'+10)
		}
	}
	return r
}

// writeCanonicalNumber writes a JSON number as its significant digits and a decimal
// exponent, e.g. 250000 → 25e4, 1.50 → 15e-1, -0.0 → 0, so that one value has one text
// whatever the notation. A number whose exponent is beyond ±2^40 keeps its text.
func writeCanonicalNumber(w writer, text []byte) {
	neg := len(text) > 0 && text[0] == '-'
	num := text
	if neg {
		num = num[1:]
	}
	var exp int64
	if k := bytes.IndexAny(num, "eE"); k >= 0 {
		e, ok := parseExponent(num[k+1:])
		if !ok {
			_, _ = w.Write(text)
			return
		}
		num, exp = num[:k], e
	}
	intPart, frac := num, []byte(nil)
	if k := bytes.IndexByte(num, '.'); k >= 0 {
		intPart, frac = num[:k], num[k+1:]
	}
	exp -= int64(len(frac))
	// The significant digits are intPart+frac without leading and trailing zeros.
	digit := func(j int) byte {
		if j < len(intPart) {
			return intPart[j]
		}
		return frac[j-len(intPart)]
	}
	n := len(intPart) + len(frac)
	lo, hi := 0, n
	for lo < hi && digit(lo) == '0' {
		lo++
	}
	if lo == hi {
		_ = w.WriteByte('0')
		return
	}
	for digit(hi-1) == '0' {
		hi--
		exp++
	}
	if neg {
		_ = w.WriteByte('-')
	}
	for j := lo; j < hi; j++ {
		_ = w.WriteByte(digit(j))
	}
	if exp != 0 {
		var buf [24]byte
		_ = w.WriteByte('e')
		_, _ = w.Write(strconv.AppendInt(buf[:0], exp, 10))
	}
}

// writeStoredNumber writes a JSON number as the value the API server keeps of it: the
// API server reads an integer that fits in 64 bits as one and any other number as a
// float64, and writes them back in its own notation. Written here: integers as such, and
// a float64 that is a whole number within 64 bits as that integer (the API server writes
// 2.5e5 as 250000, which reads back as an integer), other floats in their shortest form.
// A number out of float64's range keeps its text (the API server refuses it). The digits
// are made in c.scratch: a buffer on the stack would escape through the writer.
func (c *canon) writeStoredNumber(text []byte) {
	if n, ok := parseInt64(text); ok {
		c.scratch = strconv.AppendInt(c.scratch[:0], n, 10)
	} else if f, err := strconv.ParseFloat(string(text), 64); err != nil {
		c.scratch = append(c.scratch[:0], text...)
	} else if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
		c.scratch = strconv.AppendInt(c.scratch[:0], int64(f), 10)
	} else {
		c.scratch = strconv.AppendFloat(c.scratch[:0], f, 'g', -1, 64)
	}
	_, _ = c.w.Write(c.scratch)
}

// parseInt64 reads a JSON integer literal (no fraction, no exponent) that fits in 64
// bits.
func parseInt64(text []byte) (int64, bool) {
	neg := len(text) > 0 && text[0] == '-'
	digits := text
	if neg {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	var u uint64
	for _, d := range digits {
		if d < '0' || d > '9' {
			return 0, false
		}
		u = u*10 + uint64(d-'0')
	}
	switch {
	case !neg && u <= math.MaxInt64:
		return int64(u), true
	case neg && u <= 1<<63:
		return int64(-u), true // -(1<<63) wraps to itself
	}
	return 0, false
}

// parseExponent reads a JSON number's exponent digits (with an optional sign), ok false
// beyond ±2^40.
func parseExponent(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		neg = b[0] == '-'
		b = b[1:]
	}
	var e int64
	for _, c := range b {
		e = e*10 + int64(c-'0')
		if e > 1<<40 {
			return 0, false
		}
	}
	if neg {
		e = -e
	}
	return e, true
}

// canonicalNumber is writeCanonicalNumber's text.
func canonicalNumber(text string) string {
	var b bytes.Buffer
	writeCanonicalNumber(&b, []byte(text))
	return b.String()
}
