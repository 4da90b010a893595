package funnel

import (
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2023-03-11T14:23:56+00:00", utc(2023, 3, 11, 14, 23, 56, 0)},
		{"2023-03-11T14:23:56.010+00:00", utc(2023, 3, 11, 14, 23, 56, 10_000_000)},
		{"2024-10-09T13:49:31.658518+00:00", utc(2024, 10, 9, 13, 49, 31, 658_518_000)},
		{"2024-10-09T13:49:31.123456789Z", utc(2024, 10, 9, 13, 49, 31, 123_456_789)},
		{"2024-10-09T13:49:31.5Z", utc(2024, 10, 9, 13, 49, 31, 500_000_000)},
		{"2024-10-09T13:49:31,25Z", utc(2024, 10, 9, 13, 49, 31, 250_000_000)},
		{"2023-03-29T04:27:08Z", utc(2023, 3, 29, 4, 27, 8, 0)},
		{"2023-03-29t04:27:08z", utc(2023, 3, 29, 4, 27, 8, 0)},
		{"2023-03-11T09:23:56-05:00", utc(2023, 3, 11, 14, 23, 56, 0)},
		{"2023-03-11T14:23:56+0000", utc(2023, 3, 11, 14, 23, 56, 0)},
		{"2023-03-11T20:53:56+0630", utc(2023, 3, 11, 14, 23, 56, 0)},
		{"2023-03-11T16:23:56+02", utc(2023, 3, 11, 14, 23, 56, 0)},
		{"2023-03-11T23:30:00-05:00", utc(2023, 3, 12, 4, 30, 0, 0)},
		{"2019-01-01T04:55:55", utc(2019, 1, 1, 4, 55, 55, 0)},
		{"2021-08-01 15:00:00", utc(2021, 8, 1, 15, 0, 0, 0)},
		{"2021-08-01 15:00", utc(2021, 8, 1, 15, 0, 0, 0)},
		{"2021-08-01 15:00:00.123", utc(2021, 8, 1, 15, 0, 0, 123_000_000)},
		{"2023-03-11", utc(2023, 3, 11, 0, 0, 0, 0)},
		{"1970-01-01", utc(1970, 1, 1, 0, 0, 0, 0)},
		{"2024-02-29", utc(2024, 2, 29, 0, 0, 0, 0)},
		{"9999-12-31T23:59:59.999999999Z", utc(9999, 12, 31, 23, 59, 59, 999_999_999)},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTime(tt.in)
			if err != nil {
				t.Fatalf("ParseTime: %v", err)
			}
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("ParseTime = %v, want %v (UTC)", got, tt.want)
			}
		})
	}
}

func TestParseTimeErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "expected a date YYYY-MM-DD"},
		{"garbage", "expected a date YYYY-MM-DD"},
		{"23-03-11", "expected a date"},
		{"2023/03/11", "expected a date"},
		{"2023-3-11", "expected a date"},
		{"2023-00-11", "month 00 is out of range"},
		{"2023-13-11", "month 13 is out of range"},
		{"2023-02-29", "day 29 is out of range for 2023-02"},
		{"2023-04-31", "day 31 is out of range"},
		{"2023-03-11X14:23:56", "expected 'T' or a space"},
		{"2023-03-11T", "expected a time HH:MM"},
		{"2023-03-11T1:23:56Z", "expected a time HH:MM"},
		{"2023-03-11T14:2", "expected a time HH:MM"},
		{"2023-03-11T14:23:5Z", "expected two digits of seconds"},
		{"2023-03-11T24:00:00Z", "time of day 24:00:00 is out of range"},
		{"2023-03-11T14:60:00Z", "out of range"},
		{"2023-03-11T14:23:60Z", "out of range"},
		{"2023-03-11T14:23:56.Z", "expected digits after the decimal point"},
		{"2023-03-11T14:23:56.1234567890Z", "more than 9 fractional digits"},
		{"2023-03-11T14:23:56 +00:00", "unexpected"},
		{"2023-03-11T14:23:56UTC", "unexpected"},
		{"2023-03-11T14:23:56+5", "is not Z, ±HH:MM, ±HHMM or ±HH"},
		{"2023-03-11T14:23:56+05:0", "is not Z"},
		{"2023-03-11T14:23:56+24:00", "is out of range"},
		{"2023-03-11T14:23:56+05:60", "is out of range"},
		{"2023-03-11T14:23:56Zjunk", "unexpected"},
		{"2023-03-11 ", "expected a time"},
		{"9999-12-31T23:00:00-05:00", "outside the years 0000 to 9999"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTime(tt.in)
			if err == nil {
				t.Fatalf("ParseTime = %v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "invalid time") {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}
