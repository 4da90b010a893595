package funnel

import (
	"errors"
	"fmt"
	"time"
)

// ParseTime reads the timestamps Funnel sends, which differ between pages and
// envelopes (V3 with milliseconds or microseconds, Partner v2 zone-less local
// strings): ISO-8601 / RFC 3339 with 'T' or a space
// between date and time, seconds optional, 0 to 9 fractional digits, and an
// offset of Z, ±HH:MM, ±HHMM, ±HH or none at all (then the time is taken as
// UTC, as Partner v2's zone-less local strings give nothing better). A plain
// date is midnight UTC. The result is in UTC and within years 0000–9999, so
// it can always be written back as RFC 3339.
func ParseTime(s string) (time.Time, error) {
	t, reason := parseTime(s)
	if reason != "" {
		return time.Time{}, errors.New("invalid time " + quoteShort(s) + ": " + reason)
	}
	return t, nil
}

// parseTime is ParseTime with a bare reason instead of an error, so that
// callers can put the reason into their own, field-named errors.
func parseTime(s string) (time.Time, string) {
	if len(s) < 10 || !digitsAt(s, 0, 4) || s[4] != '-' || !digitsAt(s, 5, 2) || s[7] != '-' || !digitsAt(s, 8, 2) {
		return time.Time{}, "expected a date YYYY-MM-DD at the start"
	}
	year, month, day := atoi(s[0:4]), atoi(s[5:7]), atoi(s[8:10])
	if month < 1 || month > 12 {
		return time.Time{}, fmt.Sprintf("month %02d is out of range", month)
	}
	if day < 1 || day > daysIn(time.Month(month), year) {
		return time.Time{}, fmt.Sprintf("day %02d is out of range for %04d-%02d", day, year, month)
	}
	var hour, minute, second, nsec, offset int
	if rest := s[10:]; rest != "" {
		if rest[0] != 'T' && rest[0] != 't' && rest[0] != ' ' {
			return time.Time{}, "expected 'T' or a space after the date"
		}
		rest = rest[1:]
		if len(rest) < 5 || !digitsAt(rest, 0, 2) || rest[2] != ':' || !digitsAt(rest, 3, 2) {
			return time.Time{}, "expected a time HH:MM[:SS] after the date"
		}
		hour, minute = atoi(rest[0:2]), atoi(rest[3:5])
		rest = rest[5:]
		if rest != "" && rest[0] == ':' {
			if len(rest) < 3 || !digitsAt(rest, 1, 2) {
				return time.Time{}, "expected two digits of seconds"
			}
			second = atoi(rest[1:3])
			rest = rest[3:]
			if rest != "" && (rest[0] == '.' || rest[0] == ',') {
				n := 0
				for n+1 < len(rest) && rest[n+1] >= '0' && rest[n+1] <= '9' {
					n++
				}
				switch {
				case n == 0:
					return time.Time{}, "expected digits after the decimal point"
				case n > 9:
					return time.Time{}, "more than 9 fractional digits"
				}
				nsec = atoi(rest[1 : 1+n])
				for i := n; i < 9; i++ {
					nsec *= 10
				}
				rest = rest[1+n:]
			}
		}
		if hour > 23 || minute > 59 || second > 59 {
			return time.Time{}, fmt.Sprintf("time of day %02d:%02d:%02d is out of range", hour, minute, second)
		}
		var reason string
		if offset, reason = parseOffset(rest); reason != "" {
			return time.Time{}, reason
		}
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, nsec, time.UTC).Add(-time.Duration(offset) * time.Second)
	if t.Year() < 0 || t.Year() > 9999 {
		return time.Time{}, "the instant is outside the years 0000 to 9999"
	}
	return t, ""
}

// parseOffset reads what follows the time of day: nothing, Z, or ±HH[[:]MM].
// It returns the offset east of UTC in seconds.
func parseOffset(s string) (int, string) {
	switch {
	case s == "" || s == "Z" || s == "z":
		return 0, ""
	case s[0] != '+' && s[0] != '-':
		return 0, "unexpected " + quoteShort(s) + " after the time"
	}
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	var hours, minutes int
	switch body := s[1:]; {
	case len(body) == 2 && digitsAt(body, 0, 2):
		hours = atoi(body)
	case len(body) == 4 && digitsAt(body, 0, 4):
		hours, minutes = atoi(body[0:2]), atoi(body[2:4])
	case len(body) == 5 && digitsAt(body, 0, 2) && body[2] == ':' && digitsAt(body, 3, 2):
		hours, minutes = atoi(body[0:2]), atoi(body[3:5])
	default:
		return 0, "offset " + quoteShort(s) + " is not Z, ±HH:MM, ±HHMM or ±HH"
	}
	if hours > 23 || minutes > 59 {
		return 0, "offset " + quoteShort(s) + " is out of range"
	}
	return sign * (hours*3600 + minutes*60), ""
}

// digitsAt reports whether s[i:i+n] exists and is all ASCII digits.
func digitsAt(s string, i, n int) bool {
	return i+n <= len(s) && isDigits(s[i:i+n])
}

// atoi converts a short run of ASCII digits already checked by digitsAt.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// daysIn returns the number of days of month m in year y.
func daysIn(m time.Month, y int) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
