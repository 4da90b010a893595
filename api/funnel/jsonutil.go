package funnel

import (
	"fmt"
	"strconv"
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
